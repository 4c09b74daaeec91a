/*
 * The checkpoint coordinator (processor/engine/ckpt_coord.h) driven by fakes:
 * a call log records every flush / snapshot / write / commit / pause in
 * order, the store's answers are scripted per call, and the clock is ours.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ckpt_coord.h"

#define MS 1000000LL /* ns */

typedef struct fake {
    char log[2048];   /* "flush snap:0 write:0 commit:0,1 pause:1 ..." */
    int write_rc[32]; /* answer of the Nth write (0 = WEIR_OK) */
    int nwrites;
    int flush_rc, snapshot_rc, commit_rc;
    int64_t now;               /* the fake clock, ns */
    weir_ckpt_part_t parts[4]; /* .task points at an int id */
    int ids[4];
    weir_ckpt_part_t *pp[4];
} fake_t;

static void logf_(fake_t *f, const char *s) {
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof(f->log) - n, "%s%s", n ? " " : "", s);
}

static int id_of(const weir_ckpt_part_t *p) { return *(const int *)p->task; }

static int f_flush(void *o) {
    fake_t *f = o;
    logf_(f, "flush");
    return f->flush_rc;
}

static int f_snapshot(void *o, weir_ckpt_part_t *p, weir_buf_t *buf) {
    fake_t *f = o;
    char s[32];
    snprintf(s, sizeof(s), "snap:%d", id_of(p));
    logf_(f, s);
    cr_assert_eq(buf->len, 0, "the coordinator hands an empty buffer");
    weir_buf_printf(buf, "state-%d", id_of(p));
    return f->snapshot_rc;
}

static int f_write(void *o, weir_ckpt_part_t *p, const weir_buf_t *snap, char *errstr, size_t n) {
    fake_t *f = o;
    char s[64];
    snprintf(s, sizeof(s), "write:%d@%lld", id_of(p), (long long)p->next_offset);
    logf_(f, s);
    char want[32];
    snprintf(want, sizeof(want), "state-%d", id_of(p));
    cr_assert_eq(snap->len, strlen(want));
    cr_assert(!memcmp(snap->p, want, snap->len), "the write gets this task's snapshot");
    int rc = f->write_rc[f->nwrites++];
    if (rc != WEIR_OK)
        snprintf(errstr, n, "fake store down");
    return rc;
}

static int f_commit(void *o, weir_ckpt_part_t *const *parts, int n) {
    fake_t *f = o;
    char s[128] = "commit:";
    for (int i = 0; i < n; i++)
        snprintf(s + strlen(s), sizeof(s) - strlen(s), "%s%d@%lld", i ? "," : "", id_of(parts[i]),
                 (long long)parts[i]->next_offset);
    logf_(f, s);
    return f->commit_rc;
}

static void f_pause(void *o, bool pause) { logf_(o, pause ? "pause" : "resume"); }

static int64_t f_now(void *o) { return ((fake_t *)o)->now; }

static const weir_ckpt_coord_ops_t ops = {
    .flush = f_flush, .snapshot = f_snapshot, .write = f_write, .commit = f_commit, .pause = f_pause, .now_ns = f_now};

/* n participants; participant i has read up to offset 10 * (i + 1), nothing committed or checkpointed. */
static void setup_parts(fake_t *f, int n) {
    for (int i = 0; i < n; i++) {
        f->ids[i] = i;
        f->parts[i] =
            (weir_ckpt_part_t){.next_offset = 10 * (i + 1), .committed = -1, .ckpt_offset = -1, .task = &f->ids[i]};
        f->pp[i] = &f->parts[i];
    }
}

Test(ckpt_coord, flush_then_checkpoints_then_commit) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 2);
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_commit(c, f.pp, 2), WEIR_OK);
    cr_assert_str_eq(f.log, "flush snap:0 write:0@10 snap:1 write:1@20 commit:0@10,1@20");
    cr_assert_eq(f.parts[0].committed, 10);
    cr_assert_eq(f.parts[0].ckpt_offset, 10);
    cr_assert_eq(f.parts[1].committed, 20);
    cr_assert_eq(f.parts[1].ckpt_offset, 20);
    /* No progress since: a round does nothing at all (no flush either). */
    f.log[0] = '\0';
    cr_assert_eq(weir_ckpt_coord_commit(c, f.pp, 2), WEIR_OK);
    cr_assert_str_eq(f.log, "");
    /* Progress on one: only that one. */
    f.parts[1].next_offset = 25;
    cr_assert_eq(weir_ckpt_coord_commit(c, f.pp, 2), WEIR_OK);
    cr_assert_str_eq(f.log, "flush snap:1 write:1@25 commit:1@25");
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, unknown_offset_is_skipped) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 2);
    f.parts[0].next_offset = -1;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_commit(c, f.pp, 2), WEIR_OK);
    cr_assert_str_eq(f.log, "flush snap:1 write:1@20 commit:1@20");
    cr_assert_eq(f.parts[0].committed, -1);
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, retry_pauses_backs_off_and_resumes) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 1);
    for (int i = 0; i < 7; i++)
        f.write_rc[i] = WEIR_RETRY; /* the store is down for 7 attempts, then back */
    int64_t interval_ms = 10000;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, interval_ms, 0);
    cr_assert_not(weir_ckpt_coord_due(c, interval_ms * MS - 1));
    cr_assert(weir_ckpt_coord_due(c, interval_ms * MS));

    /* Each failed attempt: paused, the next attempt after 0.5 s, 1, 2, 4, 8, 8, 8 s. */
    const int64_t want_backoff_ms[] = {500, 1000, 2000, 4000, 8000, 8000, 8000};
    int64_t t = interval_ms * MS;
    for (int i = 0; i < 7; i++) {
        f.now = t + 3 * MS; /* the round itself takes 3 ms: the back-off counts from its end */
        f.log[0] = '\0';
        cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, t), WEIR_RETRY, "attempt %d", i);
        cr_assert_str_eq(f.log, i == 0 ? "flush snap:0 write:0@10 pause" : "flush snap:0 write:0@10", "attempt %d: %s",
                         i, f.log);
        cr_assert(weir_ckpt_coord_paused(c));
        cr_assert_eq(weir_ckpt_coord_backoff_ms(c), want_backoff_ms[i], "attempt %d", i);
        int64_t retry_at = f.now + want_backoff_ms[i] * MS;
        cr_assert_eq(weir_ckpt_coord_retry_at(c), retry_at);
        cr_assert_not(weir_ckpt_coord_due(c, retry_at - 1), "attempt %d: not before the back-off", i);
        cr_assert(weir_ckpt_coord_due(c, retry_at), "attempt %d: due after the back-off", i);
        cr_assert_eq(f.parts[0].committed, -1, "nothing committed while the store is down");
        t = retry_at;
    }
    /* The store is back: checkpoint, commit, resume; the back-off starts over. */
    f.now = t;
    f.log[0] = '\0';
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, t), WEIR_OK);
    cr_assert_str_eq(f.log, "flush snap:0 write:0@10 commit:0@10 resume");
    cr_assert_not(weir_ckpt_coord_paused(c));
    cr_assert_eq(weir_ckpt_coord_backoff_ms(c), 0);
    cr_assert_eq(f.parts[0].committed, 10);
    cr_assert_eq(f.parts[0].ckpt_offset, 10);
    /* Not paused: the next round is an interval after this one. */
    cr_assert_not(weir_ckpt_coord_due(c, t + interval_ms * MS - 1));
    cr_assert(weir_ckpt_coord_due(c, t + interval_ms * MS));
    /* A new outage starts again at 0.5 s. */
    f.write_rc[f.nwrites] = WEIR_RETRY;
    f.parts[0].next_offset = 11;
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, t + interval_ms * MS), WEIR_RETRY);
    cr_assert_eq(weir_ckpt_coord_backoff_ms(c), 500);
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, store_error_is_reported_and_nothing_of_it_committed) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 3);
    f.write_rc[1] = WEIR_ERR; /* the second task's checkpoint fails */
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 3, 0), WEIR_ERR);
    /* The round stops at the failure; what was checkpointed before it commits (at-least-once),
     * neither the failed task nor the one after it does. An error is not an outage: no pause. */
    cr_assert_str_eq(f.log, "flush snap:0 write:0@10 snap:1 write:1@20 commit:0@10");
    cr_assert_eq(f.parts[0].committed, 10);
    cr_assert_eq(f.parts[1].committed, -1);
    cr_assert_eq(f.parts[1].ckpt_offset, -1);
    cr_assert_eq(f.parts[2].committed, -1);
    cr_assert_not(weir_ckpt_coord_paused(c));
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, transactional_commits_nothing_when_a_write_failed) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 2);
    f.write_rc[1] = WEIR_RETRY;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, true, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 2, 0), WEIR_RETRY);
    cr_assert_str_eq(f.log, "flush snap:0 write:0@10 snap:1 write:1@20 pause");
    cr_assert_eq(f.parts[0].committed, -1);
    cr_assert_eq(f.parts[0].ckpt_offset, 10, "its checkpoint is written, only the commit waits");
    cr_assert_eq(f.parts[1].committed, -1);
    /* Next attempt: only the missing checkpoint is written, then one commit for both. */
    f.log[0] = '\0';
    f.now = 500 * MS;
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 2, 500 * MS), WEIR_OK);
    cr_assert_str_eq(f.log, "flush snap:1 write:1@20 commit:0@10,1@20 resume");
    /* A transaction commits every round, even with no offset to commit (it carries the outputs). */
    f.log[0] = '\0';
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 2, 20000 * MS), WEIR_OK);
    cr_assert_str_eq(f.log, "commit:");
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, flush_failure_stops_before_any_checkpoint) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 2);
    f.flush_rc = WEIR_ERR;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_commit(c, f.pp, 2), WEIR_ERR);
    cr_assert_str_eq(f.log, "flush");
    cr_assert_eq(f.parts[0].committed, -1);
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, snapshot_failure_is_an_error) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 1);
    f.snapshot_rc = WEIR_ERR;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, 0), WEIR_ERR);
    cr_assert_str_eq(f.log, "flush snap:0");
    cr_assert_eq(f.parts[0].committed, -1);
    cr_assert_not(weir_ckpt_coord_paused(c));
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, commit_failure_retries_without_pausing) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 1);
    f.commit_rc = WEIR_RETRY;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&ops, &f, false, 10000, 0);
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, 0), WEIR_RETRY);
    cr_assert_str_eq(f.log, "flush snap:0 write:0@10 commit:0@10");
    cr_assert_eq(f.parts[0].committed, -1);
    cr_assert_eq(f.parts[0].ckpt_offset, 10);
    cr_assert_not(weir_ckpt_coord_paused(c), "a Kafka commit failure is not a Redis outage");
    /* Next round: the checkpoint stands, only the commit is repeated. */
    f.commit_rc = WEIR_OK;
    f.log[0] = '\0';
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 1, 10000 * MS), WEIR_OK);
    cr_assert_str_eq(f.log, "flush commit:0@10");
    cr_assert_eq(f.parts[0].committed, 10);
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, without_checkpoints_offsets_commit_after_the_flush) {
    static fake_t f;
    memset(&f, 0, sizeof(f));
    setup_parts(&f, 2);
    weir_ckpt_coord_ops_t o = ops;
    o.snapshot = NULL;
    o.write = NULL;
    weir_ckpt_coord_t *c = weir_ckpt_coord_new(&o, &f, false, 5000, 0);
    cr_assert_eq(weir_ckpt_coord_round(c, f.pp, 2, 0), WEIR_OK);
    cr_assert_str_eq(f.log, "flush commit:0@10,1@20");
    cr_assert_eq(f.parts[1].committed, 20);
    cr_assert_eq(f.parts[1].ckpt_offset, -1);
    weir_ckpt_coord_destroy(c);
}

Test(ckpt_coord, backoff_sequence) {
    int ms = 0;
    const int want[] = {500, 1000, 2000, 4000, 8000, 8000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ms = weir_ckpt_backoff_next(ms);
        cr_assert_eq(ms, want[i], "step %zu", i);
    }
}
