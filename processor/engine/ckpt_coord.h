/**
 * @file ckpt_coord.h
 * @brief The checkpoint coordinator: the order of a checkpoint round and the
 *        policy when the store is down, with no Kafka or Redis in it.
 *
 * A round covers a set of participants (one per task: its next input offset,
 * what was last committed, what the last checkpoint stored) and does, between
 * two records:
 *
 *     flush outputs (once, before the first participant with progress)
 *     for each participant with progress: snapshot -> write checkpoint
 *     commit the next offsets of the participants whose checkpoint is written
 *
 * so that an offset is committed only when the outputs before it are
 * acknowledged and its state is stored (docs/checkpoints.md). The I/O is done
 * by the caller's callbacks (weir_ckpt_coord_ops_t); the Kafka runtime binds
 * them to librdkafka and Redis (kafka_ckpt.c), a unit test to fakes.
 *
 * Store outage: a write that returns WEIR_RETRY ends the round, the
 * coordinator pauses consumption (ops->pause) and retries after a back-off of
 * 0.5 s, doubled on each failure up to 8 s; the first round that succeeds
 * resumes consumption.
 */
#ifndef WEIR_CKPT_COORD_H
#define WEIR_CKPT_COORD_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/** First retry delay after the store failed: long enough not to hammer a restarting Redis, short enough
 *  that a blip costs half a second of consumption. */
#define WEIR_CKPT_BACKOFF_MIN_MS 500
/** Longest retry delay: a Redis that is back is noticed within 8 s, and an outage costs at most one
 *  attempt (one log line) per 8 s. */
#define WEIR_CKPT_BACKOFF_MAX_MS 8000

/** @returns the delay after `ms` (0: the first failure): 500, 1000, 2000, 4000, 8000, 8000... */
int weir_ckpt_backoff_next(int ms);

/** One participant of a round: a task's offsets. Owned by the caller. */
typedef struct weir_ckpt_part {
    int64_t next_offset; /**< next input offset to read; -1: unknown (nothing to do) */
    int64_t committed;   /**< the next_offset last committed, -1 none; set by the coordinator */
    int64_t ckpt_offset; /**< the next_offset the last checkpoint stored, -1 none; set by the coordinator */
    void *task;          /**< the caller's task, for its callbacks */
} weir_ckpt_part_t;

/** The coordinator's I/O, all called on the caller's thread. `opaque` is weir_ckpt_coord_new's. */
typedef struct weir_ckpt_coord_ops {
    /** Hand every output produced so far to the broker and wait for its acknowledgement.
     *  @returns WEIR_OK, or WEIR_ERR (the run cannot go on). */
    int (*flush)(void *opaque);
    /** Snapshot part->task's state into buf (emptied by the coordinator). NULL: no checkpoints.
     *  @returns WEIR_OK or WEIR_ERR (logged by the callback). */
    int (*snapshot)(void *opaque, weir_ckpt_part_t *part, weir_buf_t *buf);
    /** Store the snapshot with part->next_offset. NULL: no checkpoints.
     *  @returns WEIR_OK; WEIR_RETRY (store unavailable: errstr says why); WEIR_ERR (logged by the callback). */
    int (*write)(void *opaque, weir_ckpt_part_t *part, const weir_buf_t *snap, char *errstr, size_t errstr_size);
    /** Commit parts[i]->next_offset for i < n (in a transaction: n may be 0, the outputs still commit).
     *  @returns WEIR_OK (the coordinator then sets each part's committed), WEIR_RETRY (try again next
     *  round), WEIR_ERR (the run cannot go on). */
    int (*commit)(void *opaque, weir_ckpt_part_t *const *parts, int n);
    /** Pause (true) or resume (false) consumption of every assigned input. */
    void (*pause)(void *opaque, bool pause);
    /** The clock in ns (monotonic); NULL: weir_now_ns. */
    int64_t (*now_ns)(void *opaque);
} weir_ckpt_coord_ops_t;

typedef struct weir_ckpt_coord weir_ckpt_coord_t;

/**
 * @brief A coordinator that runs a round every interval_ms.
 * @param ops copied; snapshot and write both NULL: offsets are committed without checkpoints
 * @param transactional commit only when every checkpoint of the round is written, and commit every round
 *        (exactly-once: the commit also commits the round's outputs); otherwise the offsets whose checkpoint
 *        is written commit even when a later one failed, and a round with no offset to commit commits nothing
 * @param now_ns start time: the first round is due interval_ms later
 */
weir_ckpt_coord_t *weir_ckpt_coord_new(const weir_ckpt_coord_ops_t *ops, void *opaque, bool transactional,
                                       int64_t interval_ms, int64_t now_ns);
void weir_ckpt_coord_destroy(weir_ckpt_coord_t *c);

/** @returns whether a round is due at now_ns: the interval passed, or (paused) the back-off did. */
bool weir_ckpt_coord_due(const weir_ckpt_coord_t *c, int64_t now_ns);

/**
 * @brief Flush, checkpoint and commit the participants (see the file comment), without the outage
 *        policy: for a revocation or the final checkpoint.
 * @returns WEIR_OK; WEIR_RETRY (a checkpoint or a commit could not be made now); WEIR_ERR (fatal).
 */
int weir_ckpt_coord_commit(weir_ckpt_coord_t *c, weir_ckpt_part_t *const *parts, int n);

/**
 * @brief A scheduled round: weir_ckpt_coord_commit, then the outage policy (a store failure pauses and
 *        backs off, a success resumes). The next round is due an interval after now_ns.
 * @returns weir_ckpt_coord_commit's result.
 */
int weir_ckpt_coord_round(weir_ckpt_coord_t *c, weir_ckpt_part_t *const *parts, int n, int64_t now_ns);

/** @returns whether consumption is paused by a store outage. */
bool weir_ckpt_coord_paused(const weir_ckpt_coord_t *c);
/** @returns the current back-off in ms (0 when the store is fine). */
int weir_ckpt_coord_backoff_ms(const weir_ckpt_coord_t *c);
/** @returns when (ns) the next retry is due while paused. */
int64_t weir_ckpt_coord_retry_at(const weir_ckpt_coord_t *c);

#endif
