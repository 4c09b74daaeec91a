/**
 * @file murmur2.h
 * @brief Kafka's key hash: the murmur2 variant of the Java client's
 *        `Utils.murmur2` (seed 0x9747b28c), and the partition the Java
 *        default partitioner (and kafkajs, librdkafka's `murmur2_random`)
 *        gives a key: `(murmur2(key) & 0x7fffffff) % partitions`.
 *        Weir's repartition topics place records with it, so a topic weir
 *        writes is co-partitioned with topics Java clients write.
 */
#ifndef WEIR_MURMUR2_H
#define WEIR_MURMUR2_H

#include <stddef.h>
#include <stdint.h>

/** @returns Kafka's murmur2 of n bytes, as the Java client's signed int. */
int32_t weir_murmur2(const void *key, size_t n);

/** @returns the partition (0 .. partitions-1) of a key under the Java default partitioner. */
static inline int32_t weir_murmur2_partition(const void *key, size_t n, int32_t partitions) {
    return (int32_t)(((uint32_t)weir_murmur2(key, n) & 0x7fffffffu) % (uint32_t)partitions);
}

#endif
