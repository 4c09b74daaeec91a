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

/**
 * Called for every record that reaches sink `sink` (index into pl->sinks).
 * rec is borrowed. seq is this output's number among the task's outputs to
 * that sink (0, 1, ...); the numbers are part of the task's snapshot, so a
 * replay after a restore numbers the same outputs the same way (output ids).
 * opaque is the task's, given to weir_task_new.
 */
typedef void (*weir_sink_fn)(void *opaque, int sink, uint64_t seq, const weir_record_t *rec);
/** Called for every record an operator rejects (late beyond lateness with no late sink, bad value...). */
typedef void (*weir_reject_fn)(void *opaque, const char *node, const weir_record_t *rec, const char *reason);

typedef struct weir_task_stats {
    uint64_t records_in; /**< records fed to the graph */
    uint64_t *node_out;  /**< per node: records emitted on any port */
    uint64_t sink_out;   /**< records handed to sinks */
    uint64_t rejected;   /**< records rejected by operators */
} weir_task_stats_t;

/**
 * @brief A task running pl (borrowed; it must outlive the task).
 * @param opaque this task's own pointer, passed to its sink_fn and reject_fn (the runtime's per-task
 *        context: which partition the outputs come from)
 * @param reject_fn may be NULL (rejects are only counted)
 */
weir_task_t *weir_task_new(const weir_pipeline_t *pl, weir_sink_fn sink_fn, weir_reject_fn reject_fn, void *opaque);
void weir_task_destroy(weir_task_t *t);

/** @returns the task's counters (owned by the task, updated as it runs). */
const weir_task_stats_t *weir_task_stats(const weir_task_t *t);
/** @returns the current watermark: WEIR_TS_NONE before the first record, WEIR_WM_END after the end of input. */
int64_t weir_task_watermark(const weir_task_t *t);
/** @returns the pipeline the task runs. */
const weir_pipeline_t *weir_task_pipeline(const weir_task_t *t);
/** @returns node `node`'s operator state (its class's ctx), e.g. for the class's dump(); borrowed. */
void *weir_task_node_state(const weir_task_t *t, int node);

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
