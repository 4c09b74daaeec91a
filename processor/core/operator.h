/**
 * @file operator.h
 * @brief The operator interface (DESIGN.md §5): every operator, built-in or
 *        added later, is a `const weir_operator_class_t` plus per-task
 *        instances holding a `void *ctx`.
 *
 * Life cycle:
 *   compile time, once per pipeline:  configure(plan, node cfg)  -> plan->conf,
 *                                     output ports and their row types
 *   run time, once per task (input partition):
 *                                     init(plan) -> ctx
 *                                     process(ctx, record, emitter)  per record
 *                                     on_watermark(ctx, wm, emitter) as time advances
 *                                     snapshot(ctx, writer) / restore(ctx, reader)
 *                                     destroy(ctx)
 *   compile time, at exit:            plan_destroy(plan->conf)
 *
 * Ownership rules (written once, here):
 *  - process() *borrows* its input record for the duration of the call.
 *  - weir_emit() hands a record downstream synchronously; the receiver borrows
 *    it for that call only and copies whatever it keeps. The emitting operator
 *    may reuse the record as soon as weir_emit returns.
 *  - on_watermark(ctx, WEIR_WM_END, em) means end of input: fire everything.
 *  - No locks: a ctx is only ever touched by the thread running its task.
 */
#ifndef WEIR_OPERATOR_H
#define WEIR_OPERATOR_H

#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "record.h"
#include "snapshot.h"

#define WEIR_OPERATOR_ABI 1
#define WEIR_MAX_PORTS 4
/** Format version of the empty frame the engine writes for a stateless class
 *  (snapshot == NULL): tag = the class name, no payload. */
#define WEIR_STATELESS_SNAPSHOT_VERSION 1
/** Watermark meaning "end of input": every open window fires. */
#define WEIR_WM_END INT64_MAX

typedef struct weir_emitter weir_emitter_t;
struct weir_emitter {
    /** Deliver rec on output port `port` (0 = the node's main output). */
    void (*emit)(weir_emitter_t *em, int port, const weir_record_t *rec);
    /** Report a record that could not be processed (dead-letter with reason). */
    void (*reject)(weir_emitter_t *em, const weir_record_t *rec, const char *reason);
    void *opaque; /**< the runtime's */
};

static inline void weir_emit(weir_emitter_t *em, int port, const weir_record_t *rec) { em->emit(em, port, rec); }

/** An output port of a node: port 0 is named after the node, others "node.suffix". */
typedef struct weir_port {
    const char *suffix; /**< NULL for port 0, else e.g. "late", "centroids" (static string) */
    weir_rowtype_t *rt; /**< owned by the plan */
} weir_port_t;

struct weir_operator_class;
struct weir_key_spec;

/**
 * How the records reaching a node must be partitioned across tasks, set by
 * configure(). The engine compares it with how the records are partitioned
 * where the node sits and inserts a repartition (an internal Kafka topic,
 * docs/keyby.md) where they are not: keyed state then sees every record of
 * its key, whatever the input topic's partitioning.
 */
typedef enum weir_partitioning {
    WEIR_PART_ANY = 0, /**< per-record or per-task: any partitioning */
    WEIR_PART_KEY,     /**< all records of one key (plan->key) in one task */
    WEIR_PART_GLOBAL,  /**< every record in one task (one partition) */
} weir_partitioning_t;

/**
 * Counters of one node summed over all its tasks (any thread, relaxed atomics),
 * read by the metrics endpoint. Allocated by weir_plan_configure.
 */
typedef struct weir_node_stats {
    _Atomic uint64_t evicted_keys;   /**< keys evicted to keep max_keys / max_open_windows */
    _Atomic uint32_t evict_reported; /**< 1 once an eviction of this node was logged */
} weir_node_stats_t;

/** A compiled node: what configure() produced, shared read-only by all tasks. */
typedef struct weir_plan {
    const struct weir_operator_class *cls;
    const char *pipeline;        /**< pipeline name (for deterministic ids) */
    const char *name;            /**< node name */
    const weir_cfg_t *cfg;       /**< the node's map in the pipeline file */
    const weir_rowtype_t *input; /**< row type of the node's input */
    int nports;
    weir_port_t ports[WEIR_MAX_PORTS];
    /** Filled by the pipeline compiler once sinks are resolved: port p has a
     *  downstream node or sink (e.g. a window emits late records to the
     *  dead-letter output when nothing reads its `late` port). */
    bool port_used[WEIR_MAX_PORTS];
    void *conf;                       /**< operator's compiled configuration */
    weir_partitioning_t partitioning; /**< set by configure (default ANY) */
    const struct weir_key_spec *key;  /**< WEIR_PART_KEY: the node's key (owned by conf) */
    weir_node_stats_t *stats;         /**< owned by the plan (weir_plan_configure / _release); may be NULL */
} weir_plan_t;

/**
 * @brief Count n keys evicted by a node (max_keys) in its stats.
 * @returns true the first time for this plan (across tasks), so the caller
 *          logs the eviction once per node; always true when stats is NULL
 *          and this is the task's first (*task_count == 0 before the call).
 */
bool weir_plan_count_evicted(const weir_plan_t *plan, uint64_t n, uint64_t *task_count);

typedef struct weir_operator_class {
    int abi;                 /**< WEIR_OPERATOR_ABI */
    const char *name;        /**< the `op:` value */
    const char *description; /**< one line, for `weir validate` and docs */
    /** Documented keys (NULL-terminated). The engine applies it (types,
     *  defaults, required keys, placed errors) into plan->conf before configure. */
    const weir_config_map_t *config_map;
    /** Bytes of the compiled configuration (the struct config_map's offsets
     *  point into); the engine allocates it zeroed as plan->conf and frees it. */
    size_t conf_size;
    /** @brief Optional: set fields before config_map is applied (e.g. NAN for
     *  "not given" when a key has no default). */
    void (*conf_init)(void *conf);

    /**
     * @brief Compile the node. plan->conf already holds config_map's keys;
     *        configure reads the custom keys from plan->cfg (keys never read
     *        are reported as unknown afterwards), checks the rules across
     *        fields, fills derived fields and sets the ports.
     * @returns WEIR_OK or WEIR_ERR with a placed message (weir_cfg_error).
     */
    int (*configure)(weir_plan_t *plan, char *errstr, size_t errstr_size);
    /** @brief Optional: release what configure allocated inside conf (not conf
     *  itself: the engine frees it). Accepts a half-configured conf. */
    void (*plan_destroy)(void *conf);
    /** @brief Print the compiled configuration for `weir validate` (optional). */
    void (*describe)(const weir_plan_t *plan, FILE *fp);

    /** @brief New per-task state. Never NULL (allocation failure aborts). */
    void *(*init)(const weir_plan_t *plan);
    /** @returns WEIR_OK (a rejected record is reported through em->reject, not an error). */
    int (*process)(void *ctx, const weir_record_t *in, weir_emitter_t *em);
    /** @brief The task's watermark advanced to wm (optional: NULL = nothing to do on time). */
    int (*on_watermark)(void *ctx, int64_t wm, weir_emitter_t *em);
    /**
     * @brief Write one frame (weir_w_frame_begin/end) holding all state.
     *        NULL (with restore NULL) = stateless: the engine writes an empty
     *        frame tagged with the class name at WEIR_STATELESS_SNAPSHOT_VERSION,
     *        checks it on restore, and `weir state dump` shows `{}`.
     */
    int (*snapshot)(void *ctx, weir_writer_t *w);
    /** @brief Read the frame written by snapshot; reject what it does not understand (NULL = stateless). */
    int (*restore)(void *ctx, weir_reader_t *r, char *errstr, size_t errstr_size);
    /** @brief Free ctx; accepts a half-built ctx. */
    void (*destroy)(void *ctx);
    /**
     * @brief Append the operator's whole state as one JSON value to out, for
     *        `weir state dump` (optional: NULL = not supported). Read-only.
     */
    int (*dump)(void *ctx, weir_buf_t *out);
} weir_operator_class_t;

/** @returns the class registered under name, or NULL. (operators/registry.c) */
const weir_operator_class_t *weir_operator_find(const char *name);
/** @returns the NULL-terminated list of registered classes. */
const weir_operator_class_t *const *weir_operator_list(void);
/**
 * @brief The contract a class must meet before the engine uses it: its abi is
 *        WEIR_OPERATOR_ABI; configure, init, process and destroy are set;
 *        snapshot and restore are both set or both NULL (stateless); every
 *        typed config_map entry lies inside conf_size.
 * @returns WEIR_OK or WEIR_ERR with errstr ("operator 'x': ...").
 */
int weir_operator_check(const weir_operator_class_t *cls, char *errstr, size_t errstr_size);

/**
 * @brief Compile an expression held by a config scalar, with errors placed at
 *        that scalar ("FILE:LINE:COL: node 'n': where: column 5: ...").
 */
struct weir_expr *weir_plan_expr(const weir_plan_t *plan, const weir_cfg_t *at, const char *key,
                                 const weir_rowtype_t *rt, char *errstr, size_t errstr_size);

#endif
