/**
 * Kafka mode: a consumer-group member that runs one task per assigned
 * partition (DESIGN.md §3) and produces the sinks' records with one
 * idempotent producer.
 *
 * Offsets: a partition's "next offset" is committed only after every output
 * produced from the records before it has been acknowledged (the producer is
 * flushed first), so a crash re-processes records but never skips one
 * (at-least-once). On revocation the revoked partitions are flushed and
 * committed before they are given up, so a cooperative rebalance moves them
 * without duplicates.
 *
 * Checkpoints (DESIGN.md §6, docs/checkpoints.md): with a Redis URL, every
 * checkpoint interval, on revocation and at shutdown, the loop (between two
 * records) flushes the producer, snapshots every task and writes the
 * snapshot with its next offset to Redis, and only then commits that offset
 * to Kafka. On assignment a task restores its latest checkpoint and the
 * consumer seeks to the stored offset. When Redis is unreachable the
 * assigned partitions are paused (rd_kafka_pause) until a checkpoint can be
 * written again: nothing is lost, nothing half-written becomes visible.
 *
 * Threads: this loop runs every task on the calling thread (one worker);
 * by default a hand-off thread makes the librdkafka produce calls for the
 * outputs the worker encodes and queues (sink_main; drained before every
 * producer flush, so the order above holds).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "metrics.h"
#include "runtime.h"
#include "spsc.h"
#include "task.h"

#define LOG "kafka"

typedef struct ktask {
    char *topic;
    int32_t partition;
    weir_task_t *task;
    weir_decoder_t *dec;
    weir_record_t rec;
    int64_t next_offset; /* next offset to read; -1 unknown */
    int64_t committed;   /* last committed next_offset */
    int64_t end_offset;  /* --until-end: stop here (exclusive), -1 none */
    int64_t ckpt_offset; /* next_offset stored by the last checkpoint, -1 none */
    char **id_prefix;    /* per sink: "pipeline/label/topic/partition/" for output ids */
    size_t *id_prefix_len;
    bool done; /* reached end_offset */
    struct ktask *next;
} ktask_t;

typedef struct end_mark {
    char *topic;
    int32_t partition;
    int64_t end;
} end_mark_t;

typedef struct krun {
    const weir_pipeline_t *pl;
    const weir_run_opts_t *o;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t **sink_topics;
    rd_kafka_topic_t *dlq_topic;
    weir_encoder_t **enc; /* per sink */
    weir_buf_t buf;
    ktask_t *tasks;
    ktask_t *current; /* the task whose record is in hand */
    ktask_t *hint;    /* the task of the last message */
    end_mark_t *ends;
    int nends;
    uint64_t in, out, dead;
    _Atomic uint64_t produce_errors; /* also counted by the hand-off thread */
    int64_t first_ns, last_ns;
    const char *instance;
    atomic_bool fatal; /* set by either thread; the run stops */
    /* producer hand-off (default): the worker thread encodes each output and
     * queues it here; one thread makes the librdkafka produce calls */
    weir_spsc_t *outq;
    pthread_t sink_thread;
    bool sink_started;
    atomic_bool sink_quit;
    bool ever_assigned; /* see the close path in weir_run_kafka */
    bool subscribed;
    /* checkpoints */
    weir_ckpt_t *ckpt;   /* NULL: no checkpoints, offsets committed on an interval */
    char *fingerprint;   /* graph fingerprint stored with each checkpoint */
    bool paused;         /* Redis down: partitions paused */
    int64_t retry_at_ns; /* next checkpoint attempt while paused */
    int backoff_ms;
    uint64_t checkpoints, ckpt_failures;
    weir_buf_t snap; /* snapshot scratch */
    bool eos;        /* delivery: exactly_once (Kafka transactions) */
    /* deterministic ids of outputs without an `id` field */
    int *id_slot; /* per sink: slot of a string field `id`, or -1 */
    char idbuf[512];
    weir_metrics_t metrics; /* read by the metrics thread */
} krun_t;

static ktask_t *ktask_find(krun_t *kr, const char *topic, int32_t partition) {
    for (ktask_t *t = kr->tasks; t; t = t->next)
        if (t->partition == partition && !strcmp(t->topic, topic))
            return t;
    return NULL;
}

static int64_t end_for(krun_t *kr, const char *topic, int32_t partition) {
    for (int i = 0; i < kr->nends; i++)
        if (kr->ends[i].partition == partition && !strcmp(kr->ends[i].topic, topic))
            return kr->ends[i].end;
    return -1;
}

/* Produce with back-pressure: on a full queue, serve delivery reports and retry. */
static void produce(krun_t *kr, rd_kafka_topic_t *rkt, const void *key, size_t key_len, const void *val, size_t len,
                    rd_kafka_headers_t *hdrs, int64_t ts) {
    for (;;) {
        rd_kafka_resp_err_t err =
            rd_kafka_producev(kr->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, key_len),
                              RD_KAFKA_V_VALUE((void *)val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (!err)
            return;
        bool was_fatal = kr->fatal;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !was_fatal) {
            rd_kafka_poll(kr->producer, 10);
            continue;
        }
        /* (after a fatal error the run is stopping: a full queue is not waited on) */
        kr->produce_errors++;
        if (!was_fatal)
            weir_log(WEIR_LOG_ERR, LOG, "produce to %s failed: %s", rd_kafka_topic_name(rkt), rd_kafka_err2str(err));
        rd_kafka_headers_destroy(hdrs); /* not taken over by librdkafka on failure */
        kr->fatal = true;
        return;
    }
}

/* An output to sink `sink`: its weir.id header, then produce(). */
static void produce_output(krun_t *kr, int sink, const void *key, size_t klen, const void *val, size_t vlen,
                           const void *id, size_t idlen, int64_t ts) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "weir.id", 7, id, (ssize_t)idlen);
    produce(kr, kr->sink_topics[sink], key, klen, val, vlen, h, ts);
}

/* An output queued for the hand-off thread: this header, then key, value and id bytes. */
typedef struct out_hdr {
    int64_t ts;
    int32_t sink;
    uint8_t has_key;
    uint32_t klen, vlen, idlen;
} out_hdr_t;

/* The deterministic id of an output: its `id` field, else its task (input
 * partition) and its number among that task's outputs to this sink. The
 * numbers are part of the checkpoint, so a replay after a crash numbers the
 * same outputs the same way whatever triggered them (a record, a watermark,
 * end of input). */
static const char *output_id(krun_t *kr, int sink, const weir_record_t *rec, size_t *len) {
    int slot = kr->id_slot[sink];
    if (slot >= 0 && rec->v[slot].type == WEIR_STRING) {
        *len = rec->v[slot].u.s.n;
        return rec->v[slot].u.s.p;
    }
    const ktask_t *t = kr->current;
    if (!t) {
        *len = (size_t)snprintf(kr->idbuf, sizeof(kr->idbuf), "%s/%s/-/-1/0", kr->pl->name, kr->pl->sinks[sink].label);
        return kr->idbuf;
    }
    /* prefix + decimal sequence number, without printf on the per-record path */
    size_t n = t->id_prefix_len[sink];
    memcpy(kr->idbuf, t->id_prefix[sink], n);
    char digits[24];
    int d = 0;
    uint64_t v = t->task->emit_seq;
    do {
        digits[d++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (d)
        kr->idbuf[n++] = digits[--d];
    kr->idbuf[n] = '\0';
    *len = n;
    return kr->idbuf;
}

static void kafka_sink(void *opaque, int sink, const weir_record_t *rec) {
    krun_t *kr = opaque;
    char reason[256];
    size_t id_len;
    const char *id = output_id(kr, sink, rec, &id_len);
    weir_buf_reset(&kr->buf);
    bool json_extra = kr->pl->sinks[sink].format == WEIR_FMT_JSON && kr->id_slot[sink] < 0;
    if (weir_encode(kr->enc[sink], rec, json_extra ? "id" : NULL, json_extra ? id : NULL, &kr->buf, reason,
                    sizeof(reason))) {
        weir_log(WEIR_LOG_ERR, LOG, "cannot encode output of %s: %s", kr->pl->sinks[sink].label, reason);
        return;
    }
    kr->out++;
    atomic_store_explicit(&kr->metrics.records_out, kr->out, memory_order_relaxed);
    /* The message timestamp is the record's event time, as Kafka Streams and
     * Flink's Kafka sink write it (0: librdkafka stamps the current time). */
    int64_t ts = rec->ts == WEIR_TS_NONE || rec->ts < 0 ? 0 : rec->ts;
    size_t klen = rec->key ? rec->key_len : 0;
    size_t need = sizeof(out_hdr_t) + klen + kr->buf.len + id_len;
    if (kr->outq && need <= weir_spsc_max_entry(kr->outq)) {
        uint8_t *e = weir_spsc_reserve(kr->outq, need);
        out_hdr_t hd = {.ts = ts,
                        .sink = sink,
                        .has_key = rec->key != NULL,
                        .klen = (uint32_t)klen,
                        .vlen = (uint32_t)kr->buf.len,
                        .idlen = (uint32_t)id_len};
        memcpy(e, &hd, sizeof(hd));
        if (klen)
            memcpy(e + sizeof(hd), rec->key, klen);
        if (kr->buf.len)
            memcpy(e + sizeof(hd) + klen, kr->buf.p, kr->buf.len);
        memcpy(e + sizeof(hd) + klen + kr->buf.len, id, id_len);
        weir_spsc_push(kr->outq);
        return;
    }
    if (kr->outq) /* too large for the ring: after what is queued, in this thread */
        weir_spsc_drain(kr->outq);
    produce_output(kr, sink, rec->key, rec->key_len, kr->buf.p, kr->buf.len, id, id_len, ts);
}

/* The producer hand-off thread: the librdkafka produce calls for the queued
 * outputs, in order. Delivery reports may be served here or by the worker. */
static void *sink_main(void *arg) {
    krun_t *kr = arg;
    unsigned n = 0;
    for (;;) {
        size_t len;
        const uint8_t *e = weir_spsc_peek(kr->outq, &len);
        if (!e) {
            if (atomic_load(&kr->sink_quit))
                break;
            if (!weir_spsc_wait(kr->outq, 100))
                rd_kafka_poll(kr->producer, 0);
            continue;
        }
        out_hdr_t hd;
        memcpy(&hd, e, sizeof(hd));
        const uint8_t *key = e + sizeof(hd), *val = key + hd.klen, *id = val + hd.vlen;
        produce_output(kr, hd.sink, hd.has_key ? key : NULL, hd.klen, val, hd.vlen, id, hd.idlen, hd.ts);
        weir_spsc_pop(kr->outq);
        if ((++n & 255) == 0)
            rd_kafka_poll(kr->producer, 0);
    }
    return NULL;
}

/* Everything queued for the hand-off thread has been given to librdkafka. */
static void sink_drain(krun_t *kr) {
    if (kr->outq)
        weir_spsc_drain(kr->outq);
}

static void dead_letter(krun_t *kr, const char *topic, int32_t partition, int64_t offset, const char *node,
                        const char *reason, const void *key, size_t key_len, const void *val, size_t len) {
    kr->dead++;
    atomic_store_explicit(&kr->metrics.dead_lettered, kr->dead, memory_order_relaxed);
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    char num[32];
    rd_kafka_header_add(h, "weir.error.reason", -1, reason, -1);
    rd_kafka_header_add(h, "weir.error.topic", -1, topic, -1);
    snprintf(num, sizeof(num), "%" PRId32, partition);
    rd_kafka_header_add(h, "weir.error.partition", -1, num, -1);
    snprintf(num, sizeof(num), "%" PRId64, offset);
    rd_kafka_header_add(h, "weir.error.offset", -1, num, -1);
    rd_kafka_header_add(h, "weir.pipeline", -1, kr->pl->name, -1);
    if (node)
        rd_kafka_header_add(h, "weir.error.node", -1, node, -1);
    if (kr->dead <= 10 || weir_log_level >= WEIR_LOG_DEBUG)
        weir_log(WEIR_LOG_WARN, LOG, "dead-letter %s [%" PRId32 "] @%" PRId64 ": %s", topic, partition, offset, reason);
    produce(kr, kr->dlq_topic, key, key_len, val, len, h, 0);
}

static void kafka_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    krun_t *kr = opaque;
    weir_buf_t b = {0};
    char why[256];
    weir_encoder_t *enc = weir_encoder_new(WEIR_FMT_JSON, NULL, rec->rt, false, 0, why, sizeof(why));
    if (enc)
        weir_encode(enc, rec, NULL, NULL, &b, why, sizeof(why));
    dead_letter(kr, rec->topic ? rec->topic : "?", rec->partition, rec->offset, node, reason, rec->key, rec->key_len,
                b.p, b.len);
    weir_encoder_destroy(enc);
    weir_buf_free(&b);
}

static ktask_t *ktask_new(krun_t *kr, const char *topic, int32_t partition) {
    char errstr[WEIR_ERRSTR_SIZE];
    ktask_t *t = weir_calloc(1, sizeof(*t));
    t->topic = weir_strdup(topic);
    t->partition = partition;
    t->next_offset = -1;
    t->committed = -1;
    t->end_offset = kr->o->until_end ? end_for(kr, topic, partition) : -1;
    t->ckpt_offset = -1;
    t->dec = weir_decoder_new(kr->pl->source.format, kr->pl->source.schema, kr->pl->source.rt, kr->pl->source.confluent,
                              errstr, sizeof(errstr));
    if (!t->dec) {
        weir_log(WEIR_LOG_ERR, LOG, "decoder: %s", errstr);
        kr->fatal = true;
    }
    weir_record_init(&t->rec, kr->pl->source.rt);
    t->task = weir_task_new(kr->pl, kafka_sink, kafka_reject, kr);
    t->id_prefix = weir_calloc((size_t)kr->pl->nsinks + 1, sizeof(char *));
    t->id_prefix_len = weir_calloc((size_t)kr->pl->nsinks + 1, sizeof(size_t));
    for (int i = 0; i < kr->pl->nsinks; i++) {
        char buf[400];
        int n = snprintf(buf, sizeof(buf), "%s/%s/%s/%d/", kr->pl->name, kr->pl->sinks[i].label, topic, (int)partition);
        t->id_prefix_len[i] = n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
        t->id_prefix[i] = weir_strndup(buf, t->id_prefix_len[i]);
    }
    t->next = kr->tasks;
    kr->tasks = t;
    return t;
}

static void ktask_destroy(ktask_t *t) {
    for (int i = 0; t->id_prefix && t->id_prefix[i]; i++)
        free(t->id_prefix[i]);
    free(t->id_prefix);
    free(t->id_prefix_len);
    weir_task_destroy(t->task);
    weir_decoder_destroy(t->dec);
    weir_record_free(&t->rec);
    free(t->topic);
    free(t);
}

/* Write task t's checkpoint (state + next offset). Between records only. */
static int checkpoint_one(krun_t *kr, ktask_t *t) {
    char errstr[WEIR_ERRSTR_SIZE];
    weir_buf_reset(&kr->snap);
    if (weir_task_snapshot(t->task, &kr->snap)) {
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: an operator failed to snapshot", t->topic, (int)t->partition);
        return WEIR_ERR;
    }
    int64_t n = 0, t0 = weir_now_ns();
    int rc = weir_ckpt_write(kr->ckpt, t->topic, t->partition, t->next_offset, kr->fingerprint, kr->snap.p,
                             kr->snap.len, &n, errstr, sizeof(errstr));
    if (rc == WEIR_OK) {
        t->ckpt_offset = t->next_offset;
        kr->checkpoints++;
        atomic_store_explicit(&kr->metrics.checkpoints, kr->checkpoints, memory_order_relaxed);
        atomic_store_explicit(&kr->metrics.checkpoint_last_bytes, kr->snap.len, memory_order_relaxed);
        atomic_store_explicit(&kr->metrics.checkpoint_last_us, (uint64_t)((weir_now_ns() - t0) / 1000),
                              memory_order_relaxed);
        weir_log(WEIR_LOG_INFO, "checkpoint", "checkpoint %s[%d] #%lld offset=%lld bytes=%zu ms=%.1f", t->topic,
                 (int)t->partition, (long long)n, (long long)t->next_offset, kr->snap.len,
                 (double)(weir_now_ns() - t0) / 1e6);
        return WEIR_OK;
    }
    kr->ckpt_failures++;
    atomic_fetch_add_explicit(&kr->metrics.checkpoint_failures, 1, memory_order_relaxed);
    if (rc == WEIR_RETRY) {
        if (!kr->paused)
            weir_log(WEIR_LOG_WARN, "checkpoint", "Redis unavailable (%s): consumption paused, retry in %d ms", errstr,
                     kr->backoff_ms ? kr->backoff_ms : 500);
        return WEIR_RETRY;
    }
    weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: %s", t->topic, (int)t->partition, errstr);
    return WEIR_ERR;
}

/* Exactly-once: the outputs of the interval and the input offsets commit in
 * one transaction, after the Redis checkpoints are written. A crash before the
 * commit aborts the outputs and leaves Kafka's committed offset at the previous
 * checkpoint's, which restore_task() then picks. */
static int commit_transaction(krun_t *kr, rd_kafka_topic_partition_list_t *offs) {
    rd_kafka_error_t *e = NULL;
    if (offs->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(kr->consumer);
        e = rd_kafka_send_offsets_to_transaction(kr->producer, offs, md, 30000);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!e)
        e = rd_kafka_commit_transaction(kr->producer, 30000);
    if (e) {
        weir_log(WEIR_LOG_ERR, LOG, "transaction commit failed: %s%s", rd_kafka_error_string(e),
                 rd_kafka_error_txn_requires_abort(e) ? " (aborting; a restart recovers from the last checkpoint)"
                                                      : "");
        if (rd_kafka_error_txn_requires_abort(e)) {
            rd_kafka_error_t *a = rd_kafka_abort_transaction(kr->producer, 30000);
            if (a)
                rd_kafka_error_destroy(a);
        }
        rd_kafka_error_destroy(e);
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
    for (int i = 0; i < offs->cnt; i++) {
        ktask_t *t = ktask_find(kr, offs->elems[i].topic, offs->elems[i].partition);
        if (t)
            t->committed = offs->elems[i].offset;
    }
    e = rd_kafka_begin_transaction(kr->producer);
    if (e) {
        weir_log(WEIR_LOG_ERR, LOG, "begin transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        kr->fatal = true;
        return WEIR_ERR;
    }
    return WEIR_OK;
}

/* Flush the producer, checkpoint (with Redis) and commit the next offsets of
 * the selected tasks (all, or those in `only`). An offset is committed only
 * when the outputs before it are acknowledged and its state is in Redis. */
static int commit_tasks(krun_t *kr, const rd_kafka_topic_partition_list_t *only) {
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
    bool flushed = false;
    int rc = WEIR_OK;
    for (ktask_t *t = kr->tasks; t && rc == WEIR_OK; t = t->next) {
        if (t->next_offset < 0 || (t->next_offset == t->committed && (!kr->ckpt || t->next_offset == t->ckpt_offset)))
            continue;
        if (only && !kr->eos && !rd_kafka_topic_partition_list_find(only, t->topic, t->partition))
            continue;
        if (!flushed) {
            /* Outputs first: what came before an offset must be safe before the offset is. */
            sink_drain(kr);
            rd_kafka_resp_err_t err;
            while ((err = rd_kafka_flush(kr->producer, 10000)) == RD_KAFKA_RESP_ERR__TIMED_OUT && !kr->fatal)
                weir_log(WEIR_LOG_WARN, LOG, "waiting for %d outputs to be acknowledged",
                         rd_kafka_outq_len(kr->producer));
            flushed = true;
            if (kr->fatal) {
                rc = WEIR_ERR;
                break;
            }
        }
        if (kr->ckpt && t->next_offset != t->ckpt_offset) {
            rc = checkpoint_one(kr, t);
            if (rc == WEIR_ERR)
                kr->fatal = true;
            if (rc != WEIR_OK)
                break;
        }
        if (t->next_offset != t->committed)
            rd_kafka_topic_partition_list_add(offs, t->topic, t->partition)->offset = t->next_offset;
    }
    if (kr->eos && rc == WEIR_OK) {
        rc = commit_transaction(kr, offs);
    } else if (offs->cnt > 0 && !kr->eos) {
        rd_kafka_resp_err_t err = rd_kafka_commit(kr->consumer, offs, 0);
        if (err) {
            weir_log(WEIR_LOG_WARN, LOG, "offset commit failed: %s (will retry)", rd_kafka_err2str(err));
            if (rc == WEIR_OK)
                rc = WEIR_RETRY;
        } else {
            for (int i = 0; i < offs->cnt; i++) {
                ktask_t *t = ktask_find(kr, offs->elems[i].topic, offs->elems[i].partition);
                if (t)
                    t->committed = offs->elems[i].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(offs);
    return rc;
}

/* Redis outage handling: pause every assigned partition until a checkpoint succeeds. */
static void set_paused(krun_t *kr, bool pause) {
    if (kr->paused == pause)
        return;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(kr->consumer, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
        if (pause)
            rd_kafka_pause_partitions(kr->consumer, a);
        else
            rd_kafka_resume_partitions(kr->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    kr->paused = pause;
    atomic_store_explicit(&kr->metrics.paused, pause ? 1 : 0, memory_order_relaxed);
    if (!pause) {
        weir_log(WEIR_LOG_INFO, "checkpoint", "Redis is back, consumption resumed");
        kr->backoff_ms = 0;
    }
}

/* A checkpoint round; on a Redis outage, pause and schedule a retry with back-off. */
static void checkpoint_round(krun_t *kr) {
    int rc = commit_tasks(kr, NULL);
    if (rc == WEIR_RETRY && kr->ckpt && kr->ckpt_failures) {
        kr->backoff_ms = kr->backoff_ms ? (kr->backoff_ms * 2 > 8000 ? 8000 : kr->backoff_ms * 2) : 500;
        kr->retry_at_ns = weir_now_ns() + (int64_t)kr->backoff_ms * 1000000;
        set_paused(kr, true);
        kr->ckpt_failures = 0;
    } else if (rc == WEIR_OK) {
        set_paused(kr, false);
    }
}

/* Restore a newly assigned task from Redis. Returns the offset to seek to, or -1 (committed offset). */
static int64_t restore_task(krun_t *kr, ktask_t *t, int64_t committed) {
    char errstr[WEIR_ERRSTR_SIZE];
    weir_buf_t state = {0};
    int64_t n = 0, off = -1;
    char *fp = NULL;
    int rc;
    int backoff = 500;
    for (;;) {
        rc = weir_ckpt_read(kr->ckpt, t->topic, t->partition, 0, &n, &off, &fp, &state, errstr, sizeof(errstr));
        if (rc != WEIR_RETRY || weir_stop)
            break;
        weir_log(WEIR_LOG_WARN, "checkpoint", "Redis unavailable (%s): cannot restore %s[%d] yet, retry in %d ms",
                 errstr, t->topic, (int)t->partition, backoff);
        usleep((useconds_t)backoff * 1000);
        backoff = backoff * 2 > 8000 ? 8000 : backoff * 2;
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
            if (kr->o->reset_state && !strcmp(kr->o->reset_state, "all")) {
                weir_buf_free(&state);
                free(fp);
                return -1;
            }
            kr->fatal = true;
            weir_buf_free(&state);
            free(fp);
            return -1;
        }
    }
    if (rc == WEIR_CKPT_NONE) {
        weir_log(WEIR_LOG_INFO, "checkpoint", "no checkpoint for %s[%d]: starting at the committed offset", t->topic,
                 (int)t->partition);
        weir_buf_free(&state);
        free(fp);
        return -1;
    }
    if (rc != WEIR_OK) { /* stopped while waiting for Redis */
        weir_buf_free(&state);
        free(fp);
        return -1;
    }
    if (weir_task_restore_compat(t->task, state.p, state.len, fp, kr->fingerprint, kr->o->reset_state, errstr,
                                 sizeof(errstr))) {
        weir_log(WEIR_LOG_ERR, "checkpoint", "%s[%d]: cannot restore checkpoint #%lld: %s", t->topic, (int)t->partition,
                 (long long)n, errstr);
        kr->fatal = true;
        weir_buf_free(&state);
        free(fp);
        return -1;
    }
    weir_log(WEIR_LOG_INFO, "checkpoint", "restored %s[%d] from checkpoint #%lld offset=%lld", t->topic,
             (int)t->partition, (long long)n, (long long)off);
    t->ckpt_offset = off;
    weir_buf_free(&state);
    free(fp);
    return off;
}

static void log_partitions(krun_t *kr, const char *what, const rd_kafka_topic_partition_list_t *parts) {
    char line[1024];
    size_t n = 0;
    line[0] = '\0';
    for (int i = 0; i < parts->cnt && n < sizeof(line) - 64; i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s[%" PRId32 "]", i ? "," : "", parts->elems[i].topic,
                              parts->elems[i].partition);
    weir_log(WEIR_LOG_INFO, LOG, "%s %s partitions: %s", kr->instance, what, parts->cnt ? line : "(none)");
}

static void on_assign(krun_t *kr, rd_kafka_topic_partition_list_t *parts) {
    /* Start positions: the committed offsets (the consumer resumes there itself;
     * we read them to know where a bounded run already is). */
    rd_kafka_committed(kr->consumer, parts, 10000);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        ktask_t *t = ktask_find(kr, p->topic, p->partition);
        if (!t)
            t = ktask_new(kr, p->topic, p->partition);
        if (p->offset >= 0) {
            t->next_offset = p->offset;
            t->committed = p->offset;
        }
        int64_t seek = kr->ckpt && !kr->fatal ? restore_task(kr, t, p->offset) : -1;
        if (seek >= 0)
            t->next_offset = seek;
        if (t->end_offset >= 0 && t->next_offset >= t->end_offset)
            t->done = true;
        if (t->end_offset == 0)
            t->done = true;
        /* Start at the checkpoint's offset, else at the committed offset. */
        p->offset = seek >= 0 ? seek : RD_KAFKA_OFFSET_INVALID;
    }
    log_partitions(kr, "assigned", parts);
}

static void on_revoke(krun_t *kr, rd_kafka_topic_partition_list_t *parts) {
    bool lost = rd_kafka_assignment_lost(kr->consumer);
    log_partitions(kr, lost ? "lost" : "revoked", parts);
    /* Lost partitions (session expired) already belong to someone else: no commit. */
    if (!lost)
        commit_tasks(kr, parts);
    for (int i = 0; i < parts->cnt; i++) {
        ktask_t **pp = &kr->tasks;
        while (*pp) {
            if ((*pp)->partition == parts->elems[i].partition && !strcmp((*pp)->topic, parts->elems[i].topic)) {
                ktask_t *dead = *pp;
                *pp = dead->next;
                if (kr->current == dead)
                    kr->current = NULL;
                if (kr->hint == dead)
                    kr->hint = NULL;
                ktask_destroy(dead);
                break;
            }
            pp = &(*pp)->next;
        }
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    krun_t *kr = opaque;
    bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kr->ever_assigned = true;
        on_assign(kr, parts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                weir_log(WEIR_LOG_ERR, LOG, "incremental assign: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, parts);
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(kr, parts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e) {
                weir_log(WEIR_LOG_ERR, LOG, "incremental unassign: %s", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, NULL);
        }
    } else {
        weir_log(WEIR_LOG_ERR, LOG, "rebalance error: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    krun_t *kr = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        kr->fatal = true;
        weir_log(WEIR_LOG_ERR, LOG, "fatal Kafka error: %s", reason);
        return;
    }
    weir_log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? WEIR_LOG_ERR : WEIR_LOG_WARN, LOG, "%s: %s",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    krun_t *kr = opaque;
    if (m->err) {
        kr->produce_errors++;
        kr->fatal = true; /* idempotent producer: a failed delivery is not retried silently */
        weir_log(WEIR_LOG_ERR, LOG, "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
}

/* librdkafka's own log lines, in weir's format (level: syslog numbers). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    weir_log(level <= 3   ? WEIR_LOG_ERR
             : level == 4 ? WEIR_LOG_WARN
             : level <= 6 ? WEIR_LOG_INFO
                          : WEIR_LOG_DEBUG,
             "librdkafka", "%s: %s", fac, buf);
}

static int set_prop(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr, size_t errstr_size) {
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK)
        return weir_err(errstr, errstr_size, "librdkafka property %s=%s: %s", k, v, e);
    return WEIR_OK;
}

static int apply_props(rd_kafka_conf_t *conf, const weir_cfg_t *props, char *errstr, size_t errstr_size) {
    for (size_t i = 0; props && i < props->n; i++) {
        char msg[600];
        if (set_prop(conf, props->keys[i], props->items[i]->scalar, msg, sizeof(msg)))
            return weir_cfg_error(props->items[i], errstr, errstr_size, "%s", msg);
    }
    return WEIR_OK;
}

static const char *brokers_of(const weir_run_opts_t *o) {
    if (o->brokers)
        return o->brokers;
    const char *env = getenv("WEIR_BROKERS");
    return env && *env ? env : NULL;
}

static rd_kafka_t *make_consumer(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *b = brokers_of(kr->o);
    char client_id[300];
    snprintf(client_id, sizeof(client_id), "weir-%s", pl->name);
    if ((b && set_prop(conf, "bootstrap.servers", b, errstr, errstr_size)) ||
        set_prop(conf, "group.id", kr->o->group_id ? kr->o->group_id : pl->source.group_id, errstr, errstr_size) ||
        set_prop(conf, "client.id", client_id, errstr, errstr_size) ||
        set_prop(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size) ||
        set_prop(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        set_prop(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        set_prop(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
        set_prop(conf, "enable.partition.eof", "false", errstr, errstr_size) ||
        /* With the high-level consumer every partition's fetch queue forwards
         * to the one consumer queue, so queued.min.messages (default 100000)
         * is compared with the total over all partitions. Once it is reached
         * the broker thread stops fetching and looks again only 1 s later
         * (fixed in librdkafka < 2.2, fetch.queue.backoff.ms from 2.2), even
         * when we drained the queue long before: ~0.9 s idle per 100k
         * records. queued.max.messages.kbytes (64 MB) still bounds memory. */
        set_prop(conf, "queued.min.messages", "1000000", errstr, errstr_size) ||
        apply_props(conf, pl->source.properties, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; i < kr->o->nprops; i++) {
        char key[256];
        const char *eq = strchr(kr->o->props[i], '=');
        snprintf(key, sizeof(key), "%.*s", (int)(eq - kr->o->props[i]), kr->o->props[i]);
        if (set_prop(conf, key, eq + 1, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(conf, kr);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        weir_err(errstr, errstr_size, "consumer: %s", e);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static rd_kafka_t *make_producer(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *b = brokers_of(kr->o);
    if ((b && set_prop(conf, "bootstrap.servers", b, errstr, errstr_size)) ||
        set_prop(conf, "enable.idempotence", "true", errstr, errstr_size) ||
        set_prop(conf, "linger.ms", "5", errstr, errstr_size) ||
        set_prop(conf, "delivery.report.only.error", "true", errstr, errstr_size) ||
        set_prop(conf, "queue.buffering.max.messages", "1000000", errstr, errstr_size) ||
        apply_props(conf, pl->source.properties, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* Consumer-only properties of the source would be refused by a producer:
     * apply_props above only passes what the user gave for the source, which
     * normally is the connection and security settings shared by both. */
    if (pl->delivery == WEIR_EXACTLY_ONCE) {
        char tid[512];
        snprintf(tid, sizeof(tid), "weir-%s-%s", pl->name, kr->instance);
        if (set_prop(conf, "transactional.id", tid, errstr, errstr_size) ||
            set_prop(conf, "transaction.timeout.ms", "60000", errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    for (int i = 0; i < pl->nsinks; i++)
        if (apply_props(conf, pl->sinks[i].properties, errstr, errstr_size)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_opaque(conf, kr);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char e[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        weir_err(errstr, errstr_size, "producer: %s", e);
        return NULL;
    }
    return rk;
}

/* Metadata check at start-up: the broker is reachable and the source topics exist.
 * For --until-end also record every partition's end offset now. */
static int probe_topics(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(kr->consumer, 1, NULL, &md, 10000);
    if (err)
        return weir_err(errstr, errstr_size, "cannot reach the Kafka cluster at %s: %s",
                        brokers_of(kr->o) ? brokers_of(kr->o) : "(bootstrap.servers unset)", rd_kafka_err2str(err));
    int rc = WEIR_OK;
    for (int i = 0; i < pl->source.ntopics && rc == WEIR_OK; i++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, pl->source.topics[i]))
                mt = &md->topics[j];
        if (!mt || mt->err) {
            rc = weir_err(errstr, errstr_size, "source topic '%s' does not exist on %s", pl->source.topics[i],
                          brokers_of(kr->o) ? brokers_of(kr->o) : "the cluster");
            break;
        }
        if (!kr->o->until_end)
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            int64_t lo, hi;
            err = rd_kafka_query_watermark_offsets(kr->consumer, mt->topic, mt->partitions[p].id, &lo, &hi, 10000);
            if (err) {
                rc = weir_err(errstr, errstr_size, "end offset of %s [%d]: %s", mt->topic, mt->partitions[p].id,
                              rd_kafka_err2str(err));
                break;
            }
            kr->ends = weir_realloc(kr->ends, (size_t)(kr->nends + 1) * sizeof(*kr->ends));
            kr->ends[kr->nends++] = (end_mark_t){weir_strdup(mt->topic), mt->partitions[p].id, hi};
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* --until-end: has the whole group reached the end marks? (committed offsets of every partition) */
static bool group_done(krun_t *kr) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(kr->nends);
    for (int i = 0; i < kr->nends; i++)
        rd_kafka_topic_partition_list_add(l, kr->ends[i].topic, kr->ends[i].partition);
    bool done = rd_kafka_committed(kr->consumer, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; done && i < l->cnt; i++) {
        int64_t end = kr->ends[i].end;
        if (end > 0 && l->elems[i].offset < end)
            done = false;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return done;
}

static bool local_done(krun_t *kr) {
    for (ktask_t *t = kr->tasks; t; t = t->next)
        if (!t->done)
            return false;
    return true;
}

/* The task of m's partition (the last one found is tried first: fetched
 * messages come in runs of one partition). */
static ktask_t *task_of(krun_t *kr, const char *topic, int32_t partition) {
    if (kr->hint && kr->hint->partition == partition && !strcmp(kr->hint->topic, topic))
        return kr->hint;
    ktask_t *t = ktask_find(kr, topic, partition);
    if (t)
        kr->hint = t;
    return t;
}

static void handle_message(krun_t *kr, rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    ktask_t *t = kr->current = task_of(kr, topic, m->partition);
    if (!t) {
        weir_log(WEIR_LOG_WARN, LOG, "message for unassigned %s [%" PRId32 "] ignored", topic, m->partition);
        return;
    }
    if (t->done)
        return; /* a bounded run ignores what was appended after it started */
    if (t->next_offset >= 0 && m->offset < t->next_offset)
        return; /* already in this task's state (a message fetched before a seek) */
    if (t->next_offset >= 0 && m->offset > t->next_offset)
        weir_log(WEIR_LOG_DEBUG, LOG, "%s [%" PRId32 "]: offsets %" PRId64 "..%" PRId64 " skipped by the broker", topic,
                 m->partition, t->next_offset, m->offset - 1);
    if (!kr->first_ns)
        kr->first_ns = weir_now_ns();
    char reason[WEIR_ERRSTR_SIZE];
    weir_record_t *rec = &t->rec;
    rec->topic = t->topic;
    rec->partition = m->partition;
    rec->offset = m->offset;
    rec->key = m->key;
    rec->key_len = m->key_len;
    rd_kafka_timestamp_type_t tstype;
    int64_t kts = rd_kafka_message_timestamp(m, &tstype);
    if (weir_decode(t->dec, m->payload, m->len, rec, reason, sizeof(reason)) ||
        weir_source_stamp(&kr->pl->source, rec, kts >= 0 ? kts : WEIR_TS_NONE, reason, sizeof(reason))) {
        dead_letter(kr, topic, m->partition, m->offset, NULL, reason, m->key, m->key_len, m->payload, m->len);
    } else {
        kr->in++;
        weir_task_process(t->task, rec);
    }
    t->next_offset = m->offset + 1;
    if (t->end_offset >= 0 && t->next_offset >= t->end_offset)
        t->done = true;
    atomic_store_explicit(&kr->metrics.records_in, kr->in + kr->dead, memory_order_relaxed);
}

int weir_run_kafka(const weir_pipeline_t *pl, const weir_run_opts_t *o) {
    krun_t kr = {.pl = pl, .o = o};
    weir_metrics_server_t *msrv = NULL;
    char errstr[WEIR_ERRSTR_SIZE];
    char inst[128];
    int rc = 1;
    if (o->instance) {
        kr.instance = o->instance;
    } else {
        char host[64] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(inst, sizeof(inst), "%s:%d", host, (int)getpid());
        kr.instance = inst;
    }
    if (pl->source.ntopics == 0) {
        weir_log(WEIR_LOG_ERR, LOG, "%s: the source has no kafka topics; use --input FILE for file mode", pl->path);
        return 2;
    }
    if (!(kr.consumer = make_consumer(&kr, errstr, sizeof(errstr))) ||
        !(kr.producer = make_producer(&kr, errstr, sizeof(errstr)))) {
        weir_log(WEIR_LOG_ERR, LOG, "%s", errstr);
        goto done;
    }
    if (probe_topics(&kr, errstr, sizeof(errstr))) {
        weir_log(WEIR_LOG_ERR, LOG, "%s", errstr);
        goto done;
    }
    if (o->metrics_port >= 0) {
        int port = 0;
        if (!(msrv = weir_metrics_serve(&kr.metrics, pl->name, o->metrics_port, &port, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "metrics", "%s", errstr);
            goto done;
        }
        weir_log(WEIR_LOG_INFO, "metrics", "Prometheus metrics on http://0.0.0.0:%d/metrics", port);
    }
    const char *redis = o->redis ? o->redis : pl->redis_url;
    if (redis) {
        if (!(kr.ckpt = weir_ckpt_new(redis, pl->name, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "checkpoint", "%s", errstr);
            goto done;
        }
        kr.fingerprint = weir_pipeline_fingerprint(pl);
        weir_log(WEIR_LOG_INFO, "checkpoint", "state goes to %s every %lld ms", redis,
                 (long long)(o->checkpoint_interval_ms > 0 ? o->checkpoint_interval_ms : pl->checkpoint_interval_ms));
    } else if (pl->delivery == WEIR_EXACTLY_ONCE) {
        weir_log(WEIR_LOG_ERR, LOG, "%s: delivery: exactly_once needs checkpoints (checkpoint.redis or --redis)",
                 pl->path);
        goto done;
    }
    if (pl->delivery == WEIR_EXACTLY_ONCE) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(kr.producer, 30000);
        if (!e)
            e = rd_kafka_begin_transaction(kr.producer);
        if (e) {
            weir_log(WEIR_LOG_ERR, LOG, "transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            goto done;
        }
        kr.eos = true;
        weir_log(WEIR_LOG_INFO, LOG,
                 "exactly-once delivery: outputs and offsets commit in one transaction per checkpoint");
    }
    kr.id_slot = weir_calloc((size_t)pl->nsinks + 1, sizeof(int));
    for (int i = 0; i < pl->nsinks; i++) {
        int slot = weir_rowtype_find(pl->sinks[i].rt, "id");
        kr.id_slot[i] = slot >= 0 && pl->sinks[i].rt->fields[slot].type == WEIR_STRING ? slot : -1;
    }
    kr.enc = weir_calloc((size_t)pl->nsinks + 1, sizeof(*kr.enc));
    kr.sink_topics = weir_calloc((size_t)pl->nsinks + 1, sizeof(*kr.sink_topics));
    for (int i = 0; i < pl->nsinks; i++) {
        const weir_sink_spec_t *sk = &pl->sinks[i];
        kr.sink_topics[i] = rd_kafka_topic_new(kr.producer, sk->topic, NULL);
        if (!(kr.enc[i] = weir_encoder_new(sk->format, sk->schema, sk->rt, sk->confluent, 0, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, LOG, "sink %s: %s", sk->label, errstr);
            goto done;
        }
    }
    kr.dlq_topic = rd_kafka_topic_new(kr.producer, pl->dead_letter_topic, NULL);
    if (!o->inline_produce) {
        kr.outq = weir_spsc_new(8u << 20);
        if (pthread_create(&kr.sink_thread, NULL, sink_main, &kr) != 0) {
            weir_log(WEIR_LOG_ERR, LOG, "cannot start the producer hand-off thread");
            goto done;
        }
        kr.sink_started = true;
    }

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(pl->source.ntopics);
    for (int i = 0; i < pl->source.ntopics; i++)
        rd_kafka_topic_partition_list_add(sub, pl->source.topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(kr.consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        weir_log(WEIR_LOG_ERR, LOG, "subscribe: %s", rd_kafka_err2str(err));
        goto done;
    }
    kr.subscribed = true;
    weir_log(WEIR_LOG_INFO, LOG, "%s joined group %s for %s%s", kr.instance,
             o->group_id ? o->group_id : pl->source.group_id, pl->source.topics[0],
             pl->source.ntopics > 1 ? " and more" : "");

    int64_t start_ns = weir_now_ns();
    int64_t every_ms = o->commit_interval_ms > 0 ? o->commit_interval_ms : 5000;
    if (kr.ckpt)
        every_ms = o->checkpoint_interval_ms > 0 ? o->checkpoint_interval_ms : pl->checkpoint_interval_ms;
    int64_t commit_every_ns = every_ms * 1000000;
    int64_t next_commit = start_ns + commit_every_ns;
    int64_t next_done_check = 0;
    int64_t next_idle = 0;
    bool ended_here = false;
    unsigned polls = 0;
    while (!weir_stop && !(o->stop && *o->stop) && !kr.fatal) {
        /* One message per poll, not batches: a rebalance is served inside the
         * poll call, and a batch could hold messages fetched before a partition
         * was revoked and assigned again, which the restored task must not see
         * (they would jump its watermark ahead of the records it replays).
         * (Measured: batches of 256 saved ~10 % of the CPU time and no
         * wall-clock time in bench/kafka/filter_map.sh.) A non-blocking poll
         * first: a blocking one reads the clock for its deadline. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kr.consumer, 0);
        if (!m)
            m = rd_kafka_consumer_poll(kr.consumer, 100);
        if (m) {
            if (m->err)
                weir_log(WEIR_LOG_WARN, LOG, "consumer: %s", rd_kafka_message_errstr(m));
            else
                handle_message(&kr, m);
            rd_kafka_message_destroy(m);
        }
        /* Delivery reports: served every 256 loop turns (each call takes the producer's locks). */
        if ((++polls & 255) == 0 || !m)
            rd_kafka_poll(kr.producer, 0);
        /* The timers below have 100 ms granularity: read the clock every 64 messages. */
        if (m && (polls & 63))
            continue;
        int64_t now = weir_now_ns();
        if (o->duration_ms > 0 && now - start_ns >= o->duration_ms * 1000000)
            break;
        if (kr.paused ? now >= kr.retry_at_ns : now >= next_commit) {
            checkpoint_round(&kr);
            next_commit = now + commit_every_ns;
        }
        if (now >= next_idle) {
            int64_t wall = weir_now_ms();
            for (ktask_t *t = kr.tasks; t; t = t->next) {
                kr.current = t;
                weir_task_idle_tick(t->task, wall);
            }
            kr.current = NULL;
            next_idle = now + 200000000;
            uint64_t nparts = 0;
            int64_t min_wm = INT64_MAX;
            for (ktask_t *t = kr.tasks; t; t = t->next) {
                nparts++;
                if (t->task->watermark != WEIR_TS_NONE && t->task->watermark < min_wm)
                    min_wm = t->task->watermark;
            }
            atomic_store_explicit(&kr.metrics.partitions, nparts, memory_order_relaxed);
            if (min_wm != INT64_MAX && min_wm != WEIR_WM_END)
                atomic_store_explicit(&kr.metrics.watermark_delay_ms, wall - min_wm, memory_order_relaxed);
        }
        if (o->until_end && now >= next_done_check && kr.ever_assigned && local_done(&kr)) {
            /* Everything assigned here is read: end-of-input for these tasks.
             * The run's clock stops when their outputs are acknowledged. */
            for (ktask_t *t = kr.tasks; t; t = t->next) {
                kr.current = t;
                weir_task_advance(t->task, WEIR_WM_END);
            }
            kr.current = NULL;
            commit_tasks(&kr, NULL);
            if (kr.first_ns && !ended_here) {
                kr.last_ns = weir_now_ns();
                ended_here = true;
            }
            if (group_done(&kr))
                break;
            next_done_check = weir_now_ns() + 500000000;
        }
    }
    if (!kr.fatal) {
        if (o->until_end) {
            for (ktask_t *t = kr.tasks; t; t = t->next) {
                kr.current = t;
                weir_task_advance(t->task, WEIR_WM_END);
            }
            kr.current = NULL;
        }
        /* The final checkpoint (SIGTERM, --duration, end of a bounded run). */
        int frc = commit_tasks(&kr, NULL);
        if (frc != WEIR_OK && kr.ckpt)
            weir_log(WEIR_LOG_WARN, "checkpoint",
                     "final checkpoint not written: a restart resumes from the previous one");
        if (!ended_here)
            kr.last_ns = weir_now_ns();
    }
    rc = kr.fatal ? 1 : 0;
done:
    if (kr.consumer) {
        rd_kafka_consumer_close(kr.consumer); /* leaves the group; revokes (and commits) what is left */
        /* librdkafka < 2.3 asserts in rd_kafka_destroy() when a cooperative-sticky
         * member that never received an assignment is destroyed (librdkafka
         * issue #4312, fixed by PR #4381). Such a member holds no state; the
         * handle is left to process exit instead. */
        if (kr.ever_assigned || !kr.subscribed || rd_kafka_version() >= 0x020300ff)
            rd_kafka_destroy(kr.consumer);
    }
    while (kr.tasks) {
        ktask_t *t = kr.tasks;
        kr.tasks = t->next;
        ktask_destroy(t);
    }
    if (kr.sink_started) {
        sink_drain(&kr);
        atomic_store(&kr.sink_quit, true);
        weir_spsc_wake(kr.outq);
        pthread_join(kr.sink_thread, NULL);
    }
    weir_spsc_destroy(kr.outq);
    if (kr.producer) {
        rd_kafka_flush(kr.producer, 10000);
        for (int i = 0; kr.sink_topics && i < pl->nsinks; i++)
            if (kr.sink_topics[i])
                rd_kafka_topic_destroy(kr.sink_topics[i]);
        if (kr.dlq_topic)
            rd_kafka_topic_destroy(kr.dlq_topic);
        rd_kafka_destroy(kr.producer);
    }
    for (int i = 0; kr.enc && i < pl->nsinks; i++)
        weir_encoder_destroy(kr.enc[i]);
    free(kr.enc);
    free(kr.sink_topics);
    free(kr.id_slot);
    weir_metrics_stop(msrv);
    weir_ckpt_destroy(kr.ckpt);
    free(kr.fingerprint);
    weir_buf_free(&kr.snap);
    for (int i = 0; i < kr.nends; i++)
        free(kr.ends[i].topic);
    free(kr.ends);
    weir_buf_free(&kr.buf);
    if (rc == 0 && !o->quiet) {
        double el = kr.first_ns ? (double)(kr.last_ns - kr.first_ns) / 1e9 : 0.0;
        weir_print_summary(kr.in + kr.dead, kr.out, kr.dead, el);
    }
    return rc;
}
