/*
 * The Redis checkpoint store against a real redis-server (issue 6): round
 * trips, retention, corrupt and truncated checkpoints, outages (SIGSTOP,
 * SIGKILL + restart), interrupted writes, a second writer, list/delete, URLs
 * with AUTH/ACL/db, and `weir state`.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "checkpoint.h"
#include "pipeline.h"
#include "task.h"
#include "cli.h"
#include "harness.h"
#include "redis_harness.h"
#include "snapshot.h"

static char errstr[WEIR_ERRSTR_SIZE];

/** Deterministic pseudo-random bytes (xorshift), different per seed. */
static uint8_t *bytes(size_t n, uint64_t seed) {
    uint8_t *p = malloc(n ? n : 1);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    return p;
}

static weir_ckpt_t *open_store(const h_redis_t *r, const char *pipeline) {
    weir_ckpt_t *c = weir_ckpt_new(r->url, pipeline, errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr);
    return c;
}

static int64_t write_ok(weir_ckpt_t *c, const char *topic, int32_t part, int64_t off, const void *p, size_t n) {
    int64_t num = -1;
    int rc = weir_ckpt_write(c, topic, part, off, "fp-1", p, n, &num, errstr, sizeof(errstr));
    cr_assert_eq(rc, WEIR_OK, "write: rc %d: %s", rc, errstr);
    return num;
}

static void read_expect(weir_ckpt_t *c, const char *topic, int32_t part, int64_t n_want, int64_t n, int64_t off,
                        const void *p, size_t len) {
    weir_buf_t st = {0};
    int64_t got_n, got_off;
    char *fp = NULL;
    int rc = weir_ckpt_read(c, topic, part, n_want, &got_n, &got_off, &fp, &st, errstr, sizeof(errstr));
    cr_assert_eq(rc, WEIR_OK, "read: rc %d: %s", rc, errstr);
    cr_assert_eq(got_n, n);
    cr_assert_eq(got_off, off);
    cr_assert_str_eq(fp, "fp-1");
    cr_assert_eq(st.len, len, "state is %zu bytes, wrote %zu", st.len, len);
    cr_assert(len == 0 || !memcmp(st.p, p, len), "state bytes differ");
    free(fp);
    weir_buf_free(&st);
}

/** Read expecting rc; errstr is then checked by the caller. */
static int read_rc(weir_ckpt_t *c, const char *topic, int32_t part, int64_t n_want) {
    weir_buf_t st = {0};
    int64_t got_n, got_off;
    char *fp = NULL;
    int rc = weir_ckpt_read(c, topic, part, n_want, &got_n, &got_off, &fp, &st, errstr, sizeof(errstr));
    free(fp);
    weir_buf_free(&st);
    return rc;
}

static long long int_reply(const h_redis_t *r, const char *fmt, const char *key) {
    redisReply *rep = h_redis_cmd(r, fmt, key);
    cr_assert_eq(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static long long exists(const h_redis_t *r, const char *key) { return int_reply(r, "EXISTS %s", key); }

/* ---- round trips and retention ------------------------------------------ */

Test(checkpoint, round_trip_small_and_empty) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_CKPT_NONE, "%s", errstr);
    uint8_t *p = bytes(100, 1);
    cr_assert_eq(write_ok(c, "t", 0, 42, p, 100), 1);
    read_expect(c, "t", 0, 0, 1, 42, p, 100);
    cr_assert_eq(write_ok(c, "t", 0, 43, p, 0), 2); /* an empty state is a valid checkpoint */
    read_expect(c, "t", 0, 0, 2, 43, p, 0);
    read_expect(c, "t", 0, 1, 1, 42, p, 100);
    cr_assert_eq(read_rc(c, "t", 1, 0), WEIR_CKPT_NONE); /* other partition */
    const weir_ckpt_stats_t *s = weir_ckpt_stats(c);
    cr_assert_eq(s->writes, 2);
    cr_assert_eq(s->last_write_bytes, 0);
    cr_assert_gt(s->last_write_us, 0);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, round_trip_multi_chunk) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 5 * WEIR_CKPT_CHUNK_SIZE + 123;
    uint8_t *p = bytes(n, 2);
    cr_assert_eq(write_ok(c, "sensor.readings", 3, 1000000, p, n), 1);
    read_expect(c, "sensor.readings", 3, 0, 1, 1000000, p, n);
    /* 6 chunks of <= 1 MiB + 7 meta fields */
    cr_assert_eq(int_reply(&r, "HLEN %s", "weir:pl:sensor.readings:3:ckpt:1"), 13);
    cr_assert_eq(int_reply(&r, "HSTRLEN %s chunk:5", "weir:pl:sensor.readings:3:ckpt:1"), 123);
    cr_assert_eq(weir_ckpt_stats(c)->last_read_bytes, (int64_t)n);
    /* exactly one chunk */
    cr_assert_eq(write_ok(c, "sensor.readings", 3, 1, p, WEIR_CKPT_CHUNK_SIZE), 2);
    read_expect(c, "sensor.readings", 3, 0, 2, 1, p, WEIR_CKPT_CHUNK_SIZE);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, keeps_previous_deletes_older) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    uint8_t *p[5];
    for (int i = 0; i < 5; i++) {
        p[i] = bytes(3000 + (size_t)i, 10 + (uint64_t)i);
        cr_assert_eq(write_ok(c, "t", 7, 100 * (i + 1), p[i], 3000 + (size_t)i), i + 1);
    }
    cr_assert_eq(exists(&r, "weir:pl:t:7:ckpt:5"), 1);
    cr_assert_eq(exists(&r, "weir:pl:t:7:ckpt:4"), 1);
    for (int i = 1; i <= 3; i++) {
        char key[64];
        snprintf(key, sizeof(key), "weir:pl:t:7:ckpt:%d", i);
        cr_assert_eq(exists(&r, key), 0, "%s should be deleted", key);
    }
    redisReply *rep = h_redis_cmd(&r, "GET weir:pl:t:7:latest");
    cr_assert_str_eq(rep->str, "5");
    freeReplyObject(rep);
    read_expect(c, "t", 7, 0, 5, 500, p[4], 3004);
    read_expect(c, "t", 7, 4, 4, 400, p[3], 3003); /* the previous one, by number */
    cr_assert_eq(read_rc(c, "t", 7, 3), WEIR_CKPT_NONE);
    cr_assert(strstr(errstr, "weir:pl:t:7:ckpt:3"), "%s", errstr);
    /* no temporary hashes left behind */
    rep = h_redis_cmd(&r, "KEYS *:tmp:*");
    cr_assert_eq(rep->elements, 0);
    freeReplyObject(rep);
    for (int i = 0; i < 5; i++)
        free(p[i]);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

/* ---- corrupt, truncated, unknown version: WEIR_ERR naming the key ------- */

static void corrupt_case(const char *cmd_fmt, const char *arg, const char *want_in_err) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 3 * WEIR_CKPT_CHUNK_SIZE + 10;
    uint8_t *p = bytes(n, 3);
    write_ok(c, "t", 0, 5, p, n);
    freeReplyObject(h_redis_cmd(&r, cmd_fmt, arg));
    int rc = read_rc(c, "t", 0, 0);
    cr_assert_eq(rc, WEIR_ERR, "rc %d: %s", rc, errstr);
    cr_assert(strstr(errstr, "weir:pl:t:0:"), "error does not name the key: %s", errstr);
    cr_assert(strstr(errstr, want_in_err), "expected '%s' in: %s", want_in_err, errstr);
    /* the store stays usable: a new checkpoint replaces the damaged one */
    cr_assert_eq(write_ok(c, "t", 0, 6, p, n), 2);
    read_expect(c, "t", 0, 0, 2, 6, p, n);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, corrupt_chunk) { corrupt_case("HSET weir:pl:t:0:ckpt:1 chunk:1 %s", "x", "truncated"); }

Test(checkpoint, corrupt_chunk_same_length) {
    /* Flip bytes inside chunk 2 without changing its length: only the CRC can tell. */
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 3 * WEIR_CKPT_CHUNK_SIZE;
    uint8_t *p = bytes(n, 4);
    write_ok(c, "t", 0, 5, p, n);
    uint8_t *bad = malloc(WEIR_CKPT_CHUNK_SIZE);
    memcpy(bad, p + 2 * WEIR_CKPT_CHUNK_SIZE, WEIR_CKPT_CHUNK_SIZE);
    bad[777] ^= 0x40;
    redisContext *rc = h_redis_connect(&r);
    freeReplyObject(redisCommand(rc, "HSET weir:pl:t:0:ckpt:1 chunk:2 %b", bad, (size_t)WEIR_CKPT_CHUNK_SIZE));
    redisFree(rc);
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "weir:pl:t:0:ckpt:1") && strstr(errstr, "CRC"), "%s", errstr);
    free(bad);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, missing_chunk) { corrupt_case("HDEL weir:pl:t:0:ckpt:1 %s", "chunk:2", "chunk:2 of 4 is missing"); }
Test(checkpoint, truncated_last_chunk) { corrupt_case("HSET weir:pl:t:0:ckpt:1 chunk:3 %s", "12345", "truncated"); }
Test(checkpoint, wrong_crc) { corrupt_case("HSET weir:pl:t:0:ckpt:1 crc32 %s", "12345", "CRC-32 mismatch"); }
Test(checkpoint, unknown_version) {
    corrupt_case("HSET weir:pl:t:0:ckpt:1 version %s", "99", "unknown checkpoint version");
}
Test(checkpoint, wrong_size) { corrupt_case("HSET weir:pl:t:0:ckpt:1 size %s", "17", "more than the 17 bytes"); }
Test(checkpoint, meta_missing) { corrupt_case("HDEL weir:pl:t:0:ckpt:1 %s", "version", "no version field"); }
Test(checkpoint, meta_malformed) { corrupt_case("HSET weir:pl:t:0:ckpt:1 next_offset %s", "ten", "next_offset"); }

Test(checkpoint, latest_garbage) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    write_ok(c, "t", 0, 1, "abc", 3);
    freeReplyObject(h_redis_cmd(&r, "SET weir:pl:t:0:latest abc"));
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "weir:pl:t:0:latest") && strstr(errstr, "not a checkpoint number"), "%s", errstr);
    /* a write refuses to guess the next number either */
    int64_t n;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 2, NULL, "abc", 3, &n, errstr, sizeof(errstr)), WEIR_ERR);
    cr_assert(strstr(errstr, "weir:pl:t:0:latest"), "%s", errstr);
    freeReplyObject(h_redis_cmd(&r, "DEL weir:pl:t:0:latest"));
    freeReplyObject(h_redis_cmd(&r, "HSET weir:pl:t:0:latest a b"));
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "WRONGTYPE"), "%s", errstr);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, latest_points_nowhere) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    freeReplyObject(h_redis_cmd(&r, "SET weir:pl:t:0:latest 42"));
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "weir:pl:t:0:ckpt:42") && strstr(errstr, "does not exist"), "%s", errstr);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

/* ---- outages ------------------------------------------------------------- */

Test(checkpoint, redis_paused_then_resumed) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    uint8_t *p = bytes(2 * WEIR_CKPT_CHUNK_SIZE, 5);
    write_ok(c, "t", 0, 1, p, 2 * WEIR_CKPT_CHUNK_SIZE);
    h_redis_pause(&r);
    int64_t n;
    /* (how long it takes to give up is measured in bench/checkpoint/run.sh, not asserted here) */
    int rc = weir_ckpt_write(c, "t", 0, 2, "fp-1", p, 2 * WEIR_CKPT_CHUNK_SIZE, &n, errstr, sizeof(errstr));
    cr_assert_eq(rc, WEIR_RETRY, "rc %d: %s", rc, errstr);
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_RETRY, "%s", errstr);
    h_redis_resume(&r);
    cr_assert_eq(write_ok(c, "t", 0, 3, p, 2 * WEIR_CKPT_CHUNK_SIZE), 2);
    read_expect(c, "t", 0, 0, 2, 3, p, 2 * WEIR_CKPT_CHUNK_SIZE);
    cr_assert_geq(weir_ckpt_stats(c)->retries, 2);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, redis_killed_then_restarted) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    uint8_t *p = bytes(1000, 6);
    write_ok(c, "t", 0, 1, p, 1000);
    h_redis_kill(&r);
    int64_t n;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 2, "fp-1", p, 1000, &n, errstr, sizeof(errstr)), WEIR_RETRY);
    cr_assert(strstr(errstr, "redis 127.0.0.1:"), "%s", errstr);
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 2, "fp-1", p, 1000, &n, errstr, sizeof(errstr)), WEIR_RETRY);
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_RETRY);
    weir_ckpt_info_t *infos;
    int count;
    cr_assert_eq(weir_ckpt_list(c, &infos, &count, errstr, sizeof(errstr)), WEIR_RETRY);
    h_redis_restart(&r);
    /* nothing persists in the test server: the partition starts over at 1 */
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_CKPT_NONE, "%s", errstr);
    cr_assert_eq(write_ok(c, "t", 0, 2, p, 1000), 1);
    read_expect(c, "t", 0, 0, 1, 2, p, 1000);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

Test(checkpoint, redis_down_at_start) {
    weir_ckpt_t *c = weir_ckpt_new("redis://127.0.0.1:1", "pl", errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr); /* lazy: no connection yet */
    int64_t n;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 0, NULL, "x", 1, &n, errstr, sizeof(errstr)), WEIR_RETRY);
    cr_assert(strstr(errstr, "connect"), "%s", errstr);
    weir_ckpt_destroy(c);
}

/* ---- interrupted writes -------------------------------------------------- */

static int abort_before_exec(void *opaque, int chunk) {
    (void)opaque;
    return chunk == -1;
}

Test(checkpoint, interrupted_before_exec_keeps_previous) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 3 * WEIR_CKPT_CHUNK_SIZE + 5;
    uint8_t *p1 = bytes(n, 7), *p2 = bytes(n, 8);
    write_ok(c, "t", 0, 10, p1, n);
    weir_ckpt_set_write_hook(c, abort_before_exec, NULL);
    int64_t num;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 20, "fp-1", p2, n, &num, errstr, sizeof(errstr)), WEIR_RETRY);
    weir_ckpt_set_write_hook(c, NULL, NULL);
    /* all chunks reached Redis, but only in a temporary hash that expires */
    redisReply *rep = h_redis_cmd(&r, "KEYS weir:pl:t:0:ckpt:2:tmp:*");
    cr_assert_eq(rep->elements, 1);
    cr_assert_eq(int_reply(&r, "HLEN %s", rep->element[0]->str), 4);
    long long ttl = int_reply(&r, "TTL %s", rep->element[0]->str);
    cr_assert(ttl > 0 && ttl <= 3600, "ttl %lld", ttl);
    freeReplyObject(rep);
    cr_assert_eq(exists(&r, "weir:pl:t:0:ckpt:2"), 0);
    read_expect(c, "t", 0, 0, 1, 10, p1, n);
    /* the next write succeeds with the same number */
    cr_assert_eq(write_ok(c, "t", 0, 30, p2, n), 2);
    read_expect(c, "t", 0, 0, 2, 30, p2, n);
    cr_assert_eq(int_reply(&r, "TTL %s", "weir:pl:t:0:ckpt:2"), -1, "a committed checkpoint must not expire");
    free(p1);
    free(p2);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

static int abort_after_chunk1(void *opaque, int chunk) {
    (void)opaque;
    return chunk == 1;
}

Test(checkpoint, interrupted_between_chunks_keeps_previous) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 12 * WEIR_CKPT_CHUNK_SIZE; /* more chunks than the pipelining window */
    uint8_t *p1 = bytes(n, 9), *p2 = bytes(n, 10);
    write_ok(c, "t", 0, 10, p1, n);
    weir_ckpt_set_write_hook(c, abort_after_chunk1, NULL);
    int64_t num;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 20, "fp-1", p2, n, &num, errstr, sizeof(errstr)), WEIR_RETRY);
    cr_assert(strstr(errstr, "after chunk 1"), "%s", errstr);
    weir_ckpt_set_write_hook(c, NULL, NULL);
    read_expect(c, "t", 0, 0, 1, 10, p1, n);
    cr_assert_eq(write_ok(c, "t", 0, 30, p2, n), 2);
    read_expect(c, "t", 0, 0, 2, 30, p2, n);
    free(p1);
    free(p2);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

static int kill_redis_after_chunk2(void *opaque, int chunk) {
    if (chunk == 2)
        h_redis_kill(opaque);
    return 0;
}

/* Also: the writes after the kill raise SIGPIPE, which the store must swallow (this process does not ignore it). */
Test(checkpoint, redis_killed_mid_write) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    size_t n = 12 * WEIR_CKPT_CHUNK_SIZE;
    uint8_t *p = bytes(n, 11);
    write_ok(c, "t", 0, 10, p, n);
    weir_ckpt_set_write_hook(c, kill_redis_after_chunk2, &r);
    int64_t num;
    int rc = weir_ckpt_write(c, "t", 0, 20, "fp-1", p, n, &num, errstr, sizeof(errstr));
    cr_assert_eq(rc, WEIR_RETRY, "rc %d: %s", rc, errstr);
    weir_ckpt_set_write_hook(c, NULL, NULL);
    h_redis_restart(&r);
    cr_assert_eq(write_ok(c, "t", 0, 30, p, n), 1);
    read_expect(c, "t", 0, 0, 1, 30, p, n);
    free(p);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

/* A second process writes the same partition while the first is between chunks and EXEC. */
struct rival {
    weir_ckpt_t *c;
    const uint8_t *p;
    size_t n;
};

static int rival_writes(void *opaque, int chunk) {
    struct rival *rv = opaque;
    if (chunk == -1) {
        int64_t num;
        char e[WEIR_ERRSTR_SIZE];
        cr_assert_eq(weir_ckpt_write(rv->c, "t", 0, 77, "fp-1", rv->p, rv->n, &num, e, sizeof(e)), WEIR_OK, "%s", e);
        cr_assert_eq(num, 2);
    }
    return 0;
}

Test(checkpoint, concurrent_writer_loses_cleanly) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl"), *c2 = open_store(&r, "pl");
    size_t n = 2 * WEIR_CKPT_CHUNK_SIZE + 1;
    uint8_t *p1 = bytes(n, 12), *p2 = bytes(n, 13);
    write_ok(c, "t", 0, 10, p1, n);
    struct rival rv = {c2, p2, n};
    weir_ckpt_set_write_hook(c, rival_writes, &rv);
    int64_t num;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 20, "fp-1", p1, n, &num, errstr, sizeof(errstr)), WEIR_ERR);
    cr_assert(strstr(errstr, "weir:pl:t:0:latest") && strstr(errstr, "another process"), "%s", errstr);
    read_expect(c, "t", 0, 0, 2, 77, p2, n); /* the rival's checkpoint is intact */
    redisReply *rep = h_redis_cmd(&r, "KEYS *:tmp:*");
    cr_assert_eq(rep->elements, 0);
    freeReplyObject(rep);
    free(p1);
    free(p2);
    weir_ckpt_destroy(c);
    weir_ckpt_destroy(c2);
    h_redis_stop(&r);
}

/* ---- list and delete ----------------------------------------------------- */

Test(checkpoint, list_and_delete) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl"), *other = open_store(&r, "pl2");
    uint8_t *p = bytes(5000, 14);
    for (int part = 2; part >= 0; part--)
        for (int i = 0; i < 3; i++)
            write_ok(c, "a.topic", part, 10 * part + i, p, 1000 + (size_t)part);
    write_ok(c, "b", 0, 5, p, 5000);
    write_ok(other, "a.topic", 0, 1, p, 10);
    weir_ckpt_set_write_hook(c, abort_before_exec, NULL); /* a temporary hash must not be listed */
    int64_t num;
    cr_assert_eq(weir_ckpt_write(c, "b", 0, 6, "x", p, 10, &num, errstr, sizeof(errstr)), WEIR_RETRY);
    weir_ckpt_set_write_hook(c, NULL, NULL);

    weir_ckpt_info_t *in;
    int count;
    cr_assert_eq(weir_ckpt_list(c, &in, &count, errstr, sizeof(errstr)), WEIR_OK, "%s", errstr);
    cr_assert_eq(count, 7); /* a.topic 0..2 x {2, 3}, b 0 x {1} */
    static const struct {
        const char *topic;
        int part;
        int64_t n, off, size;
        bool latest;
    } want[] = {{"a.topic", 0, 2, 1, 1000, false},  {"a.topic", 0, 3, 2, 1000, true},
                {"a.topic", 1, 2, 11, 1001, false}, {"a.topic", 1, 3, 12, 1001, true},
                {"a.topic", 2, 2, 21, 1002, false}, {"a.topic", 2, 3, 22, 1002, true},
                {"b", 0, 1, 5, 5000, true}};
    int64_t now = weir_now_ms();
    for (int i = 0; i < count; i++) {
        cr_assert_str_eq(in[i].topic, want[i].topic);
        cr_assert_eq(in[i].partition, want[i].part);
        cr_assert_eq(in[i].n, want[i].n, "row %d: n %lld", i, (long long)in[i].n);
        cr_assert_eq(in[i].next_offset, want[i].off);
        cr_assert_eq(in[i].size, want[i].size);
        cr_assert_eq(in[i].latest, want[i].latest);
        cr_assert(in[i].created_ms <= now && in[i].created_ms > now - 60000);
    }
    weir_ckpt_info_free(in, count);

    int64_t deleted;
    cr_assert_eq(weir_ckpt_delete_all(c, &deleted, errstr, sizeof(errstr)), WEIR_OK, "%s", errstr);
    cr_assert_eq(deleted, 6 + 1 + 3 + 1 + 1, "deleted %lld", (long long)deleted); /* ckpts, latests, tmp */
    cr_assert_eq(weir_ckpt_list(c, &in, &count, errstr, sizeof(errstr)), WEIR_OK);
    cr_assert_eq(count, 0);
    weir_ckpt_info_free(in, count);
    cr_assert_eq(read_rc(c, "b", 0, 0), WEIR_CKPT_NONE);
    /* the other pipeline is untouched */
    cr_assert_eq(weir_ckpt_list(other, &in, &count, errstr, sizeof(errstr)), WEIR_OK);
    cr_assert_eq(count, 1);
    weir_ckpt_info_free(in, count);
    free(p);
    weir_ckpt_destroy(c);
    weir_ckpt_destroy(other);
    h_redis_stop(&r);
}

Test(checkpoint, list_many_keys_scans_pages) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "pl");
    for (int part = 0; part < 300; part++)
        write_ok(c, "t", part, part, "abc", 3);
    /* unrelated keys SCAN has to walk past */
    redisContext *rc = h_redis_connect(&r);
    for (int i = 0; i < 3000; i++)
        redisAppendCommand(rc, "SET other:%d x", i);
    for (int i = 0; i < 3000; i++) {
        void *rep;
        cr_assert_eq(redisGetReply(rc, &rep), REDIS_OK);
        freeReplyObject(rep);
    }
    redisFree(rc);
    weir_ckpt_info_t *in;
    int count;
    cr_assert_eq(weir_ckpt_list(c, &in, &count, errstr, sizeof(errstr)), WEIR_OK, "%s", errstr);
    cr_assert_eq(count, 300);
    for (int i = 0; i < count; i++)
        cr_assert_eq(in[i].partition, i);
    weir_ckpt_info_free(in, count);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}

/* ---- URLs, AUTH, ACL users, databases ------------------------------------ */

Test(checkpoint, bad_urls) {
    static const char *const bad[] = {"http://x:1",      "redis://",          "redis://:6379", "redis://h:0",
                                      "redis://h:99999", "redis://h:12x",     "redis://h:1/x", "redis://user@h:1",
                                      "redis://[::1:1",  "redis://a:%zz@h:1", "rediss://h:1",  NULL};
    for (int i = 0; bad[i]; i++)
        cr_assert_null(weir_ckpt_new(bad[i], "pl", errstr, sizeof(errstr)), "accepted '%s'", bad[i]);
    cr_assert_null(weir_ckpt_new(NULL, "pl", errstr, sizeof(errstr)));
    cr_assert_null(weir_ckpt_new("redis://h:1", "a:b", errstr, sizeof(errstr)));
    static const char *const good[] = {"redis://h",          "redis://h:1",       "redis://h:1/0",
                                       "redis://h:1/",       "redis://:pw@h:1/2", "redis://u:p%40ss@h:1",
                                       "redis://[::1]:6379", "redis://[::1]",     NULL};
    for (int i = 0; good[i]; i++) {
        weir_ckpt_t *c = weir_ckpt_new(good[i], "pl", errstr, sizeof(errstr));
        cr_assert_not_null(c, "rejected '%s': %s", good[i], errstr);
        weir_ckpt_destroy(c);
    }
}

Test(checkpoint, auth_acl_and_db) {
    h_redis_t r;
    h_redis_start(&r);
    freeReplyObject(h_redis_cmd(&r, "ACL SETUSER weir on >s3cr@t ~weir:* +@all"));
    char url[256];
    /* ACL user with a %-encoded password, database 3 */
    snprintf(url, sizeof(url), "redis://weir:s3cr%%40t@127.0.0.1:%d/3", r.port);
    weir_ckpt_t *c = weir_ckpt_new(url, "pl", errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr);
    write_ok(c, "t", 0, 1, "abc", 3);
    read_expect(c, "t", 0, 0, 1, 1, "abc", 3);
    redisContext *rc = h_redis_connect(&r);
    redisReply *rep = redisCommand(rc, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(rc, "EXISTS weir:pl:t:0:ckpt:1");
    cr_assert_eq(rep->integer, 1, "not written in db 3");
    freeReplyObject(rep);
    redisFree(rc);
    weir_ckpt_destroy(c);
    /* wrong password: a real error, not a retry */
    snprintf(url, sizeof(url), "redis://weir:nope@127.0.0.1:%d", r.port);
    c = weir_ckpt_new(url, "pl", errstr, sizeof(errstr));
    cr_assert_eq(read_rc(c, "t", 0, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "AUTH"), "%s", errstr);
    weir_ckpt_destroy(c);
    /* requirepass and the password-only form */
    freeReplyObject(h_redis_cmd(&r, "CONFIG SET requirepass pw"));
    snprintf(url, sizeof(url), "redis://:pw@127.0.0.1:%d", r.port);
    c = weir_ckpt_new(url, "pl", errstr, sizeof(errstr));
    write_ok(c, "t", 1, 1, "abc", 3);
    weir_ckpt_destroy(c);
    c = weir_ckpt_new(r.url, "pl", errstr, sizeof(errstr));
    cr_assert_eq(read_rc(c, "t", 1, 0), WEIR_ERR);
    cr_assert(strstr(errstr, "NOAUTH"), "%s", errstr);
    weir_ckpt_destroy(c);
    h_redis_kill(&r);
}

/* ---- weir state ---------------------------------------------------------- */

/** Run weir_cmd_state in a child with stdout/stderr to files; @returns its exit status. */
static int run_state(const char *out, const char *err, const char *const args[]) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "state";
    for (int i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        cr_assert(freopen(out, "w", stdout));
        cr_assert(freopen(err, "w", stderr));
        int rc = weir_cmd_state(argc, argv);
        fflush(NULL);
        _exit(rc);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/** A task snapshot as weir_task_snapshot lays it out, with two nodes. */
static void fake_task_snapshot(weir_buf_t *b) {
    weir_writer_t w = {.buf = b};
    weir_w_u32(&w, 2);
    weir_w_frame_begin(&w, "task", 1); /* max_ts, watermark, no sink counters */
    weir_w_i64(&w, 1700000000000);
    weir_w_i64(&w, 1699999995000);
    weir_w_u32(&w, 0);
    weir_w_frame_end(&w);
    weir_w_str(&w, "valid");
    weir_w_frame_begin(&w, "filter", 1);
    weir_w_frame_end(&w);
    weir_w_str(&w, "per_10s");
    weir_w_frame_begin(&w, "window", 3);
    for (int i = 0; i < 1000; i++)
        weir_w_u64(&w, (uint64_t)i);
    weir_w_frame_end(&w);
}

Test(checkpoint, weir_state_command) {
    h_redis_t r;
    h_redis_start(&r);
    weir_ckpt_t *c = open_store(&r, "demo");
    weir_buf_t b = {0};
    fake_task_snapshot(&b);
    write_ok(c, "sensor.readings", 0, 100, b.p, b.len);
    write_ok(c, "sensor.readings", 0, 200, b.p, b.len);
    write_ok(c, "sensor.readings", 1, 300, b.p, b.len);
    const char *out = h_path("state.out"), *err = h_path("state.err");

    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--pipeline", "demo", "list", NULL}), 0);
    char *s = h_read_file(out);
    cr_assert(strstr(s, "TOPIC") && strstr(s, "PARTITION") && strstr(s, "NEXT_OFFSET") && strstr(s, "AGE"), "%s", s);
    cr_assert(strstr(s, "2 (latest)") && strstr(s, "300") && strstr(s, "7.9 KiB"), "%s", s);
    cr_assert_eq(h_count_text(out, "sensor.readings"), 3, "%s", s);
    free(s);

    cr_assert_eq(
        run_state(out, err,
                  (const char *[]){"--redis", r.url, "--pipeline", "demo", "dump", "sensor.readings", "0", NULL}),
        0);
    s = h_read_file(out);
    cr_assert(strstr(s, "\"key\": \"weir:demo:sensor.readings:0:ckpt:2\""), "%s", s);
    cr_assert(strstr(s, "\"next_offset\": 200") && strstr(s, "\"verified\": true"), "%s", s);
    cr_assert(strstr(s, "\"tag\": \"window\"") && strstr(s, "\"payload_length\": 8000"), "%s", s);
    cr_assert(strstr(s, "\"max_ts\": 1700000000000"), "%s", s);
    free(s);

    cr_assert_eq(run_state(out, err,
                           (const char *[]){"--redis", r.url, "--pipeline", "demo", "dump", "sensor.readings", "0",
                                            "--node", "per_10s", "--checkpoint", "1", NULL}),
                 0);
    s = h_read_file(out);
    cr_assert(strstr(s, "\"checkpoint\": 1") && strstr(s, "\"next_offset\": 100"), "%s", s);
    cr_assert(strstr(s, "\"node\": {") && strstr(s, "\"version\": 3") && strstr(s, "--file"), "%s", s);
    cr_assert_null(strstr(s, "\"filter\""), "%s", s);
    free(s);

    cr_assert_eq(run_state(out, err,
                           (const char *[]){"--redis", r.url, "--pipeline", "demo", "dump", "sensor.readings", "0",
                                            "--node", "nope", NULL}),
                 1);
    cr_assert(h_count_text(err, "no node 'nope'") == 1);

    /* a corrupt checkpoint: meta still shown, verified false, exit 1 */
    freeReplyObject(h_redis_cmd(&r, "HSET weir:demo:sensor.readings:1:ckpt:1 crc32 1"));
    cr_assert_eq(
        run_state(out, err,
                  (const char *[]){"--redis", r.url, "--pipeline", "demo", "dump", "sensor.readings", "1", NULL}),
        1);
    s = h_read_file(out);
    cr_assert(strstr(s, "\"verified\": false") && strstr(s, "CRC-32 mismatch") && strstr(s, "\"crc32\": 1"), "%s", s);
    free(s);

    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--pipeline", "demo", "delete", NULL}), 0);
    cr_assert_eq(h_count_text(out, "deleted 5 keys"), 1); /* 3 checkpoints + 2 latest */
    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--pipeline", "demo", "list", NULL}), 0);
    cr_assert_eq(h_count_text(out, "no checkpoints"), 1);

    /* usage errors and Redis down */
    cr_assert_eq(run_state(out, err, (const char *[]){"list", NULL}), 2);
    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--pipeline", "demo", "dump", NULL}), 2);
    cr_assert_eq(run_state(out, err, (const char *[]){"--help", NULL}), 0);
    h_redis_kill(&r);
    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--pipeline", "demo", "list", NULL}), 1);
    cr_assert_eq(h_count_text(err, "connect"), 1);
    weir_buf_free(&b);
    weir_ckpt_destroy(c);
}

static void ignore_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque;
    (void)seq;
    (void)sink;
    (void)rec;
}

Test(checkpoint, state_dump_with_pipeline_file_shows_operator_state) {
    h_redis_t r;
    h_redis_start(&r);
    const char *file = h_path("dump.yaml");
    FILE *f = fopen(file, "w");
    fprintf(f, "pipeline: dumpme\n"
               "source:\n  fields: {k: string, ts: long, v: double}\n  event_time: ts\n"
               "nodes:\n  - {name: keep, op: filter, where: 'v > 0'}\n"
               "  - {name: w, op: window, input: keep, key: k, type: tumbling, size: 10s, aggregate: {n: count(), s: "
               "sum(v)}}\n");
    fclose(f);
    /* A real task snapshot of that pipeline after three records. */
    weir_pipeline_t *pl = weir_pipeline_load(file, errstr, sizeof(errstr));
    cr_assert_not_null(pl, "%s", errstr);
    weir_task_t *t = weir_task_new(pl, ignore_sink, NULL, NULL);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    const struct {
        const char *k;
        int64_t ts;
        double v;
    } in[] = {{"a", 1000, 1.5}, {"a", 2000, 2.0}, {"b", 3000, 5.0}};
    for (size_t i = 0; i < 3; i++) {
        weir_record_clear(&rec);
        rec.v[0] = weir_v_str(in[i].k, 1);
        rec.v[1] = weir_v_long(in[i].ts);
        rec.v[2] = weir_v_double(in[i].v);
        rec.ts = in[i].ts;
        weir_task_process(t, &rec);
    }
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(t, &snap), WEIR_OK);
    char *fp = weir_pipeline_fingerprint(pl);
    weir_ckpt_t *c = open_store(&r, "dumpme");
    int64_t n;
    cr_assert_eq(weir_ckpt_write(c, "t", 0, 3, fp, snap.p, snap.len, &n, errstr, sizeof(errstr)), WEIR_OK, "%s",
                 errstr);

    const char *out = h_path("dump.out"), *err = h_path("dump.err");
    cr_assert_eq(
        run_state(out, err, (const char *[]){"--redis", r.url, "--file", file, "dump", "t", "0", "--node", "w", NULL}),
        0, "%s", h_read_file(err));
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "%s", h_read_file(out));
    json_t *state = json_object_get(json_object_get(json_object_get(j, "task"), "node"), "state");
    cr_assert(json_is_object(state), "%s", h_read_file(out));
    cr_assert_eq(json_integer_value(json_object_get(state, "keys")), 2);
    json_t *wins = json_object_get(state, "windows");
    cr_assert_eq(json_array_size(wins), 2);
    /* Expected from the three inputs: [0, 10000) per key: a → n 2, s 3.5; b → n 1, s 5. */
    json_t *a = json_array_get(wins, 0), *b = json_array_get(wins, 1);
    cr_assert_str_eq(json_string_value(json_object_get(a, "key")), "a");
    cr_assert_eq(json_integer_value(json_object_get(a, "window_start")), 0);
    cr_assert_eq(json_integer_value(json_object_get(a, "window_end")), 10000);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(a, "aggregates"), "n")), 2);
    cr_assert_eq(json_number_value(json_object_get(json_object_get(a, "aggregates"), "s")), 3.5);
    cr_assert_str_eq(json_string_value(json_object_get(b, "key")), "b");
    cr_assert_eq(json_number_value(json_object_get(json_object_get(b, "aggregates"), "s")), 5.0);
    json_decref(j);

    /* A stateless node (no dump callback, an empty frame written by the engine): its state is {}. */
    cr_assert_eq(
        run_state(out, err,
                  (const char *[]){"--redis", r.url, "--file", file, "dump", "t", "0", "--node", "keep", NULL}),
        0, "%s", h_read_file(err));
    j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "%s", h_read_file(out));
    json_t *keep = json_object_get(json_object_get(j, "task"), "node");
    cr_assert_str_eq(json_string_value(json_object_get(keep, "tag")), "filter", "%s", h_read_file(out));
    cr_assert_eq(json_integer_value(json_object_get(keep, "payload_length")), 0);
    state = json_object_get(keep, "state");
    cr_assert(json_is_object(state) && json_object_size(state) == 0, "%s", h_read_file(out));
    json_decref(j);

    /* A changed pipeline is refused with the reason instead of a wrong reading. */
    const char *file2 = h_path("dump2.yaml");
    f = fopen(file2, "w");
    fprintf(f, "pipeline: dumpme\n"
               "source:\n  fields: {k: string, ts: long, v: double}\n  event_time: ts\n"
               "nodes:\n  - {name: keep, op: filter, where: 'v > 0'}\n"
               "  - {name: w, op: window, input: keep, key: k, type: tumbling, size: 20s, aggregate: {n: count(), s: "
               "sum(v)}}\n");
    fclose(f);
    cr_assert_eq(run_state(out, err, (const char *[]){"--redis", r.url, "--file", file2, "dump", "t", "0", NULL}), 0);
    cr_assert(h_count_text(out, "node 'w' was reconfigured") == 1, "%s", h_read_file(out));

    free(fp);
    weir_buf_free(&snap);
    weir_record_free(&rec);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
    weir_ckpt_destroy(c);
    h_redis_stop(&r);
}
