/**
 * @file kafka_admin.h
 * @brief Topic administration for weir's internal (repartition) topics:
 *        partition counts from metadata, and creation through the Admin API
 *        (rd_kafka_CreateTopics) when a topic is missing.
 */
#ifndef WEIR_KAFKA_ADMIN_H
#define WEIR_KAFKA_ADMIN_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/**
 * @brief The partition count of topic from the cluster's metadata.
 * @returns the count, 0 when the topic does not exist, or -1 with errstr when
 *          the metadata could not be read within timeout_ms.
 */
int weir_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr, size_t errstr_size);

/**
 * @brief Make sure topic exists with exactly `partitions` partitions: an
 *        existing topic is checked (another count is an error: weir never
 *        changes a topic's partitioning, which would move keys); a missing one
 *        is created with rd_kafka_CreateTopics (replication factor: the
 *        broker's default) and waited for in the metadata.
 * @returns WEIR_OK, or WEIR_ERR with errstr naming the topic and what to do.
 */
int weir_kafka_ensure_topic(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms, char *errstr,
                            size_t errstr_size);

#endif
