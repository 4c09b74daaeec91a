/**
 * @file pipeline.h
 * @brief A pipeline file compiled into an operator graph (DESIGN.md §1).
 *
 * weir_pipeline_load() parses the YAML, loads the schemas, compiles every
 * node in dependency order (so `input:` may name a node defined further
 * down), checks that the graph is a DAG, and resolves every sink. The result
 * is read-only and shared by all tasks.
 */
#ifndef WEIR_PIPELINE_H
#define WEIR_PIPELINE_H

#include "codec.h"
#include "config.h"
#include "operator.h"

#define WEIR_SOURCE (-1) /* input node index meaning "the source" */

typedef struct weir_edge_list {
    int n;
    int *items;
} weir_edge_list_t;

typedef struct weir_node {
    weir_plan_t plan;
    int stage;                              /**< index into pl->stages */
    int input_node;                         /**< index of the upstream node or WEIR_SOURCE */
    int input_port;                         /**< its port */
    weir_edge_list_t nodes[WEIR_MAX_PORTS]; /**< downstream nodes per output port */
    weir_edge_list_t sinks[WEIR_MAX_PORTS]; /**< sinks per output port */
} weir_node_t;

typedef struct weir_sink_spec {
    const weir_cfg_t *cfg;
    char *label;              /**< "node" or "node.port": the `node` field in file mode */
    int node, port;           /**< what it reads */
    const weir_rowtype_t *rt; /**< row type of what it reads */
    const char *topic;        /**< Kafka topic */
    weir_format_t format;
    weir_schema_t *schema; /**< AVRO: owned */
    bool confluent;
    const weir_cfg_t *properties; /**< librdkafka producer properties or NULL */
} weir_sink_spec_t;

typedef struct weir_source_spec {
    const weir_cfg_t *cfg;
    int ntopics;
    const char **topics;
    const char *group_id; /**< default: the pipeline name */
    weir_format_t format;
    weir_schema_t *schema;    /**< owned; JSON may use one too, for the types */
    const weir_rowtype_t *rt; /**< the source's row type */
    bool confluent;
    const weir_cfg_t *properties; /**< librdkafka consumer properties or NULL */
    int event_time_slot;          /**< slot of the event-time field, or -1: Kafka timestamp */
    int key_slot;                 /**< slot used as record key when the message has none, or -1 */
    int64_t max_out_of_orderness_ms;
    int64_t idle_timeout_ms;    /**< 0 = never */
    int64_t max_future_ms;      /**< dead-letter event times further ahead of processing time; 0 = off */
    const char *partitioned_by; /**< `partitioned_by:` key expression the producer keyed by, or NULL */
} weir_source_spec_t;

/**
 * A stage: the nodes that run in one task, fed either by the source (stage
 * 0) or by a repartition topic that upstream tasks write, keyed by the stage
 * head's key (Kafka Streams' sub-topologies; docs/keyby.md).
 */
typedef struct weir_stage {
    int head;                         /**< first node (its input crosses the repartition); -1 for stage 0 */
    int upstream;                     /**< the stage that feeds it; -1 for stage 0 */
    weir_partitioning_t partitioning; /**< how its records are partitioned (stage 0: ANY unless declared) */
    const struct weir_key_spec *key;  /**< KEY: the head's key, evaluated upstream for the message key */
    const char *key_src;              /**< key expression text (stage 0: partitioned_by), NULL: the record key */
    char *topic;                      /**< repartition topic (owned); NULL for stage 0 */
    int partitions;                   /**< its partition count; 0: the largest input topic's count at run time */
} weir_stage_t;
/** Output delivery guarantee (`delivery:`), decided once by the compiler. */
typedef enum weir_delivery {
    WEIR_AT_LEAST_ONCE = 0, /**< default: outputs may repeat after a crash (with the same ids) */
    WEIR_EXACTLY_ONCE,      /**< Kafka transactions: outputs and input offsets commit together */
} weir_delivery_t;

typedef struct weir_pipeline {
    int nstages;                /**< 1 + the repartitions */
    weir_stage_t *stages;       /**< owned */
    int repartition_partitions; /**< `repartition_partitions:`, 0 = default */
    weir_cfg_t *root;           /**< the parsed file; owned */
    const char *path;
    const char *name; /**< `pipeline:` */
    weir_source_spec_t source;
    int nnodes;
    weir_node_t *nodes;
    int *order; /**< topological order of node indices */
    int nsinks;
    weir_sink_spec_t *sinks;
    const char *dead_letter_topic; /**< default "<pipeline>.dlq" */
    char *dead_letter_owned;
    /* checkpoint (issue 6) */
    const char *redis_url; /**< NULL: no checkpoints */
    int64_t checkpoint_interval_ms;
    weir_delivery_t delivery;
} weir_pipeline_t;

/**
 * @brief Load and compile a pipeline file. Schema paths are resolved relative
 *        to the current directory first, then to the pipeline file's folder.
 * @returns the pipeline or NULL with errstr set to "FILE:LINE:COL: message".
 */
weir_pipeline_t *weir_pipeline_load(const char *path, char *errstr, size_t errstr_size);
/** @brief Same, from YAML text (`name` stands for the path in messages). */
weir_pipeline_t *weir_pipeline_load_string(const char *name, const char *yaml, char *errstr, size_t errstr_size);
void weir_pipeline_destroy(weir_pipeline_t *pl);

/** @brief Print the compiled graph with resolved fields and types (`weir validate`). */
void weir_pipeline_print(const weir_pipeline_t *pl, FILE *fp);

/**
 * @brief Compile one node the way the pipeline compiler does: allocate
 *        plan->conf (the class's conf_size, zeroed), conf_init, apply the
 *        class's config_map (types, defaults, required keys; errors placed at
 *        file:line:col), then call configure. plan->cls and plan->cfg (and
 *        input, name) must be set. Release with weir_plan_release, also
 *        after an error.
 * @returns WEIR_OK or WEIR_ERR with errstr.
 */
int weir_plan_configure(weir_plan_t *plan, char *errstr, size_t errstr_size);
/** @brief plan_destroy(conf), then free conf (the engine owns it); plan->conf becomes NULL. */
void weir_plan_release(weir_plan_t *plan);

/** @brief Print the stages and their repartition topics (part of weir_pipeline_print). */
void weir_pipeline_print_stages(const weir_pipeline_t *pl, FILE *fp);
/** @returns "at_least_once" or "exactly_once", the spelling of `delivery:`. */
const char *weir_delivery_name(weir_delivery_t d);

/** @returns the node index by name, or -1. */
int weir_pipeline_find_node(const weir_pipeline_t *pl, const char *name);

/**
 * @brief The graph fingerprint stored with every checkpoint:
 *        "name=op:crc;name=op:crc;..." in file order, where crc covers the
 *        node's whole configuration (input included) in canonical form.
 *        Sinks are not part of it: adding or changing a sink keeps state.
 *        Returns a malloc'ed string.
 */
char *weir_pipeline_fingerprint(const weir_pipeline_t *pl);

#endif
