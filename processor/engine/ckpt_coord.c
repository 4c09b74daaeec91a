/* The checkpoint coordinator: round order and store-outage policy (ckpt_coord.h). */
#include "ckpt_coord.h"

#include <stdlib.h>

struct weir_ckpt_coord {
    weir_ckpt_coord_ops_t ops;
    void *opaque;
    bool checkpoints;      /* snapshot + write given: checkpoint before committing */
    bool transactional;    /* exactly-once: all or nothing, a commit every round */
    int64_t interval_ns;   /* between scheduled rounds */
    int64_t next_round_ns; /* when the next scheduled round is due */
    bool paused;           /* the store is down: consumption paused */
    int64_t retry_at_ns;   /* while paused: the next attempt */
    int backoff_ms;        /* current back-off; 0 while the store is fine */
    uint64_t failures;     /* failed writes since the last pause */
    weir_buf_t snap;       /* snapshot scratch, reused by every round */
};

int weir_ckpt_backoff_next(int ms) {
    if (!ms)
        return WEIR_CKPT_BACKOFF_MIN_MS;
    return ms * 2 > WEIR_CKPT_BACKOFF_MAX_MS ? WEIR_CKPT_BACKOFF_MAX_MS : ms * 2;
}

weir_ckpt_coord_t *weir_ckpt_coord_new(const weir_ckpt_coord_ops_t *ops, void *opaque, bool transactional,
                                       int64_t interval_ms, int64_t now_ns) {
    weir_ckpt_coord_t *c = weir_calloc(1, sizeof(*c));
    c->ops = *ops;
    c->opaque = opaque;
    c->checkpoints = ops->snapshot && ops->write;
    c->transactional = transactional;
    c->interval_ns = interval_ms * 1000000;
    c->next_round_ns = now_ns + c->interval_ns;
    return c;
}

void weir_ckpt_coord_destroy(weir_ckpt_coord_t *c) {
    if (!c)
        return;
    weir_buf_free(&c->snap);
    free(c);
}

static int64_t coord_now(const weir_ckpt_coord_t *c) {
    return c->ops.now_ns ? c->ops.now_ns(c->opaque) : weir_now_ns();
}

bool weir_ckpt_coord_due(const weir_ckpt_coord_t *c, int64_t now_ns) {
    return c->paused ? now_ns >= c->retry_at_ns : now_ns >= c->next_round_ns;
}

bool weir_ckpt_coord_paused(const weir_ckpt_coord_t *c) { return c->paused; }

int weir_ckpt_coord_backoff_ms(const weir_ckpt_coord_t *c) { return c->backoff_ms; }

int64_t weir_ckpt_coord_retry_at(const weir_ckpt_coord_t *c) { return c->retry_at_ns; }

/* Snapshot and store one participant's state. */
static int checkpoint_part(weir_ckpt_coord_t *c, weir_ckpt_part_t *p) {
    char errstr[WEIR_ERRSTR_SIZE] = "";
    weir_buf_reset(&c->snap);
    if (c->ops.snapshot(c->opaque, p, &c->snap))
        return WEIR_ERR;
    int rc = c->ops.write(c->opaque, p, &c->snap, errstr, sizeof(errstr));
    if (rc == WEIR_OK) {
        p->ckpt_offset = p->next_offset;
        return WEIR_OK;
    }
    c->failures++;
    if (rc == WEIR_RETRY) {
        if (!c->paused)
            weir_log(WEIR_LOG_WARN, "checkpoint", "Redis unavailable (%s): consumption paused, retry in %d ms", errstr,
                     c->backoff_ms ? c->backoff_ms : WEIR_CKPT_BACKOFF_MIN_MS);
        return WEIR_RETRY;
    }
    return WEIR_ERR;
}

int weir_ckpt_coord_commit(weir_ckpt_coord_t *c, weir_ckpt_part_t *const *parts, int n) {
    weir_ckpt_part_t **offs = weir_calloc((size_t)n + 1, sizeof(*offs));
    int noffs = 0;
    bool flushed = false;
    int rc = WEIR_OK;
    for (int i = 0; i < n && rc == WEIR_OK; i++) {
        weir_ckpt_part_t *p = parts[i];
        if (p->next_offset < 0 ||
            (p->next_offset == p->committed && (!c->checkpoints || p->next_offset == p->ckpt_offset)))
            continue; /* no progress since the last round */
        if (!flushed) {
            /* Outputs first: what came before an offset must be safe before the offset is. */
            flushed = true;
            if (c->ops.flush(c->opaque) != WEIR_OK) {
                rc = WEIR_ERR;
                break;
            }
        }
        if (c->checkpoints && p->next_offset != p->ckpt_offset) {
            rc = checkpoint_part(c, p);
            if (rc != WEIR_OK)
                break;
        }
        if (p->next_offset != p->committed)
            offs[noffs++] = p;
    }
    if (c->transactional) {
        /* All or nothing: the transaction also commits the round's outputs. */
        if (rc == WEIR_OK)
            rc = c->ops.commit(c->opaque, offs, noffs);
        if (rc == WEIR_OK)
            for (int i = 0; i < noffs; i++)
                offs[i]->committed = offs[i]->next_offset;
    } else if (noffs > 0) {
        /* The offsets whose state is stored, even when a later checkpoint failed. */
        if (c->ops.commit(c->opaque, offs, noffs) == WEIR_OK) {
            for (int i = 0; i < noffs; i++)
                offs[i]->committed = offs[i]->next_offset;
        } else if (rc == WEIR_OK) {
            rc = WEIR_RETRY;
        }
    }
    free(offs);
    return rc;
}

static void set_paused(weir_ckpt_coord_t *c, bool pause) {
    if (c->paused == pause)
        return;
    c->ops.pause(c->opaque, pause);
    c->paused = pause;
    if (!pause) {
        weir_log(WEIR_LOG_INFO, "checkpoint", "Redis is back, consumption resumed");
        c->backoff_ms = 0;
    }
}

int weir_ckpt_coord_round(weir_ckpt_coord_t *c, weir_ckpt_part_t *const *parts, int n, int64_t now_ns) {
    int rc = weir_ckpt_coord_commit(c, parts, n);
    if (rc == WEIR_RETRY && c->checkpoints && c->failures) {
        /* The store is down (not just a commit that failed): pause and back off. */
        c->backoff_ms = weir_ckpt_backoff_next(c->backoff_ms);
        c->retry_at_ns = coord_now(c) + (int64_t)c->backoff_ms * 1000000;
        set_paused(c, true);
        c->failures = 0;
    } else if (rc == WEIR_OK) {
        set_paused(c, false);
    }
    c->next_round_ns = now_ns + c->interval_ns;
    return rc;
}
