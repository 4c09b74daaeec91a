/*
 * processor/spsc.h - a single-producer single-consumer ring of variable-size
 * entries between two threads, with blocking waits that cost nothing while
 * both sides are busy (a waiter flag; the other side signals only when it is
 * set). The Kafka runtime hands encoded outputs from its worker thread to
 * its producer hand-off thread through one.
 */
#ifndef WEIR_SPSC_H
#define WEIR_SPSC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct weir_spsc weir_spsc_t;

/** @brief A ring of cap bytes (rounded up to a power of two, at least 4096). */
weir_spsc_t *weir_spsc_new(size_t cap);
void weir_spsc_destroy(weir_spsc_t *q);

/** @returns the largest entry the ring can hold. */
size_t weir_spsc_max_entry(const weir_spsc_t *q);

/**
 * @brief Producer: room for an entry of n bytes (n <= weir_spsc_max_entry),
 * waiting while the ring is full. The entry is invisible to the consumer until
 * weir_spsc_push. @returns 8-byte aligned memory.
 */
void *weir_spsc_reserve(weir_spsc_t *q, size_t n);
/** @brief Producer: publish the entry reserved last. */
void weir_spsc_push(weir_spsc_t *q);
/** @brief Producer: wait until the consumer has popped every entry. */
void weir_spsc_drain(weir_spsc_t *q);

/** @brief Consumer: the oldest entry and its size, or NULL when empty (no wait). */
const void *weir_spsc_peek(weir_spsc_t *q, size_t *n);
/** @brief Consumer: release the entry returned by the last peek. */
void weir_spsc_pop(weir_spsc_t *q);
/** @brief Consumer: wait up to timeout_ms for an entry (or a wake). @returns true if one is there. */
bool weir_spsc_wait(weir_spsc_t *q, int timeout_ms);
/** @brief Wake a consumer waiting in weir_spsc_wait (e.g. to make it stop). */
void weir_spsc_wake(weir_spsc_t *q);

#endif
