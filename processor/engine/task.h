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

/**
 * Called for every record that crosses into another stage (docs/keyby.md):
 * `stage` is the stage whose head node must get rec (borrowed); seq is the
 * record's number among this task's records to that stage (checkpointed, so a
 * replay numbers the same records the same way and the downstream task can
 * drop what it has seen).
 */
typedef void (*weir_repartition_fn)(void *opaque, int stage, uint64_t seq, const weir_record_t *rec);

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
/**
 * @brief A task running only the nodes of stage `stage` (docs/keyby.md):
 *        records that reach a node of another stage go to repart_fn instead.
 *        Stage 0 is fed by weir_task_process (source records), a later stage
 *        by weir_task_process_stage, and its watermark comes from its upstream
 *        tasks (weir_task_set_upstreams, weir_task_upstream_watermark).
 *        weir_task_new is the same with stage -1: every node (file mode).
 */
weir_task_t *weir_task_new_stage(const weir_pipeline_t *pl, int stage, weir_sink_fn sink_fn, weir_reject_fn reject_fn,
                                 weir_repartition_fn repart_fn, void *opaque);
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
 * @brief A record that upstream task `up` sent across the repartition with
 *        number seq: run it from the stage's head node, unless this task
 *        already processed seq from `up` (a replay after an upstream restart:
 *        dropped, counted). The watermark does not move (see below).
 * @returns true if processed, false if dropped as a duplicate.
 */
bool weir_task_process_stage(weir_task_t *t, int up, uint64_t seq, const weir_record_t *rec);
/** @brief A downstream task has n upstream tasks (indices 0..n-1); call before the first record. */
void weir_task_set_upstreams(weir_task_t *t, int n);
/**
 * @brief Upstream task `up` reports its watermark wm (WEIR_WM_END at its end
 *        of input). The task's watermark becomes the minimum over the upstream
 *        tasks, leaving out those not heard from for the source's
 *        idle_timeout (Flink's rule), and advances when that minimum does.
 */
void weir_task_upstream_watermark(weir_task_t *t, int up, int64_t wm, int64_t now_ms);
/** @returns the task's stage (-1: every stage). */
int weir_task_stage(const weir_task_t *t);
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
/** One node of a task snapshot: its name and its frame (see weir_task_snapshot_parse). */
typedef struct weir_task_snapshot_node {
    char *name;         /**< owned */
    weir_frame_t frame; /**< borrows the snapshot bytes */
} weir_task_snapshot_node_t;

/** One sink's output counter in a task snapshot. */
typedef struct weir_task_snapshot_sink {
    char *label, *topic; /**< owned; sinks are matched by (label, topic) */
    uint64_t seq;        /**< outputs numbered so far */
} weir_task_snapshot_sink_t;

/**
 * A task snapshot taken apart. The layout, read here only:
 *   u32 node count | frame "task" {i64 max_ts, i64 watermark, u32 n, n x (str label, str topic, u64 seq),
 *                                  version 2: u32 s, s x u64 records sent to stage i,
 *                                             u32 u, u x (i64 upstream watermark, u64 next upstream seq)}
 *   | per node of the task's stage: str name + the operator's frame
 */
typedef struct weir_task_snapshot_view {
    uint32_t node_count; /**< as stored */
    int64_t max_ts, watermark;
    uint32_t nsinks;
    weir_task_snapshot_sink_t *sinks;
    uint32_t nstages;     /**< version 2: records sent to each stage */
    uint64_t *repart_seq; /**< owned */
    uint32_t nup;         /**< version 2: upstream tasks of a downstream task */
    int64_t *up_wm;       /**< owned */
    uint64_t *up_next;    /**< owned */
    uint32_t nnodes;      /**< nodes read (all of node_count unless an error stopped the reading) */
    weir_task_snapshot_node_t *nodes;
    int bad_node;     /**< on error: -1 = the header, else the node that could not be read */
    size_t trailing;  /**< bytes after the last node */
    char errstr[160]; /**< on error: why */
} weir_task_snapshot_view_t;

/**
 * @brief Parse a task snapshot: the header, every node's name and frame
 *        (frame CRCs are checked by whoever opens a frame, so that a
 *        damaged frame can still be shown). What was read before an error
 *        stays in *v. Free with weir_task_snapshot_view_free in any case.
 * @returns WEIR_OK or WEIR_ERR (v->bad_node, v->errstr).
 */
int weir_task_snapshot_parse(const void *p, size_t n, weir_task_snapshot_view_t *v);
void weir_task_snapshot_view_free(weir_task_snapshot_view_t *v);

/** What weir_task_restore may have to reconcile; NULL or NULL fields = nothing. */
typedef struct weir_restore_opts {
    const char *saved_fp; /**< fingerprint stored with the checkpoint (weir_pipeline_fingerprint) */
    const char *cur_fp;   /**< the running pipeline's fingerprint */
    const char *reset;    /**< --reset-state: "all" or comma-separated node names that start empty */
    bool partial;         /**< inspection (`weir state`): a node without saved state stays empty, no error */
} weir_restore_opts_t;

/**
 * @brief Restore from weir_task_snapshot's bytes, node by node, matching
 *        nodes by name: the one restore path of tests, `weir state` and the
 *        Kafka runtime. A node that is new, a saved node that no longer
 *        exists and (given saved_fp) a node whose fingerprint entry differs
 *        from saved_fp are refused with a clear error, unless `reset` is "all"
 *        or names that node: a reset node starts empty. A refusal found before any operator
 *        is restored changes nothing; an operator's restore error may leave
 *        the task half restored (recreate it).
 * @returns WEIR_OK or WEIR_ERR with errstr.
 */
int weir_task_restore(weir_task_t *t, const void *p, size_t n, const weir_restore_opts_t *opts, char *errstr,
                      size_t errstr_size);

#endif
