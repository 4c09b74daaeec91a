/**
 * @file produce.h
 * @brief The synthetic sensor-reading generator behind `weir produce` and `weir demo`.
 */
#ifndef WEIR_PRODUCE_H
#define WEIR_PRODUCE_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

typedef struct weir_produce_opts {
    const char *brokers;
    const char *topic;
    int64_t count; /**< records to send; <= 0: until stopped */
    double rate;   /**< records per second; 0 = as fast as possible */
    weir_format_t format;
    const char *schema;      /**< .avsc of the records (default schemas/sensor_reading.avsc) */
    int sensors;             /**< distinct sensor ids */
    int64_t malformed_every; /**< every Nth record is garbage (0 = never) */
    uint64_t seed;
    int64_t start_ts; /**< event time of record 0 (0 = now); later records +step_ms */
    int64_t step_ms;
    const char *file; /**< send the lines of this JSON-lines file instead */
    bool quiet;
    bool no_key;        /**< send null message keys (spread over the partitions, as many producers do) */
    volatile int *stop; /**< optional extra stop flag */
} weir_produce_opts_t;

/** @brief Produce as configured. @returns 0, or 1 with an error logged. */
int weir_produce_run(const weir_produce_opts_t *o);

/** @brief Fill rec (row type of sensor_reading.avsc) with reading number i. Deterministic in (seed, i). */
void weir_gen_sensor_reading(uint64_t seed, int64_t i, int sensors, int64_t ts, weir_record_t *rec);

#endif
