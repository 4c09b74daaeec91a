/**
 * @file runtime.h
 * @brief Running a compiled pipeline: over Kafka as a consumer-group member,
 *        or over JSON-lines files (same graph, same operators).
 */
#ifndef WEIR_RUNTIME_H
#define WEIR_RUNTIME_H

#include <signal.h>
#include <stdbool.h>

#include "pipeline.h"

typedef struct weir_run_opts {
    const char *brokers;            /**< bootstrap servers (overrides the file) */
    const char *input;              /**< file mode: JSON-lines input ("-" = stdin) */
    const char *output;             /**< file mode: JSON-lines output ("-" = stdout) */
    const char *dead_letter;        /**< file mode: dead-letter JSON-lines file */
    bool until_end;                 /**< Kafka: stop at the end offsets seen at start */
    int64_t duration_ms;            /**< stop after this long (0 = no limit) */
    int64_t commit_interval_ms;     /**< Kafka: offset commit interval */
    const char *group_id;           /**< overrides source.kafka.group_id */
    const char *instance;           /**< name used in logs (default host:pid) */
    bool quiet;                     /**< no summary line */
    const char *redis;              /**< checkpoint store URL (overrides checkpoint.redis) */
    int64_t checkpoint_interval_ms; /**< overrides checkpoint.interval (0 = the file's) */
    const char *reset_state;        /**< --reset-state NODE[,NODE] | all */
    int metrics_port;               /**< serve Prometheus metrics here (-1 = off, 0 = any free port) */
    bool inline_produce;            /**< Kafka: produce on the worker thread (no hand-off thread) */
    volatile int *stop;             /**< optional extra stop flag (the demo's restart) */
    int nprops;                     /**< -X key=value consumer properties */
    char **props;
} weir_run_opts_t;

/** @brief Install SIGINT/SIGTERM handlers that set weir_stop. */
void weir_install_signals(void);

/** @returns process exit code (0 ok). */
int weir_run_file(const weir_pipeline_t *pl, const weir_run_opts_t *o);
int weir_run_kafka(const weir_pipeline_t *pl, const weir_run_opts_t *o);

/**
 * @brief Set rec->ts from the source's event-time field, or leave the given
 *        fallback (the Kafka timestamp). Also sets rec->key from the key field.
 * @returns WEIR_OK, or WEIR_ERR with reason (null or unparsable event time, or
 *          one outside (-2^60, 2^60) ms: the range in which the watermark and
 *          window arithmetic cannot overflow; the window operator has the same limit).
 */
int weir_source_stamp(const weir_source_spec_t *src, weir_record_t *rec, int64_t fallback_ts, char *reason,
                      size_t reason_size);

/** @brief Parse an ISO-8601 timestamp ("2026-11-25T12:00:00.5Z", "+01:00" offsets) to epoch ms. */
int weir_parse_iso8601(const char *s, size_t n, int64_t *ms);

/**
 * @brief The one-line run summary on stderr. records_per_s = in / elapsed_s;
 *        `interval` names what elapsed_s measures (the benchmarks time their
 *        baselines over the same interval): Kafka mode
 *        "first_record..last_output_acked" (group join and the end-of-input
 *        wait excluded), file mode "start..last_output_written" (from opening the files).
 */
void weir_print_summary(uint64_t in, uint64_t out, uint64_t dead, double elapsed_s, const char *interval);

#endif
