/**
 * @file metrics.h
 * @brief Prometheus metrics of a `weir run` process on --metrics-port.
 *
 * The run loop updates the counters (relaxed atomics: one writer, the loop);
 * a small HTTP thread answers `GET /metrics` in the Prometheus text format.
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct weir_metrics {
    _Atomic uint64_t records_in;            /**< records read from the source */
    _Atomic uint64_t records_out;           /**< records written to sinks */
    _Atomic uint64_t dead_lettered;         /**< records sent to the dead-letter topic */
    _Atomic uint64_t checkpoints;           /**< checkpoints written to Redis */
    _Atomic uint64_t checkpoint_failures;   /**< checkpoint attempts that failed */
    _Atomic uint64_t checkpoint_last_bytes; /**< size of the last checkpoint */
    _Atomic uint64_t checkpoint_last_us;    /**< duration of the last checkpoint write */
    _Atomic uint64_t paused;                /**< 1 while consumption is paused (Redis unavailable) */
    _Atomic uint64_t partitions;            /**< partitions assigned to this process */
    _Atomic int64_t watermark_delay_ms;     /**< wall clock minus the smallest task watermark */
    /** The pipeline whose nodes' stats (weir_node_stats_t, per-node counters such as
     *  weir_evicted_keys_total) are rendered; NULL = none. Set before serving. */
    const struct weir_pipeline *pl;
} weir_metrics_t;

typedef struct weir_metrics_server weir_metrics_server_t;

/** @brief Serve m on 0.0.0.0:port (port 0: pick one; *bound gets it). NULL with errstr on failure. */
weir_metrics_server_t *weir_metrics_serve(weir_metrics_t *m, const char *pipeline, int port, int *bound, char *errstr,
                                          size_t errstr_size);
void weir_metrics_stop(weir_metrics_server_t *s);

#endif
