/*
 * Stages in Kafka mode (docs/keyby.md): records and watermarks that cross a
 * repartition travel through the stage's internal topic.
 *
 * A repartition message's value:
 *
 *     u8 kind: 'R' a record | 'W' a watermark
 *     varint upstream   index of the sending task among the stage's upstream
 *                       tasks (a source partition: its place in the source
 *                       topics' partitions; a stage partition: its number)
 *     'R': varint seq, then the record (schemas/rowbin.h)
 *     'W': varint watermark (WEIR_WM_END at the sender's end of input)
 *
 * Records go to the partition that Kafka's murmur2 gives their key (the stage
 * head's key, the message key too); watermarks go to every partition, with the
 * header `weir.ctl: wm`. Both pass through the producer hand-off ring, in
 * order, so a watermark is behind every record its sender sent before it.
 * The sequence numbers are checkpointed on both sides: a downstream task
 * drops what it has already processed from an upstream task that restarted
 * from an older checkpoint (weir_task_process_stage).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_admin.h"
#include "kafka_int.h"
#include "key.h"
#include "murmur2.h"
#include "rowbin.h"

enum { MSG_RECORD = 'R', MSG_WATERMARK = 'W' };

int kafka_stage_of(const krun_t *kr, const char *topic) {
    const weir_pipeline_t *pl = kr->pl;
    for (int i = 0; i < pl->source.ntopics; i++)
        if (!strcmp(pl->source.topics[i], topic))
            return 0;
    for (int s = 1; s < pl->nstages; s++)
        if (!strcmp(pl->stages[s].topic, topic))
            return s;
    return -1;
}

int kafka_upstreams(const krun_t *kr, int stage) {
    int up = kr->pl->stages[stage].upstream;
    return up == 0 ? kr->src_parts : kr->stage_parts[up];
}

bool kafka_stage_feeds(const krun_t *kr, int stage) {
    for (int s = 1; s < kr->pl->nstages; s++)
        if (kr->pl->stages[s].upstream == stage)
            return true;
    return false;
}

int kafka_repart_open(krun_t *kr, const struct rd_kafka_metadata *md, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    kr->src_base = weir_calloc((size_t)pl->source.ntopics + 1, sizeof(int));
    int maxp = 0;
    for (int i = 0; i < pl->source.ntopics; i++) {
        int n = 0;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, pl->source.topics[i]))
                n = md->topics[j].partition_cnt;
        kr->src_base[i] = kr->src_parts;
        kr->src_parts += n;
        if (n > maxp)
            maxp = n;
    }
    kr->stage_parts = weir_calloc((size_t)pl->nstages + 1, sizeof(int));
    kr->repart_topics = weir_calloc((size_t)pl->nstages + 1, sizeof(rd_kafka_topic_t *));
    for (int s = 1; s < pl->nstages; s++) {
        const weir_stage_t *st = &pl->stages[s];
        kr->stage_parts[s] = st->partitions > 0 ? st->partitions : maxp;
        char msg[WEIR_ERRSTR_SIZE];
        if (weir_kafka_ensure_topic(kr->consumer, st->topic, kr->stage_parts[s], KAFKA_REQUEST_TIMEOUT_MS, msg,
                                    sizeof(msg)))
            return weir_err(errstr, errstr_size, "%s", msg);
        kr->repart_topics[s] = rd_kafka_topic_new(kr->producer, st->topic, NULL);
        weir_log(WEIR_LOG_INFO, LOG, "stage %d: repartition topic %s, %d partitions, %d upstream tasks", s, st->topic,
                 kr->stage_parts[s], kafka_upstreams(kr, s));
    }
    return WEIR_OK;
}

void kafka_repart_close(krun_t *kr) {
    for (int s = 1; kr->repart_topics && s < kr->pl->nstages; s++)
        if (kr->repart_topics[s])
            rd_kafka_topic_destroy(kr->repart_topics[s]);
    free(kr->repart_topics);
    free(kr->stage_parts);
    free(kr->src_base);
    weir_buf_free(&kr->rbuf);
}

void kafka_repartition(void *opaque, int stage, uint64_t seq, const weir_record_t *rec) {
    ktask_t *t = opaque;
    krun_t *kr = t->kr;
    const weir_stage_t *st = &kr->pl->stages[stage];
    int32_t part = 0;
    const char *kp = NULL;
    size_t kn = 0;
    char kbuf[WEIR_KEY_BUF];
    if (st->partitioning == WEIR_PART_KEY) {
        weir_arena_reset(&t->scratch);
        const char *why = weir_key_eval(st->key, rec, &t->scratch, kbuf, &kp, &kn);
        if (why) { /* the head would reject it: dead-letter it here, with its reason */
            kafka_reject(t, kr->pl->nodes[st->head].plan.name, rec, why);
            return;
        }
        part = weir_murmur2_partition(kp, kn, kr->stage_parts[stage]);
    }
    weir_buf_t *b = &kr->rbuf;
    weir_buf_reset(b);
    weir_buf_putc(b, MSG_RECORD);
    weir_rowbin_put_varint(b, t->up_index);
    weir_rowbin_put_varint(b, (int64_t)seq);
    weir_rowbin_encode(rec, b);
    int64_t ts = rec->ts == WEIR_TS_NONE || rec->ts < 0 ? 0 : rec->ts;
    kafka_queue_out(kr, kr->pl->nsinks + stage, part, OUT_REPART, kp, kn, b->p, b->len, NULL, 0, ts);
    kr->repart_out++;
}

void kafka_forward_watermark(krun_t *kr, ktask_t *t) {
    int64_t wm = weir_task_watermark(t->task);
    if (wm == WEIR_TS_NONE || (t->sent_wm != WEIR_TS_NONE && wm <= t->sent_wm))
        return;
    t->sent_wm = wm;
    weir_buf_t b = {0};
    for (int s = 1; s < kr->pl->nstages; s++) {
        if (kr->pl->stages[s].upstream != t->stage)
            continue;
        b.len = 0;
        weir_buf_putc(&b, MSG_WATERMARK);
        weir_rowbin_put_varint(&b, t->up_index);
        weir_rowbin_put_varint(&b, wm);
        for (int p = 0; p < kr->stage_parts[s]; p++)
            kafka_queue_out(kr, kr->pl->nsinks + s, p, OUT_CONTROL, NULL, 0, b.p, b.len, NULL, 0, 0);
    }
    weir_buf_free(&b);
}

void kafka_repart_message(krun_t *kr, ktask_t *t, const rd_kafka_message_t *m) {
    const uint8_t *p = m->payload;
    size_t n = m->len, k;
    int64_t up = -1, x = 0;
    char reason[WEIR_ERRSTR_SIZE];
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (n < 2 || (p[0] != MSG_RECORD && p[0] != MSG_WATERMARK) || !(k = weir_rowbin_get_varint(p + 1, n - 1, &up)) ||
        up < 0 || !weir_rowbin_get_varint(p + 1 + k, n - 1 - k, &x)) {
        kafka_dead_letter(kr, topic, m->partition, m->offset, NULL,
                          "not a weir repartition message (kind, upstream and sequence expected)", m->key, m->key_len,
                          m->payload, m->len);
        return;
    }
    size_t head = 1 + k;
    head += weir_rowbin_get_varint(p + head, n - head, &x);
    if (p[0] == MSG_WATERMARK) {
        weir_task_upstream_watermark(t->task, (int)up, x, weir_now_ms());
        if (kafka_stage_feeds(kr, t->stage))
            kafka_forward_watermark(kr, t);
        return;
    }
    if (weir_rowbin_decode(p + head, n - head, &t->rec, reason, sizeof(reason))) {
        kafka_dead_letter(kr, topic, m->partition, m->offset, NULL, reason, m->key, m->key_len, m->payload, m->len);
        return;
    }
    kr->repart_in++;
    if (!weir_task_process_stage(t->task, (int)up, (uint64_t)x, &t->rec))
        kr->repart_dups++;
}
