/**
 * @file task.h
 * @brief A task: one instance of the operator graph with all of its state,
 *        owned by one input partition (DESIGN.md §3). Tasks share nothing, so
 *        nothing on the hot path takes a lock.
 *
 * The runtime feeds decoded records with weir_task_process() and time with
 * weir_task_advance(); records that reach a sink are handed to the sink
 * callback, rejected ones to the reject callback.
 */
#ifndef WEIR_TASK_H
#define WEIR_TASK_H

#include "pipeline.h"

typedef struct weir_task weir_task_t;

/** Called for every record that reaches sink `sink` (index into pl->sinks). Borrowed. */
typedef void (*weir_sink_fn)(void *opaque, int sink, const weir_record_t *rec);
/** Called for every record an operator rejects (late beyond lateness with no late sink, bad value...). */
typedef void (*weir_reject_fn)(void *opaque, const char *node, const weir_record_t *rec, const char *reason);

typedef struct weir_task_stats {
    uint64_t records_in; /**< records fed to the graph */
    uint64_t *node_out;  /**< per node: records emitted on any port */
    uint64_t sink_out;   /**< records handed to sinks */
    uint64_t rejected;   /**< records rejected by operators */
} weir_task_stats_t;

struct weir_task {
    const weir_pipeline_t *pl;
    void **ctx;              /**< per node */
    struct task_emitter *em; /**< per node */
    weir_sink_fn sink_fn;
    weir_reject_fn reject_fn;
    void *opaque;
    int64_t max_ts;         /**< largest event time seen, or WEIR_TS_NONE */
    int64_t watermark;      /**< current watermark (WEIR_TS_NONE before the first record) */
    int64_t last_record_ms; /**< processing time of the last record (idle detection) */
    uint64_t idle_seen_in;  /**< records_in at the last idle tick (records arrived since?) */
    weir_task_stats_t stats;
    uint64_t *sink_seq; /**< per sink: outputs handed to it so far (checkpointed) */
    uint64_t emit_seq;  /**< during a sink callback: that output's number at its sink */
};

weir_task_t *weir_task_new(const weir_pipeline_t *pl, weir_sink_fn sink_fn, weir_reject_fn reject_fn, void *opaque);
void weir_task_destroy(weir_task_t *t);

/** @brief Run one source record through the graph and advance the watermark from its event time. */
void weir_task_process(weir_task_t *t, const weir_record_t *rec);
/**
 * @brief Advance the watermark to wm if it is later (WEIR_WM_END = end of
 *        input) and tell every operator, in topological order.
 */
void weir_task_advance(weir_task_t *t, int64_t wm);
/**
 * @brief Idle check: if no record arrived for the source's idle_timeout,
 *        advance the watermark by processing time. now_ms: wall clock.
 *        Call it periodically (the Kafka loop: every 200 ms): "the last
 *        record" is the first tick that saw records arrive, so idleness is
 *        measured with the tick's resolution and no clock is read per record.
 */
void weir_task_idle_tick(weir_task_t *t, int64_t now_ms);

/** @brief Snapshot every operator into buf: u32 node count, then per node its name and frame. */
int weir_task_snapshot(weir_task_t *t, weir_buf_t *buf);
/** @brief Restore from weir_task_snapshot's bytes. @returns WEIR_OK or WEIR_ERR with errstr. */
int weir_task_restore(weir_task_t *t, const void *p, size_t n, char *errstr, size_t errstr_size);

/**
 * @brief Restore node by node, matching nodes by name, after a pipeline
 *        change. A node whose fingerprint entry (see weir_pipeline_fingerprint)
 *        differs from saved_fp, a node that is new, and a saved node that no
 *        longer exists are refused with a clear error, unless `reset` is "all"
 *        or names that node (comma-separated list): a reset node starts empty.
 *        On error nothing is changed (the task must then be recreated).
 */
int weir_task_restore_compat(weir_task_t *t, const void *p, size_t n, const char *saved_fp, const char *cur_fp,
                             const char *reset, char *errstr, size_t errstr_size);

#endif
