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
 * outputs the worker encodes and queues (kafka_sink.c; drained before every
 * producer flush, so the order above holds).
 *
 * Files (kafka_int.h): this one holds the loop, the tasks and rebalances and
 * end-of-input detection; kafka_conf.c the librdkafka configuration;
 * kafka_sink.c the outputs and dead letters; kafka_ckpt.c binds the
 * checkpoint coordinator (ckpt_coord.c) to the producer, Redis and Kafka.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"

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

static ktask_t *ktask_new(krun_t *kr, const char *topic, int32_t partition) {
    const weir_pipeline_t *pl = kr->pl;
    char errstr[WEIR_ERRSTR_SIZE];
    ktask_t *t = weir_calloc(1, sizeof(*t));
    t->topic = weir_strdup(topic);
    t->partition = partition;
    t->ck = (weir_ckpt_part_t){.next_offset = -1, .committed = -1, .ckpt_offset = -1, .task = t};
    t->end_offset = kr->o->until_end ? end_for(kr, topic, partition) : -1;
    t->kr = kr;
    t->sent_wm = WEIR_TS_NONE;
    t->stage = kafka_stage_of(kr, topic);
    if (t->stage < 0) { /* the subscription names only these topics */
        weir_log(WEIR_LOG_ERR, LOG, "assigned %s [%d], which is neither a source nor a repartition topic", topic,
                 (int)partition);
        kr->fatal = true;
        t->stage = 0;
    }
    if (t->stage == 0) {
        t->dec = weir_decoder_new(pl->source.format, pl->source.schema, pl->source.rt, pl->source.confluent, errstr,
                                  sizeof(errstr));
        if (!t->dec) {
            weir_log(WEIR_LOG_ERR, LOG, "decoder: %s", errstr);
            kr->fatal = true;
        }
        weir_record_init(&t->rec, pl->source.rt);
        for (int i = 0; i < pl->source.ntopics; i++)
            if (!strcmp(pl->source.topics[i], topic))
                t->up_index = kr->src_base[i] + partition;
    } else { /* records of the stage head's input, from the repartition topic */
        weir_record_init(&t->rec, pl->nodes[pl->stages[t->stage].head].plan.input);
        t->up_index = partition;
    }
    t->task = weir_task_new_stage(pl, t->stage, kafka_sink, kafka_reject, kafka_repartition, t);
    if (t->stage > 0)
        weir_task_set_upstreams(t->task, kafka_upstreams(kr, t->stage));
    t->id_prefix = weir_calloc((size_t)pl->nsinks + 1, sizeof(char *));
    t->id_prefix_len = weir_calloc((size_t)pl->nsinks + 1, sizeof(size_t));
    t->origin = weir_calloc((size_t)pl->nsinks + 1, sizeof(*t->origin));
    for (int i = 0; i < pl->nsinks; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof(buf), "%s/%s/", pl->name, pl->sinks[i].label);
        t->id_prefix_len[i] = n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
        t->id_prefix[i] = weir_strndup(buf, t->id_prefix_len[i]);
        t->origin[i].offset = -1;
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
    free(t->origin);
    weir_task_destroy(t->task);
    weir_decoder_destroy(t->dec);
    weir_record_free(&t->rec);
    weir_arena_free(&t->scratch);
    free(t->topic);
    free(t);
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

static void source_ended(krun_t *kr, ktask_t *t);

static void on_assign(krun_t *kr, rd_kafka_topic_partition_list_t *parts) {
    /* Start positions: the committed offsets (the consumer resumes there itself;
     * we read them to know where a bounded run already is). */
    rd_kafka_committed(kr->consumer, parts, KAFKA_REQUEST_TIMEOUT_MS);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        ktask_t *t = ktask_find(kr, p->topic, p->partition);
        if (!t)
            t = ktask_new(kr, p->topic, p->partition);
        if (p->offset >= 0) {
            t->ck.next_offset = p->offset;
            t->ck.committed = p->offset;
        }
        int64_t seek = kr->ckpt && !kr->fatal ? kafka_restore_task(kr, t, p->offset) : -1;
        if (seek >= 0)
            t->ck.next_offset = seek;
        if (t->stage == 0 && !t->done && t->end_offset >= 0 &&
            (t->end_offset == 0 || t->ck.next_offset >= t->end_offset)) /* (an empty partition has ended) */
            source_ended(kr, t);
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
        kafka_commit_tasks(kr, parts);
    for (int i = 0; i < parts->cnt; i++) {
        ktask_t **pp = &kr->tasks;
        while (*pp) {
            if ((*pp)->partition == parts->elems[i].partition && !strcmp((*pp)->topic, parts->elems[i].topic)) {
                ktask_t *dead = *pp;
                *pp = dead->next;
                if (kr->hint == dead)
                    kr->hint = NULL;
                ktask_destroy(dead);
                break;
            }
            pp = &(*pp)->next;
        }
    }
}

void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
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

/* Metadata check at start-up: the broker is reachable and the source topics exist.
 * For --until-end also record every partition's end offset now. */
static int probe_topics(krun_t *kr, char *errstr, size_t errstr_size) {
    const weir_pipeline_t *pl = kr->pl;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(kr->consumer, 1, NULL, &md, KAFKA_REQUEST_TIMEOUT_MS);
    if (err)
        return weir_err(errstr, errstr_size, "cannot reach the Kafka cluster at %s: %s",
                        kafka_brokers(kr->o) ? kafka_brokers(kr->o) : "(bootstrap.servers unset)",
                        rd_kafka_err2str(err));
    int rc = WEIR_OK;
    for (int i = 0; i < pl->source.ntopics && rc == WEIR_OK; i++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, pl->source.topics[i]))
                mt = &md->topics[j];
        if (!mt || mt->err) {
            rc = weir_err(errstr, errstr_size, "source topic '%s' does not exist on %s", pl->source.topics[i],
                          kafka_brokers(kr->o) ? kafka_brokers(kr->o) : "the cluster");
            break;
        }
        if (!kr->o->until_end)
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            int64_t lo, hi;
            err = rd_kafka_query_watermark_offsets(kr->consumer, mt->topic, mt->partitions[p].id, &lo, &hi,
                                                   KAFKA_REQUEST_TIMEOUT_MS);
            if (err) {
                rc = weir_err(errstr, errstr_size, "end offset of %s [%d]: %s", mt->topic, mt->partitions[p].id,
                              rd_kafka_err2str(err));
                break;
            }
            kr->ends = weir_realloc(kr->ends, (size_t)(kr->nends + 1) * sizeof(*kr->ends));
            /* a partition with nothing to read (empty, or emptied by retention) has ended: 0 */
            kr->ends[kr->nends++] = (end_mark_t){weir_strdup(mt->topic), mt->partitions[p].id, hi > lo ? hi : 0};
        }
    }
    if (rc == WEIR_OK && kafka_repart_open(kr, md, errstr, errstr_size))
        rc = WEIR_ERR;
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* --until-end: has the whole group reached the end marks? (committed offsets of every partition) */
static bool group_done(krun_t *kr) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(kr->nends);
    for (int i = 0; i < kr->nends; i++)
        rd_kafka_topic_partition_list_add(l, kr->ends[i].topic, kr->ends[i].partition);
    bool done = rd_kafka_committed(kr->consumer, l, KAFKA_DONE_REQUEST_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; done && i < l->cnt; i++) {
        int64_t end = kr->ends[i].end;
        if (end > 0 && l->elems[i].offset < end)
            done = false;
    }
    rd_kafka_topic_partition_list_destroy(l);
    /* Stage by stage: a repartition partition is done when its committed offset
     * reaches its end. Checked after the stages that feed it: their end
     * markers were produced before they committed. */
    for (int s = 1; done && s < kr->pl->nstages; s++) {
        const char *topic = kr->pl->stages[s].topic;
        l = rd_kafka_topic_partition_list_new(kr->stage_parts[s]);
        for (int p = 0; p < kr->stage_parts[s]; p++)
            rd_kafka_topic_partition_list_add(l, topic, p);
        done = rd_kafka_committed(kr->consumer, l, KAFKA_DONE_REQUEST_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int p = 0; done && p < l->cnt; p++) {
            int64_t lo, hi;
            if (rd_kafka_query_watermark_offsets(kr->consumer, topic, p, &lo, &hi, KAFKA_DONE_REQUEST_TIMEOUT_MS) ||
                (hi > 0 && l->elems[p].offset < hi))
                done = false;
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    return done;
}

/* A task is done when its input ended (a source partition: its end offset; a
 * stage partition: every upstream task's end marker) and, if it feeds another
 * stage, it has sent its own end marker on. */
static bool task_done(const krun_t *kr, const ktask_t *t) {
    if (t->stage == 0 ? !t->done : weir_task_watermark(t->task) != WEIR_WM_END)
        return false;
    return !kafka_stage_feeds(kr, t->stage) || t->sent_wm == WEIR_WM_END;
}

static bool local_done(krun_t *kr) {
    for (ktask_t *t = kr->tasks; t; t = t->next)
        if (!task_done(kr, t))
            return false;
    return true;
}

/* A source partition read to its end (--until-end): its windows fire and the
 * stages it feeds learn that it ended. */
static void source_ended(krun_t *kr, ktask_t *t) {
    t->done = true;
    weir_task_advance(t->task, WEIR_WM_END);
    if (kafka_stage_feeds(kr, 0))
        kafka_forward_watermark(kr, t);
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
    ktask_t *t = task_of(kr, topic, m->partition);
    if (!t) {
        weir_log(WEIR_LOG_WARN, LOG, "message for unassigned %s [%" PRId32 "] ignored", topic, m->partition);
        return;
    }
    if (t->done)
        return;         /* a bounded run ignores what was appended after it started */
    if (t->stage > 0) { /* a repartition topic: records and watermarks of the upstream tasks */
        if (t->ck.next_offset < 0 || m->offset >= t->ck.next_offset) {
            kafka_repart_message(kr, t, m);
            t->ck.next_offset = m->offset + 1;
        }
        return;
    }
    if (t->ck.next_offset >= 0 && m->offset < t->ck.next_offset)
        return; /* already in this task's state (a message fetched before a seek) */
    if (t->ck.next_offset >= 0 && m->offset > t->ck.next_offset)
        weir_log(WEIR_LOG_DEBUG, LOG, "%s [%" PRId32 "]: offsets %" PRId64 "..%" PRId64 " skipped by the broker", topic,
                 m->partition, t->ck.next_offset, m->offset - 1);
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
        kr->undecodable++;
        kafka_dead_letter(kr, topic, m->partition, m->offset, NULL, reason, m->key, m->key_len, m->payload, m->len);
    } else {
        kr->in++;
        weir_task_process(t->task, rec);
    }
    t->ck.next_offset = m->offset + 1;
    if (t->end_offset >= 0 && t->ck.next_offset >= t->end_offset)
        source_ended(kr, t);
    atomic_store_explicit(&kr->metrics.records_in, kr->in + kr->undecodable, memory_order_relaxed);
}

/* Set-up: the instance name, the librdkafka handles, the metadata check, the
 * metrics server, checkpoints and transactions, the sinks. Logs what fails. */
static int run_open(krun_t *kr) {
    const weir_run_opts_t *o = kr->o;
    char errstr[WEIR_ERRSTR_SIZE];
    if (o->instance) {
        kr->instance = o->instance;
    } else {
        char host[64] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(kr->instance_buf, sizeof(kr->instance_buf), "%s:%d", host, (int)getpid());
        kr->instance = kr->instance_buf;
    }
    if (!(kr->consumer = kafka_consumer_new(kr, errstr, sizeof(errstr))) ||
        !(kr->producer = kafka_producer_new(kr, errstr, sizeof(errstr))) || probe_topics(kr, errstr, sizeof(errstr))) {
        weir_log(WEIR_LOG_ERR, LOG, "%s", errstr);
        return WEIR_ERR;
    }
    kr->metrics.pl = kr->pl;
    if (o->metrics_port >= 0) {
        int port = 0;
        if (!(kr->msrv =
                  weir_metrics_serve(&kr->metrics, kr->pl->name, o->metrics_port, &port, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "metrics", "%s", errstr);
            return WEIR_ERR;
        }
        weir_log(WEIR_LOG_INFO, "metrics", "Prometheus metrics on http://0.0.0.0:%d/metrics", port);
    }
    if (kafka_ckpt_open(kr))
        return WEIR_ERR;
    if (kafka_sink_open(kr, errstr, sizeof(errstr))) {
        weir_log(WEIR_LOG_ERR, LOG, "%s", errstr);
        return WEIR_ERR;
    }
    return WEIR_OK;
}

/* Join the group for the source topics. */
static int run_subscribe(krun_t *kr) {
    const weir_pipeline_t *pl = kr->pl;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(pl->source.ntopics + pl->nstages);
    for (int i = 0; i < pl->source.ntopics; i++)
        rd_kafka_topic_partition_list_add(sub, pl->source.topics[i], RD_KAFKA_PARTITION_UA);
    for (int s = 1; s < pl->nstages; s++) /* the stages' repartition topics: same group, same members */
        rd_kafka_topic_partition_list_add(sub, pl->stages[s].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(kr->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        weir_log(WEIR_LOG_ERR, LOG, "subscribe: %s", rd_kafka_err2str(err));
        return WEIR_ERR;
    }
    kr->subscribed = true;
    weir_log(WEIR_LOG_INFO, LOG, "%s joined group %s for %s%s", kr->instance,
             kr->o->group_id ? kr->o->group_id : pl->source.group_id, pl->source.topics[0],
             pl->source.ntopics > 1 ? " and more" : "");
    return WEIR_OK;
}

/* Idle ticks for every task, then the partitions and watermark-delay gauges. */
static void run_idle_tick(krun_t *kr) {
    int64_t wall = weir_now_ms();
    for (ktask_t *t = kr->tasks; t; t = t->next) {
        weir_task_idle_tick(t->task, wall);
        if (kafka_stage_feeds(kr, t->stage))
            kafka_forward_watermark(kr, t); /* at most every idle tick, when it advanced */
    }
    uint64_t nparts = 0;
    int64_t min_wm = INT64_MAX;
    for (ktask_t *t = kr->tasks; t; t = t->next) {
        nparts++;
        int64_t wm = weir_task_watermark(t->task);
        if (wm != WEIR_TS_NONE && wm < min_wm)
            min_wm = wm;
    }
    atomic_store_explicit(&kr->metrics.partitions, nparts, memory_order_relaxed);
    if (min_wm != INT64_MAX && min_wm != WEIR_WM_END)
        atomic_store_explicit(&kr->metrics.watermark_delay_ms, wall - min_wm, memory_order_relaxed);
}

/* End of input for every task here: windows still open fire. */
static void run_end_input(krun_t *kr) {
    for (ktask_t *t = kr->tasks; t; t = t->next)
        if (t->stage == 0) /* a later stage ends when its upstream tasks do */
            weir_task_advance(t->task, WEIR_WM_END);
}

/* --until-end, everything assigned here is read: end the input of these tasks
 * and commit; the run's clock stops when their outputs are acknowledged.
 * @returns whether the whole group is done. */
static bool run_inputs_ended(krun_t *kr) {
    run_end_input(kr);
    kafka_commit_tasks(kr, NULL);
    if (kr->first_ns && !kr->ended_here) {
        kr->last_ns = weir_now_ns();
        kr->ended_here = true;
    }
    return group_done(kr);
}

/* The poll loop, until a signal, --duration, the end of a bounded run or a fatal error. */
static void run_loop(krun_t *kr) {
    const weir_run_opts_t *o = kr->o;
    int64_t start_ns = weir_now_ns(), next_done_check = 0, next_idle = 0;
    unsigned polls = 0;
    while (!weir_stop && !(o->stop && *o->stop) && !kr->fatal) {
        /* One message per poll, not batches: a rebalance is served inside the
         * poll call, and a batch could hold messages fetched before a partition
         * was revoked and assigned again, which the restored task must not see
         * (they would jump its watermark ahead of the records it replays).
         * (Measured: batches of 256 saved ~10 % of the CPU time and no
         * wall-clock time in bench/kafka/filter_map.sh.) A non-blocking poll
         * first: a blocking one reads the clock for its deadline. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kr->consumer, 0);
        if (!m)
            m = rd_kafka_consumer_poll(kr->consumer, KAFKA_POLL_MS);
        if (m) {
            if (m->err)
                weir_log(WEIR_LOG_WARN, LOG, "consumer: %s", rd_kafka_message_errstr(m));
            else
                handle_message(kr, m);
            rd_kafka_message_destroy(m);
        }
        /* Delivery reports: served every 256 loop turns (each call takes the producer's locks). */
        if ((++polls & 255) == 0 || !m)
            rd_kafka_poll(kr->producer, 0);
        /* The timers below have 100 ms granularity: read the clock every 64 messages. */
        if (m && (polls & 63))
            continue;
        int64_t now = weir_now_ns();
        if (o->duration_ms > 0 && now - start_ns >= o->duration_ms * 1000000)
            break;
        kafka_checkpoint_tick(kr, now);
        if (now >= next_idle) {
            run_idle_tick(kr);
            next_idle = now + KAFKA_IDLE_TICK_NS;
        }
        if (o->until_end && now >= next_done_check && kr->ever_assigned && local_done(kr)) {
            if (run_inputs_ended(kr))
                break;
            next_done_check = weir_now_ns() + KAFKA_DONE_CHECK_NS;
        }
    }
}

/* The final checkpoint (SIGTERM, --duration, end of a bounded run). */
static void run_finish(krun_t *kr) {
    if (kr->o->until_end)
        run_end_input(kr);
    if (kafka_commit_tasks(kr, NULL) != WEIR_OK && kr->ckpt)
        weir_log(WEIR_LOG_WARN, "checkpoint", "final checkpoint not written: a restart resumes from the previous one");
    if (!kr->ended_here)
        kr->last_ns = weir_now_ns();
}

/* Tear-down, of a run at any stage of run_open. */
static void run_close(krun_t *kr) {
    if (kr->consumer) {
        rd_kafka_consumer_close(kr->consumer); /* leaves the group; revokes (and commits) what is left */
        /* librdkafka < 2.3 asserts in rd_kafka_destroy() when a cooperative-sticky
         * member that never received an assignment is destroyed (librdkafka
         * issue #4312, fixed by PR #4381). Such a member holds no state; the
         * handle is left to process exit instead. */
        if (kr->ever_assigned || !kr->subscribed || rd_kafka_version() >= 0x020300ff)
            rd_kafka_destroy(kr->consumer);
    }
    while (kr->tasks) {
        ktask_t *t = kr->tasks;
        kr->tasks = t->next;
        ktask_destroy(t);
    }
    kafka_sink_stop(kr);
    if (kr->producer)
        rd_kafka_flush(kr->producer, KAFKA_REQUEST_TIMEOUT_MS);
    kafka_sink_close(kr);
    kafka_repart_close(kr);
    if (kr->producer)
        rd_kafka_destroy(kr->producer);
    weir_metrics_stop(kr->msrv);
    kafka_ckpt_close(kr);
    for (int i = 0; i < kr->nends; i++)
        free(kr->ends[i].topic);
    free(kr->ends);
    weir_buf_free(&kr->buf);
}

int weir_run_kafka(const weir_pipeline_t *pl, const weir_run_opts_t *o) {
    if (pl->source.ntopics == 0) {
        weir_log(WEIR_LOG_ERR, LOG, "%s: the source has no kafka topics; use --input FILE for file mode", pl->path);
        return 2;
    }
    krun_t kr = {.pl = pl, .o = o};
    int rc = 1;
    if (run_open(&kr) == WEIR_OK && run_subscribe(&kr) == WEIR_OK) {
        run_loop(&kr);
        if (!kr.fatal)
            run_finish(&kr);
        rc = kr.fatal ? 1 : 0;
    }
    if (kr.config_error)
        rc = 2;
    run_close(&kr);
    if (rc == 0 && !o->quiet) {
        double el = kr.first_ns ? (double)(kr.last_ns - kr.first_ns) / 1e9 : 0.0;
        weir_print_summary(kr.in + kr.undecodable, kr.out, kr.dead + atomic_load(&kr.dead_outputs), el,
                           "first_record..last_output_acked");
    }
    return rc;
}
