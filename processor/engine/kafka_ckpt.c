/* The checkpoint coordinator (ckpt_coord.h) bound to the Kafka runtime: the
 * producer is flushed, tasks snapshot, Redis stores, Kafka commits (in a
 * transaction with exactly_once). Also the restore of an assigned task, with
 * its fallback to the previous checkpoint. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"

/* ops->flush: the hand-off queue, then the producer, acknowledged. */
static int coord_flush(void *opaque) {
    krun_t *kr = opaque;
    kafka_sink_drain(kr);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_flush(kr->producer, KAFKA_REQUEST_TIMEOUT_MS)) == RD_KAFKA_RESP_ERR__TIMED_OUT && !kr->fatal)
        weir_log(WEIR_LOG_WARN, LOG, "waiting for %d outputs to be acknowledged", rd_kafka_outq_len(kr->producer));
    return kr->fatal ? WEIR_ERR : WEIR_OK;
}

/* ops->snapshot: the task's state. Between records only. */
static int coord_snapshot(void *opaque, weir_ckpt_part_t *part, weir_buf_t *buf) {
    (void)opaque;
    ktask_t *t = part->task;
    if (weir_task_snapshot(t->task, buf)) {
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: an operator failed to snapshot", t->topic, (int)t->partition);
        return WEIR_ERR;
    }
    return WEIR_OK;
}

/* ops->write: the snapshot and the next offset to Redis, with metrics and a log line. */
static int coord_write(void *opaque, weir_ckpt_part_t *part, const weir_buf_t *snap, char *errstr, size_t errstr_size) {
    krun_t *kr = opaque;
    ktask_t *t = part->task;
    int64_t n = 0, t0 = weir_now_ns();
    int rc = weir_ckpt_write(kr->ckpt, t->topic, t->partition, part->next_offset, kr->fingerprint, snap->p, snap->len,
                             &n, errstr, errstr_size);
    if (rc == WEIR_OK) {
        kr->checkpoints++;
        atomic_store_explicit(&kr->metrics.checkpoints, kr->checkpoints, memory_order_relaxed);
        atomic_store_explicit(&kr->metrics.checkpoint_last_bytes, snap->len, memory_order_relaxed);
        atomic_store_explicit(&kr->metrics.checkpoint_last_us, (uint64_t)((weir_now_ns() - t0) / 1000),
                              memory_order_relaxed);
        weir_log(WEIR_LOG_INFO, "checkpoint", "checkpoint %s[%d] #%lld offset=%lld bytes=%zu ms=%.1f", t->topic,
                 (int)t->partition, (long long)n, (long long)part->next_offset, snap->len,
                 (double)(weir_now_ns() - t0) / 1e6);
        return WEIR_OK;
    }
    atomic_fetch_add_explicit(&kr->metrics.checkpoint_failures, 1, memory_order_relaxed);
    if (rc != WEIR_RETRY)
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: %s", t->topic, (int)t->partition, errstr);
    return rc;
}

static rd_kafka_topic_partition_list_t *offsets_of(weir_ckpt_part_t *const *parts, int n) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(n > 8 ? n : 8);
    for (int i = 0; i < n; i++) {
        const ktask_t *t = parts[i]->task;
        rd_kafka_topic_partition_list_add(offs, t->topic, t->partition)->offset = parts[i]->next_offset;
    }
    return offs;
}

/* Exactly-once: the outputs of the interval and the input offsets commit in
 * one transaction, after the Redis checkpoints are written. A crash before the
 * commit aborts the outputs and leaves Kafka's committed offset at the previous
 * checkpoint's, which kafka_restore_task() then picks. */
static int commit_transaction(krun_t *kr, weir_ckpt_part_t *const *parts, int n) {
    rd_kafka_topic_partition_list_t *offs = offsets_of(parts, n);
    rd_kafka_error_t *e = NULL;
    if (offs->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(kr->consumer);
        e = rd_kafka_send_offsets_to_transaction(kr->producer, offs, md, KAFKA_TXN_CALL_TIMEOUT_MS);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!e)
        e = rd_kafka_commit_transaction(kr->producer, KAFKA_TXN_CALL_TIMEOUT_MS);
    if (e) {
        weir_log(WEIR_LOG_ERR, LOG, "transaction commit failed: %s%s", rd_kafka_error_string(e),
                 rd_kafka_error_txn_requires_abort(e) ? " (aborting; a restart recovers from the last checkpoint)"
                                                      : "");
        if (rd_kafka_error_txn_requires_abort(e)) {
            rd_kafka_error_t *a = rd_kafka_abort_transaction(kr->producer, KAFKA_TXN_CALL_TIMEOUT_MS);
            if (a)
                rd_kafka_error_destroy(a);
        }
        rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(offs);
        /* Our in-memory state is ahead of what Kafka committed: stop, recover on restart. */
        kr->fatal = true;
        return WEIR_ERR;
    }
    /* The same offsets once more as a plain commit. On a real cluster this is
     * redundant (the transaction made them durable); librdkafka's mock
     * cluster (`weir broker`) acknowledges TxnOffsetCommit without storing
     * the offsets, so without it the local broker would never show progress. */
    if (offs->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(kr->consumer, offs, 0);
        if (err)
            weir_log(WEIR_LOG_DEBUG, LOG, "mirror offset commit: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(offs);
    e = rd_kafka_begin_transaction(kr->producer);
    if (e) {
        weir_log(WEIR_LOG_ERR, LOG, "begin transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        /* The offsets did commit; only the next transaction cannot begin. */
        for (int i = 0; i < n; i++)
            parts[i]->committed = parts[i]->next_offset;
        kr->fatal = true;
        return WEIR_ERR;
    }
    return WEIR_OK;
}

/* ops->commit: the next offsets to Kafka (in the transaction with exactly_once). */
static int coord_commit(void *opaque, weir_ckpt_part_t *const *parts, int n) {
    krun_t *kr = opaque;
    if (kr->eos)
        return commit_transaction(kr, parts, n);
    rd_kafka_topic_partition_list_t *offs = offsets_of(parts, n);
    rd_kafka_resp_err_t err = rd_kafka_commit(kr->consumer, offs, 0);
    rd_kafka_topic_partition_list_destroy(offs);
    if (err) {
        weir_log(WEIR_LOG_WARN, LOG, "offset commit failed: %s (will retry)", rd_kafka_err2str(err));
        return WEIR_RETRY;
    }
    return WEIR_OK;
}

/* ops->pause: every assigned partition, while Redis is down. */
static void coord_pause(void *opaque, bool pause) {
    krun_t *kr = opaque;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(kr->consumer, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
        if (pause)
            rd_kafka_pause_partitions(kr->consumer, a);
        else
            rd_kafka_resume_partitions(kr->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    atomic_store_explicit(&kr->metrics.paused, pause ? 1 : 0, memory_order_relaxed);
}

int kafka_ckpt_open(krun_t *kr) {
    const weir_pipeline_t *pl = kr->pl;
    const weir_run_opts_t *o = kr->o;
    const char *redis = o->redis ? o->redis : pl->redis_url;
    int64_t every_ms = o->commit_interval_ms > 0 ? o->commit_interval_ms : KAFKA_COMMIT_INTERVAL_MS;
    if (redis) {
        char errstr[WEIR_ERRSTR_SIZE];
        if (!(kr->ckpt = weir_ckpt_new(redis, pl->name, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "checkpoint", "%s", errstr);
            return WEIR_ERR;
        }
        char shown[512];
        weir_ckpt_url_redact(redis, shown, sizeof(shown));
        /* A password or user that Redis refuses is a configuration error: exit 2 now rather than
         * retry or fail every checkpoint. Unreachable: a passing outage, retried as always. */
        int rc = weir_ckpt_connect(kr->ckpt, errstr, sizeof(errstr));
        if (rc == WEIR_ERR) {
            weir_log(WEIR_LOG_ERR, "checkpoint", "%s: %s", shown, errstr);
            kr->config_error = true;
            return WEIR_ERR;
        }
        if (rc == WEIR_RETRY)
            weir_log(WEIR_LOG_WARN, "checkpoint", "Redis unavailable at start (%s): retrying when state is needed",
                     errstr);
        kr->fingerprint = weir_pipeline_fingerprint(pl);
        every_ms = o->checkpoint_interval_ms > 0 ? o->checkpoint_interval_ms : pl->checkpoint_interval_ms;
        weir_log(WEIR_LOG_INFO, "checkpoint", "state goes to %s every %lld ms", shown, (long long)every_ms);
    } else if (pl->delivery == WEIR_EXACTLY_ONCE) {
        weir_log(WEIR_LOG_ERR, LOG, "%s: delivery: exactly_once needs checkpoints (checkpoint.redis or --redis)",
                 pl->path);
        return WEIR_ERR;
    }
    if (pl->delivery == WEIR_EXACTLY_ONCE) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(kr->producer, KAFKA_TXN_CALL_TIMEOUT_MS);
        if (!e)
            e = rd_kafka_begin_transaction(kr->producer);
        if (e) {
            weir_log(WEIR_LOG_ERR, LOG, "transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return WEIR_ERR;
        }
        kr->eos = true;
        weir_log(WEIR_LOG_INFO, LOG,
                 "exactly-once delivery: outputs and offsets commit in one transaction per checkpoint");
    }
    weir_ckpt_coord_ops_t ops = {.flush = coord_flush, .commit = coord_commit, .pause = coord_pause, .now_ns = NULL};
    if (kr->ckpt) {
        ops.snapshot = coord_snapshot;
        ops.write = coord_write;
    }
    kr->coord = weir_ckpt_coord_new(&ops, kr, kr->eos, every_ms, weir_now_ns());
    return WEIR_OK;
}

void kafka_ckpt_close(krun_t *kr) {
    weir_ckpt_destroy(kr->ckpt);
    kr->ckpt = NULL;
    free(kr->fingerprint);
    kr->fingerprint = NULL;
    weir_ckpt_coord_destroy(kr->coord);
    kr->coord = NULL;
}

/* The participants of a round: every task, or (not in a transaction, which
 * must cover every partition) those whose partition is in `only`. */
static weir_ckpt_part_t **parts_of(krun_t *kr, const rd_kafka_topic_partition_list_t *only, int *n) {
    int cnt = 0;
    for (ktask_t *t = kr->tasks; t; t = t->next)
        cnt++;
    weir_ckpt_part_t **parts = weir_calloc((size_t)cnt + 1, sizeof(*parts));
    *n = 0;
    for (ktask_t *t = kr->tasks; t; t = t->next) {
        if (only && !kr->eos && !rd_kafka_topic_partition_list_find(only, t->topic, t->partition))
            continue;
        parts[(*n)++] = &t->ck;
    }
    return parts;
}

int kafka_commit_tasks(krun_t *kr, const rd_kafka_topic_partition_list_t *only) {
    int n;
    weir_ckpt_part_t **parts = parts_of(kr, only, &n);
    int rc = weir_ckpt_coord_commit(kr->coord, parts, n);
    free(parts);
    if (rc == WEIR_ERR)
        kr->fatal = true;
    return rc;
}

void kafka_checkpoint_tick(krun_t *kr, int64_t now_ns) {
    if (!weir_ckpt_coord_due(kr->coord, now_ns))
        return;
    int n;
    weir_ckpt_part_t **parts = parts_of(kr, NULL, &n);
    if (weir_ckpt_coord_round(kr->coord, parts, n, now_ns) == WEIR_ERR)
        kr->fatal = true;
    free(parts);
}

/* Restore a newly assigned task from Redis. Returns the offset to seek to, or -1 (committed offset). */
int64_t kafka_restore_task(krun_t *kr, ktask_t *t, int64_t committed) {
    char errstr[WEIR_ERRSTR_SIZE];
    weir_buf_t state = {0};
    int64_t n = 0, off = -1;
    char *fp = NULL;
    int rc;
    int64_t seek = -1;
    int backoff = WEIR_CKPT_BACKOFF_MIN_MS;
    for (;;) {
        rc = weir_ckpt_read(kr->ckpt, t->topic, t->partition, 0, &n, &off, &fp, &state, errstr, sizeof(errstr));
        if (rc != WEIR_RETRY || weir_stop)
            break;
        weir_log(WEIR_LOG_WARN, "checkpoint", "Redis unavailable (%s): cannot restore %s[%d] yet, retry in %d ms",
                 errstr, t->topic, (int)t->partition, backoff);
        usleep((useconds_t)backoff * 1000);
        backoff = weir_ckpt_backoff_next(backoff);
    }
    if (rc == WEIR_ERR ||
        (rc == WEIR_OK && kr->pl->delivery == WEIR_EXACTLY_ONCE && committed >= 0 && off != committed)) {
        /* A corrupt latest checkpoint, or (exactly-once) one whose transaction
         * never committed: fall back to the one before it. */
        if (rc == WEIR_ERR)
            weir_log(WEIR_LOG_ERR, "checkpoint", "%s; trying the previous checkpoint", errstr);
        else
            weir_log(WEIR_LOG_INFO, "checkpoint",
                     "%s[%d]: checkpoint #%lld (offset %lld) is ahead of the committed offset %lld: its transaction "
                     "did not commit; using the previous checkpoint",
                     t->topic, (int)t->partition, (long long)n, (long long)off, (long long)committed);
        int64_t prev = n > 1 ? n - 1 : 0;
        if (rc == WEIR_ERR) {
            weir_ckpt_field_t *f = NULL;
            int cnt = 0;
            char e2[WEIR_ERRSTR_SIZE];
            if (weir_ckpt_meta(kr->ckpt, t->topic, t->partition, 0, &n, &f, &cnt, e2, sizeof(e2)) == WEIR_OK)
                prev = n - 1;
            weir_ckpt_fields_free(f, cnt);
        }
        free(fp);
        fp = NULL;
        rc = prev > 0
                 ? weir_ckpt_read(kr->ckpt, t->topic, t->partition, prev, &n, &off, &fp, &state, errstr, sizeof(errstr))
                 : WEIR_CKPT_NONE;
        if (rc != WEIR_OK) {
            weir_log(WEIR_LOG_ERR, "checkpoint",
                     "%s[%d]: no usable checkpoint (%s); refusing to start without state "
                     "(use --reset-state all to start empty)",
                     t->topic, (int)t->partition, rc == WEIR_CKPT_NONE ? "none before it" : errstr);
            if (!kr->o->reset_state || strcmp(kr->o->reset_state, "all"))
                kr->fatal = true;
            goto done;
        }
    }
    if (rc == WEIR_CKPT_NONE) {
        weir_log(WEIR_LOG_INFO, "checkpoint", "no checkpoint for %s[%d]: starting at the committed offset", t->topic,
                 (int)t->partition);
        goto done;
    }
    if (rc != WEIR_OK) /* stopped while waiting for Redis */
        goto done;
    /* The checkpoint's offset must lie in the partition's log [low, high]: else the broker answers
     * out-of-range, the consumer resets, and every message below the offset would be skipped as already
     * processed. Refused (docs/checkpoints.md), unless --reset-state all: then the partition starts empty
     * at the committed offset. The same for the checkpoint exactly-once chose by the committed offset. */
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t qerr =
        rd_kafka_query_watermark_offsets(kr->consumer, t->topic, t->partition, &lo, &hi, KAFKA_REQUEST_TIMEOUT_MS);
    if (qerr) {
        weir_log(WEIR_LOG_WARN, "checkpoint",
                 "%s[%d]: cannot read the log's offsets (%s): checkpoint offset %lld "
                 "not checked",
                 t->topic, (int)t->partition, rd_kafka_err2str(qerr), (long long)off);
    } else if (off < lo || off > hi) {
        char key[512];
        weir_ckpt_key(kr->ckpt, t->topic, t->partition, n, key, sizeof(key));
        bool reset = kr->o->reset_state && !strcmp(kr->o->reset_state, "all");
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s: offset %lld lies outside the log of %s[%d] (offsets %lld..%lld): %s",
                 key, (long long)off, t->topic, (int)t->partition, (long long)lo, (long long)hi,
                 reset ? "--reset-state all: this partition starts empty at the committed offset"
                       : "refusing to start (the log was deleted, truncated or recreated?); "
                         "--reset-state all starts this partition empty at the committed offset (docs/checkpoints.md)");
        if (!reset)
            kr->fatal = true;
        else if (committed >= 0 && (committed < lo || committed > hi)) {
            /* The committed offset is outside the log too: the consumer's auto.offset.reset decides, and no
             * message is taken for already processed. */
            weir_log(WEIR_LOG_WARN, "checkpoint",
                     "%s[%d]: the committed offset %lld is outside the log too: "
                     "starting where auto.offset.reset says",
                     t->topic, (int)t->partition, (long long)committed);
            t->ck.next_offset = -1;
        }
        goto done;
    }
    weir_restore_opts_t opts = {.saved_fp = fp, .cur_fp = kr->fingerprint, .reset = kr->o->reset_state};
    if (weir_task_restore(t->task, state.p, state.len, &opts, errstr, sizeof(errstr))) {
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: cannot restore checkpoint #%lld: %s", t->topic, (int)t->partition,
                 (long long)n, errstr);
        kr->fatal = true;
        goto done;
    }
    weir_log(WEIR_LOG_INFO, "checkpoint", "restored %s[%d] from checkpoint #%lld offset=%lld", t->topic,
             (int)t->partition, (long long)n, (long long)off);
    t->ck.ckpt_offset = off;
    seek = off;
done:
    weir_buf_free(&state);
    free(fp);
    return seek;
}
