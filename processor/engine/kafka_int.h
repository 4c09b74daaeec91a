/**
 * @file kafka_int.h
 * @brief Internal to the Kafka runtime (not for other folders): the run and
 *        task structs its files share, its constants, and what each file
 *        offers the others.
 *
 *   runtime_kafka.c  the poll loop, tasks per partition, rebalances, end of input, weir_run_kafka
 *   kafka_conf.c     librdkafka configuration of the consumer and the producer, its callbacks
 *   kafka_sink.c     outputs: encoding, ids, the producer hand-off thread, dead letters
 *   kafka_ckpt.c     the checkpoint coordinator bound to Kafka and Redis, transactions, restore
 *   kafka_repart.c   stages: records and watermarks through repartition topics (docs/keyby.md)
 */
#ifndef WEIR_KAFKA_INT_H
#define WEIR_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "checkpoint.h"
#include "ckpt_coord.h"
#include "metrics.h"
#include "runtime.h"
#include "spsc.h"
#include "task.h"

#define LOG "kafka"

/** Timeout of the transactional calls (init, send offsets, commit, abort): half of the
 *  transaction.timeout.ms we set (KAFKA_TXN_TIMEOUT_MS), so a call gives up before the broker
 *  aborts the transaction under it. */
#define KAFKA_TXN_CALL_TIMEOUT_MS 30000
/** transaction.timeout.ms: a transaction stays open for a whole checkpoint interval (10 s by
 *  default); 60 s leaves room for a longer interval and a slow flush before the broker aborts it. */
#define KAFKA_TXN_TIMEOUT_MS "60000"
/** Blocking broker requests (metadata, committed offsets, end offsets) and each producer flush wait:
 *  long enough for a leader election, short enough to log progress while waiting. */
#define KAFKA_REQUEST_TIMEOUT_MS 10000
/** --until-end: the group's committed offsets are checked this often. */
#define KAFKA_DONE_CHECK_NS 500000000
/** The group-done check's committed-offsets request. */
#define KAFKA_DONE_REQUEST_TIMEOUT_MS 5000
/** Idle ticks (weir_task_idle_tick) and metrics refresh: idleness is measured to 200 ms, and
 *  ticking costs one clock read per 200 ms, not one per record. */
#define KAFKA_IDLE_TICK_NS 200000000
/** Offset commit interval without checkpoints (no Redis, no --commit-interval). */
#define KAFKA_COMMIT_INTERVAL_MS 5000
/** Blocking consumer poll when no message is waiting: the timers above see the clock this often. */
#define KAFKA_POLL_MS 100
/** The worker -> hand-off thread ring: room for tens of thousands of typical outputs, so the
 *  worker rarely waits for the produce calls; larger outputs are produced on the worker. */
#define KAFKA_HANDOFF_RING_BYTES (8u << 20)

typedef struct krun krun_t;

/** The origin of a sink's last output, for the index of an output within its input record (output ids). */
struct out_origin {
    int64_t offset; /* -1: none yet */
    int32_t partition;
    uint32_t index;
    char topic[256];
};

/** One assigned input partition: its task and where it is. The task's callbacks get this. */
typedef struct ktask {
    krun_t *kr; /* the run it belongs to */
    char *topic;
    int32_t partition;
    weir_task_t *task;
    weir_decoder_t *dec;
    weir_record_t rec;
    weir_ckpt_part_t ck; /* offsets: next to read (-1 unknown), last committed, last checkpointed */
    int64_t end_offset;  /* --until-end: stop here (exclusive), -1 none */
    char **id_prefix;    /* per sink: "pipeline/label/" for output ids */
    size_t *id_prefix_len;
    struct out_origin *origin; /* per sink: the origin of the last output (its index within that record) */
    bool done;                 /* reached end_offset */
    /* stages (docs/keyby.md) */
    int stage;            /* 0: a source partition; > 0: a partition of that stage's repartition topic */
    int up_index;         /* this task's index among the upstream tasks of the stages it feeds */
    int64_t sent_wm;      /* the watermark last sent to those stages (WEIR_TS_NONE: none) */
    weir_arena_t scratch; /* key evaluation for the repartition */
    struct ktask *next;
} ktask_t;

/** --until-end: a partition's end offset when the run started. */
typedef struct end_mark {
    char *topic;
    int32_t partition;
    int64_t end;
} end_mark_t;

/** One run of weir_run_kafka. */
struct krun {
    const weir_pipeline_t *pl;
    const weir_run_opts_t *o;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t **sink_topics;
    rd_kafka_topic_t *dlq_topic;
    weir_encoder_t **enc; /* per sink */
    weir_buf_t buf;
    ktask_t *tasks;
    ktask_t *hint; /* the task of the last message */
    end_mark_t *ends;
    int nends;
    uint64_t in, out, dead;
    uint64_t undecodable;            /* dead letters of input that never reached a task (records_in = in + it) */
    _Atomic uint64_t dead_outputs;   /* outputs too large for the producer, dead-lettered (either thread) */
    size_t max_message;              /* the producer's message.max.bytes */
    _Atomic uint64_t produce_errors; /* also counted by the hand-off thread */
    int64_t first_ns, last_ns;
    bool ended_here; /* --until-end: last_ns is when this member's inputs ended */
    const char *instance;
    char instance_buf[128]; /* default instance name: host:pid */
    atomic_bool fatal;      /* set by either thread; the run stops */
    bool config_error;      /* start-up refused by configuration (e.g. Redis AUTH): exit 2 */
    /* producer hand-off (default): the worker thread encodes each output and
     * queues it here; one thread makes the librdkafka produce calls */
    weir_spsc_t *outq;
    pthread_t sink_thread;
    bool sink_started;
    atomic_bool sink_quit;
    bool ever_assigned; /* see kafka_close */
    bool subscribed;
    /* checkpoints */
    weir_ckpt_t *ckpt;        /* NULL: no checkpoints, offsets committed on an interval */
    char *fingerprint;        /* graph fingerprint stored with each checkpoint */
    weir_ckpt_coord_t *coord; /* flush -> checkpoint -> commit rounds, Redis outage policy */
    uint64_t checkpoints;
    bool eos; /* delivery: exactly_once (Kafka transactions) */
    /* deterministic ids of outputs without an `id` field */
    int *id_slot; /* per sink: slot of a string field `id`, or -1 */
    char idbuf[512];
    weir_metrics_t metrics; /* read by the metrics thread */
    weir_metrics_server_t *msrv;
    /* stages (docs/keyby.md) */
    int *stage_parts;                 /* per stage > 0: partitions of its repartition topic */
    rd_kafka_topic_t **repart_topics; /* per stage > 0 */
    int *src_base;                    /* per source topic: index of its partition 0 among the upstream tasks */
    int src_parts;                    /* partitions of all source topics */
    weir_buf_t rbuf;                  /* a repartition message being built */
    uint64_t repart_out, repart_in, repart_dups;
};

/** Where a queued output goes: a sink (weir.id header), a repartition topic (no header) or a control message. */
typedef enum out_kind { OUT_SINK = 0, OUT_REPART, OUT_CONTROL } out_kind_t;

/* runtime_kafka.c */
/** The rebalance callback (assign / revoke, eager or cooperative). */
void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque);

/* kafka_conf.c */
/** @returns --brokers, else $WEIR_BROKERS, else NULL (the properties' bootstrap.servers). */
const char *kafka_brokers(const weir_run_opts_t *o);
rd_kafka_t *kafka_consumer_new(krun_t *kr, char *errstr, size_t errstr_size);
rd_kafka_t *kafka_producer_new(krun_t *kr, char *errstr, size_t errstr_size);

/* kafka_sink.c */
/** Sink topics, encoders, output ids, the dead-letter topic and (unless --inline-produce) the hand-off thread. */
int kafka_sink_open(krun_t *kr, char *errstr, size_t errstr_size);
/** Stops the hand-off thread after it produced what is queued. The producer must still exist. */
void kafka_sink_stop(krun_t *kr);
/** Frees what kafka_sink_open made (topics before the producer is destroyed). */
void kafka_sink_close(krun_t *kr);
/** The tasks' sink and reject callbacks; opaque is the task's ktask_t. */
void kafka_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec);
void kafka_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason);
/** Everything queued for the hand-off thread has been given to librdkafka. */
void kafka_sink_drain(krun_t *kr);
/** A message to the dead-letter topic (undecodable input as it came, a rejected record as JSON) with weir.error.*
 * headers (reason, topic, partition, offset, node if an operator rejected it) and weir.pipeline. */
void kafka_dead_letter(krun_t *kr, const char *topic, int32_t partition, int64_t offset, const char *node,
                       const char *reason, const void *key, size_t key_len, const void *val, size_t len);

/** An output for the producer (through the hand-off ring when there is one, in order with the others). dest: a sink
 * index, or nsinks + stage for a repartition topic; partition: RD_KAFKA_PARTITION_UA or explicit. */
void kafka_queue_out(krun_t *kr, int dest, int32_t partition, out_kind_t kind, const void *key, size_t klen,
                     const void *val, size_t vlen, const void *id, size_t idlen, int64_t ts);

/* kafka_repart.c */
/** Partition counts of the source topics (from md) and of every repartition topic; creates missing ones. */
int kafka_repart_open(krun_t *kr, const struct rd_kafka_metadata *md, char *errstr, size_t errstr_size);
void kafka_repart_close(krun_t *kr);
/** The stage of a topic: 0 for a source topic, s for stage s's repartition topic, -1 for neither. */
int kafka_stage_of(const krun_t *kr, const char *topic);
/** The number of upstream tasks of stage s (> 0). */
int kafka_upstreams(const krun_t *kr, int stage);
/** The task's repartition callback (opaque: its ktask_t). */
void kafka_repartition(void *opaque, int stage, uint64_t seq, const weir_record_t *rec);
/** A message of a repartition topic for downstream task t: a record or an upstream watermark. */
void kafka_repart_message(krun_t *kr, ktask_t *t, const rd_kafka_message_t *m);
/** Send t's watermark to every partition of the stages t feeds, if it advanced since the last time. */
void kafka_forward_watermark(krun_t *kr, ktask_t *t);
/** Whether stage s feeds another stage. */
bool kafka_stage_feeds(const krun_t *kr, int stage);

/* kafka_ckpt.c */
/** Checkpoint store (with Redis), transactions (exactly_once) and the coordinator. Logs its errors. */
int kafka_ckpt_open(krun_t *kr);
void kafka_ckpt_close(krun_t *kr);
/** Flush, checkpoint and commit the tasks (all, or the partitions in `only`). @returns as weir_ckpt_coord_commit. */
int kafka_commit_tasks(krun_t *kr, const rd_kafka_topic_partition_list_t *only);
/** A scheduled round if one is due at now_ns (with the Redis outage policy). */
void kafka_checkpoint_tick(krun_t *kr, int64_t now_ns);
/** Restore a newly assigned task from Redis. @returns the offset to seek to, or -1 (the committed offset). */
int64_t kafka_restore_task(krun_t *kr, ktask_t *t, int64_t committed);

#endif
