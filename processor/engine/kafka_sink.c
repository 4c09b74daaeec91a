/* Outputs of the Kafka runtime: encoding, deterministic ids, the producer
 * hand-off thread, and dead letters. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"

/* Produce with back-pressure: on a full queue, serve delivery reports and retry. Returns librdkafka's error;
 * librdkafka takes hdrs only on success: on failure they are still the caller's. */
static rd_kafka_resp_err_t produce_try(krun_t *kr, rd_kafka_topic_t *rkt, int32_t partition, const void *key,
                                       size_t key_len, const void *val, size_t len, rd_kafka_headers_t *hdrs,
                                       int64_t ts) {
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(kr->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                                                    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)val, len),
                                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                                                    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (!err)
            return err;
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !kr->fatal) {
            rd_kafka_poll(kr->producer, 10);
            continue;
        }
        /* (after a fatal error the run is stopping: a full queue is not waited on) */
        return err;
    }
}

/* A produce error other than a too-large message stops the run. */
static void produce_failed(krun_t *kr, rd_kafka_topic_t *rkt, rd_kafka_resp_err_t err) {
    kr->produce_errors++;
    if (!kr->fatal)
        weir_log(WEIR_LOG_ERR, LOG, "produce to %s failed: %s", rd_kafka_topic_name(rkt), rd_kafka_err2str(err));
    kr->fatal = true;
}

/* Room left for headers and the record framing when a dead letter is cut to fit message.max.bytes (at most
 * half of it). */
#define DLQ_TRUNCATE_MARGIN 4096

/* A message to the dead-letter topic with headers h (taken). Larger than the producer allows, it is cut to
 * fit, with weir.truncated: true and weir.original.size: its size, so nothing stops the pipeline; a key too
 * large goes the same way. Any thread (librdkafka's produce is thread-safe). */
static void produce_dead_letter(krun_t *kr, const void *key, size_t key_len, const void *val, size_t len,
                                rd_kafka_headers_t *h) {
    rd_kafka_resp_err_t err = produce_try(kr, kr->dlq_topic, RD_KAFKA_PARTITION_UA, key, key_len, val, len, h, 0);
    if (err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        if (err) {
            rd_kafka_headers_destroy(h);
            produce_failed(kr, kr->dlq_topic, err);
        }
        return;
    }
    /* refused, so h is still ours: cut the message to fit */
    size_t margin = kr->max_message / 2 < DLQ_TRUNCATE_MARGIN ? kr->max_message / 2 : DLQ_TRUNCATE_MARGIN;
    size_t room = kr->max_message - margin;
    char num[32];
    snprintf(num, sizeof(num), "%zu", len);
    rd_kafka_header_add(h, "weir.truncated", -1, "true", -1);
    rd_kafka_header_add(h, "weir.original.size", -1, num, -1);
    if (key_len > room / 2) {
        snprintf(num, sizeof(num), "%zu", key_len);
        rd_kafka_header_add(h, "weir.original.key.size", -1, num, -1);
        key_len = room / 2;
    }
    room -= key_len;
    weir_log(WEIR_LOG_WARN, LOG, "dead letter of %zu bytes is larger than message.max.bytes (%zu): truncated to %zu",
             len, kr->max_message, len < room ? len : room);
    err = produce_try(kr, kr->dlq_topic, RD_KAFKA_PARTITION_UA, key, key_len, val, len < room ? len : room, h, 0);
    if (err) {
        rd_kafka_headers_destroy(h);
        produce_failed(kr, kr->dlq_topic, err);
    }
}

/* Produce; a message too large for the producer is not an error that stops the run: an output goes to the
 * dead-letter topic with the reason (and its id), see produce_dead_letter. Nothing is copied on the way:
 * librdkafka leaves the headers to us when it refuses a message. */
static void produce(krun_t *kr, rd_kafka_topic_t *rkt, int32_t partition, const void *key, size_t key_len,
                    const void *val, size_t len, rd_kafka_headers_t *hdrs, int64_t ts) {
    rd_kafka_resp_err_t err = produce_try(kr, rkt, partition, key, key_len, val, len, hdrs, ts);
    if (err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        if (err) {
            if (hdrs)
                rd_kafka_headers_destroy(hdrs);
            produce_failed(kr, rkt, err);
        }
        return;
    }
    rd_kafka_headers_t *h = hdrs ? hdrs : rd_kafka_headers_new(4);
    uint64_t n = atomic_fetch_add(&kr->dead_outputs, 1) + 1;
    char reason[256];
    snprintf(reason, sizeof(reason),
             "output to %s: %zu bytes (key %zu) is larger than the producer's "
             "message.max.bytes (%zu)",
             rd_kafka_topic_name(rkt), len, key_len, kr->max_message);
    if (n <= 10 || weir_log_level >= WEIR_LOG_DEBUG)
        weir_log(WEIR_LOG_WARN, LOG, "dead-letter: %s", reason);
    rd_kafka_header_add(h, "weir.error.reason", -1, reason, -1);
    rd_kafka_header_add(h, "weir.error.topic", -1, rd_kafka_topic_name(rkt), -1);
    rd_kafka_header_add(h, "weir.pipeline", -1, kr->pl->name, -1);
    produce_dead_letter(kr, key, key_len, val, len, h);
}

/* An output to `dest` (a sink, or nsinks + stage: a repartition topic) with the headers of its kind. */
static void produce_output(krun_t *kr, int dest, int32_t partition, out_kind_t kind, const void *key, size_t klen,
                           const void *val, size_t vlen, const void *id, size_t idlen, int64_t ts) {
    rd_kafka_headers_t *h = NULL;
    rd_kafka_topic_t *rkt;
    if (dest < kr->pl->nsinks) {
        rkt = kr->sink_topics[dest];
    } else {
        rkt = kr->repart_topics[dest - kr->pl->nsinks];
    }
    if (kind == OUT_SINK) {
        h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "weir.id", 7, id, (ssize_t)idlen);
    } else if (kind == OUT_CONTROL) {
        h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "weir.ctl", 8, "wm", 2); /* a watermark, never seen by operators */
    }
    produce(kr, rkt, partition, key, klen, val, vlen, h, ts);
}

/* An output queued for the hand-off thread: this header, then key, value and id bytes. */
typedef struct out_hdr {
    int64_t ts;
    int32_t dest, partition;
    uint8_t has_key, kind;
    uint32_t klen, vlen, idlen;
} out_hdr_t;

void kafka_queue_out(krun_t *kr, int dest, int32_t partition, out_kind_t kind, const void *key, size_t klen,
                     const void *val, size_t vlen, const void *id, size_t idlen, int64_t ts) {
    size_t need = sizeof(out_hdr_t) + klen + vlen + idlen;
    if (kr->outq && need <= weir_spsc_max_entry(kr->outq)) {
        uint8_t *e = weir_spsc_reserve(kr->outq, need);
        out_hdr_t hd = {.ts = ts,
                        .dest = dest,
                        .partition = partition,
                        .has_key = key != NULL,
                        .kind = (uint8_t)kind,
                        .klen = (uint32_t)klen,
                        .vlen = (uint32_t)vlen,
                        .idlen = (uint32_t)idlen};
        memcpy(e, &hd, sizeof(hd));
        if (klen)
            memcpy(e + sizeof(hd), key, klen);
        if (vlen)
            memcpy(e + sizeof(hd) + klen, val, vlen);
        if (idlen)
            memcpy(e + sizeof(hd) + klen + vlen, id, idlen);
        weir_spsc_push(kr->outq);
        return;
    }
    if (kr->outq) /* too large for the ring: after what is queued, in this thread */
        weir_spsc_drain(kr->outq);
    produce_output(kr, dest, partition, kind, key, klen, val, vlen, id, idlen, ts);
}

static size_t put_u64(char *o, uint64_t u) {
    char d[24];
    int k = 0;
    do {
        d[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t n = 0;
    while (k)
        o[n++] = d[--k];
    return n;
}

/* The deterministic id of an output: its `id` field, else a function of what
 * produced it: "pipeline/sink/topic/partition/offset/index", the input record
 * it came from (its origin, kept through repartitions) and its index among that
 * record's outputs to this sink. Without an origin (none known): the task's
 * partition and its number `seq` among the task's outputs to this sink
 * (checkpointed, so a replay numbers the same outputs the same way). */
static const char *output_id(const ktask_t *t, int sink, uint64_t seq, const weir_record_t *rec, size_t *len) {
    krun_t *kr = t->kr;
    int slot = kr->id_slot[sink];
    if (slot >= 0 && rec->v[slot].type == WEIR_STRING) {
        *len = rec->v[slot].u.s.n;
        return rec->v[slot].u.s.p;
    }
    char *o = kr->idbuf;
    size_t n = t->id_prefix_len[sink];
    memcpy(o, t->id_prefix[sink], n);
    const char *topic = rec->topic && rec->offset >= 0 ? rec->topic : NULL;
    size_t tl = topic ? strlen(topic) : strlen(t->topic);
    if (tl > 200)
        tl = 200;
    memcpy(o + n, topic ? topic : t->topic, tl);
    n += tl;
    o[n++] = '/';
    if (!topic) { /* no origin: the task's partition and the output's number */
        n += put_u64(o + n, (uint64_t)t->partition);
        o[n++] = '/';
        o[n++] = '#';
        n += put_u64(o + n, seq);
    } else {
        struct out_origin *og = &t->origin[sink];
        if (og->offset == rec->offset && og->partition == rec->partition && !strncmp(og->topic, topic, tl) &&
            og->topic[tl] == '\0') {
            og->index++;
        } else {
            og->offset = rec->offset;
            og->partition = rec->partition;
            og->index = 0;
            memcpy(og->topic, topic, tl);
            og->topic[tl] = '\0';
        }
        n += put_u64(o + n, (uint64_t)(rec->partition < 0 ? 0 : rec->partition));
        o[n++] = '/';
        n += put_u64(o + n, (uint64_t)rec->offset);
        o[n++] = '/';
        n += put_u64(o + n, og->index);
    }
    o[n] = '\0';
    *len = n;
    return o;
}

/* The task's sink callback (opaque: its ktask_t). */
void kafka_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    const ktask_t *t = opaque;
    krun_t *kr = t->kr;
    char reason[256];
    size_t id_len;
    const char *id = output_id(t, sink, seq, rec, &id_len);
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
    kafka_queue_out(kr, sink, RD_KAFKA_PARTITION_UA, OUT_SINK, rec->key, rec->key ? rec->key_len : 0, kr->buf.p,
                    kr->buf.len, id, id_len, ts);
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
        produce_output(kr, hd.dest, hd.partition, (out_kind_t)hd.kind, hd.has_key ? key : NULL, hd.klen, val, hd.vlen,
                       id, hd.idlen, hd.ts);
        weir_spsc_pop(kr->outq);
        if ((++n & 255) == 0)
            rd_kafka_poll(kr->producer, 0);
    }
    return NULL;
}

void kafka_sink_drain(krun_t *kr) {
    if (kr->outq)
        weir_spsc_drain(kr->outq);
}

void kafka_dead_letter(krun_t *kr, const char *topic, int32_t partition, int64_t offset, const char *node,
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
    produce_dead_letter(kr, key, key_len, val, len, h);
}

/* The task's reject callback (opaque: its ktask_t): a dead letter. */
void kafka_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    krun_t *kr = ((const ktask_t *)opaque)->kr;
    weir_buf_t b = {0};
    char why[256];
    weir_encoder_t *enc = weir_encoder_new(WEIR_FMT_JSON, NULL, rec->rt, false, 0, why, sizeof(why));
    if (enc)
        weir_encode(enc, rec, NULL, NULL, &b, why, sizeof(why));
    kafka_dead_letter(kr, rec->topic ? rec->topic : "?", rec->partition, rec->offset, node, reason, rec->key,
                      rec->key_len, b.p, b.len);
    weir_encoder_destroy(enc);
    weir_buf_free(&b);
}

int kafka_sink_open(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    kr->id_slot = weir_calloc((size_t)pl->nsinks + 1, sizeof(int));
    for (int i = 0; i < pl->nsinks; i++) {
        int slot = weir_rowtype_find(pl->sinks[i].rt, "id");
        kr->id_slot[i] = slot >= 0 && pl->sinks[i].rt->fields[slot].type == WEIR_STRING ? slot : -1;
    }
    kr->enc = weir_calloc((size_t)pl->nsinks + 1, sizeof(*kr->enc));
    kr->sink_topics = weir_calloc((size_t)pl->nsinks + 1, sizeof(*kr->sink_topics));
    for (int i = 0; i < pl->nsinks; i++) {
        const weir_sink_spec_t *sk = &pl->sinks[i];
        char e[WEIR_ERRSTR_SIZE];
        kr->sink_topics[i] = rd_kafka_topic_new(kr->producer, sk->topic, NULL);
        if (!(kr->enc[i] = weir_encoder_new(sk->format, sk->schema, sk->rt, sk->confluent, 0, e, sizeof(e))))
            return weir_err(errstr, errstr_size, "sink %s: %s", sk->label, e);
    }
    kr->dlq_topic = rd_kafka_topic_new(kr->producer, pl->dead_letter_topic, NULL);
    if (!kr->o->inline_produce) {
        kr->outq = weir_spsc_new(KAFKA_HANDOFF_RING_BYTES);
        if (pthread_create(&kr->sink_thread, NULL, sink_main, kr) != 0)
            return weir_err(errstr, errstr_size, "cannot start the producer hand-off thread");
        kr->sink_started = true;
    }
    return WEIR_OK;
}

void kafka_sink_stop(krun_t *kr) {
    if (kr->sink_started) {
        kafka_sink_drain(kr);
        atomic_store(&kr->sink_quit, true);
        weir_spsc_wake(kr->outq);
        pthread_join(kr->sink_thread, NULL);
        kr->sink_started = false;
    }
    weir_spsc_destroy(kr->outq);
    kr->outq = NULL;
}

void kafka_sink_close(krun_t *kr) {
    for (int i = 0; kr->sink_topics && i < kr->pl->nsinks; i++)
        if (kr->sink_topics[i])
            rd_kafka_topic_destroy(kr->sink_topics[i]);
    if (kr->dlq_topic)
        rd_kafka_topic_destroy(kr->dlq_topic);
    for (int i = 0; kr->enc && i < kr->pl->nsinks; i++)
        weir_encoder_destroy(kr->enc[i]);
    free(kr->enc);
    free(kr->sink_topics);
    free(kr->id_slot);
}
