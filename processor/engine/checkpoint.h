/**
 * @file checkpoint.h
 * @brief The checkpoint store: a task's state bytes and next input offset,
 *        written to and read back from Redis (DESIGN.md §6, issue 6).
 *
 * This module owns Redis; operators own their bytes (they come from
 * weir_task_snapshot()). It knows nothing of Kafka: the runtime decides when
 * to checkpoint, and commits offsets to Kafka after weir_ckpt_write() returns
 * WEIR_OK.
 *
 * Layout in Redis, for pipeline P, topic T, partition N, checkpoint n:
 *
 *     weir:P:T:N:latest        string "n": the checkpoint to restore
 *     weir:P:T:N:ckpt:n        hash: version, next_offset, size, crc32,
 *                              created_ms, graph_fingerprint, chunks,
 *                              chunk:0 .. chunk:k-1 (state, <= 1 MiB each)
 *     weir:P:T:N:ckpt:n:tmp:R  the same hash while it is being written
 *                              (R random; expires after an hour if abandoned)
 *
 * A write (1) WATCHes `latest` and reads it, (2) streams the state chunks into
 * the temporary hash with pipelined HSETs and waits for every reply, (3) in
 * one MULTI/EXEC writes the meta fields, renames the temporary hash to
 * ckpt:n+1 and sets latest = n+1, and (4) UNLINKs ckpt:n-1 and older. A
 * checkpoint is therefore either fully written or invisible: `latest` and the
 * ckpt:n key only appear in the EXEC, after all chunks are confirmed. The
 * previous checkpoint (n) is kept, so that exactly-once delivery can restore
 * the one whose offset matches Kafka's committed offset. If `latest` moved
 * during the write (a second process writing the same partition), the EXEC
 * is discarded and the write fails with WEIR_ERR.
 *
 * Results follow STYLE.md: WEIR_OK, WEIR_RETRY (Redis unreachable, slow,
 * loading, busy, out of memory...: the connection is dropped and re-opened by
 * the next call), WEIR_ERR (message in errstr), and for reads WEIR_CKPT_NONE.
 *
 * A weir_ckpt_t holds one Redis connection and is not thread-safe: use one per
 * thread (or guard it with a lock).
 */
#ifndef WEIR_CHECKPOINT_H
#define WEIR_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/** weir_ckpt_read(): there is no checkpoint (or not the one asked for). */
#define WEIR_CKPT_NONE 2

/** Format version written in the `version` field; a reader rejects others. */
#define WEIR_CKPT_VERSION 1
/** Largest chunk of state in one hash field (and one Redis command). */
#define WEIR_CKPT_CHUNK_SIZE (((size_t)1 << 20) - 4096)
/** Connect and command timeout, milliseconds. */
#define WEIR_CKPT_TIMEOUT_MS 2000

typedef struct weir_ckpt weir_ckpt_t;

/** Figures of the last write and read (for metrics and logs). */
typedef struct weir_ckpt_stats {
    int64_t last_write_bytes; /**< state bytes of the last successful write */
    int64_t last_write_us;    /**< its duration, microseconds (GET latest to prune) */
    int64_t last_read_bytes;  /**< state bytes of the last successful read */
    int64_t last_read_us;     /**< its duration, microseconds */
    uint64_t writes;          /**< successful writes */
    uint64_t retries;         /**< calls that returned WEIR_RETRY */
    uint64_t errors;          /**< calls that returned WEIR_ERR */
} weir_ckpt_stats_t;

/**
 * @brief Create a checkpoint store for one pipeline. Does not connect: the
 *        first call that needs Redis does (so a Redis outage at start-up is a
 *        WEIR_RETRY later, not a failure here).
 * @param url redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by
 *        default; user and password may be %-encoded; host may be [v6addr]).
 *        With a user, AUTH user password (Redis 6 ACL); without, AUTH password.
 * @param pipeline the pipeline's name (the key prefix weir:PIPELINE:).
 * @returns a new store (destroy with weir_ckpt_destroy()) or NULL with errstr
 *          set for a malformed URL.
 */
weir_ckpt_t *weir_ckpt_new(const char *url, const char *pipeline, char *errstr, size_t errstr_size);

/**
 * @brief Connect now (AUTH, SELECT), so that a refused password, user or
 *        database is a start-up error instead of a checkpoint that fails later.
 * @returns WEIR_OK; WEIR_RETRY if Redis is unreachable or busy (a passing
 *          outage: the run goes on and retries as usual); WEIR_ERR if Redis
 *          refused (WRONGPASS, NOPERM, a bad database...), with errstr.
 */
int weir_ckpt_connect(weir_ckpt_t *c, char *errstr, size_t errstr_size);

/**
 * @brief url with its password replaced by "***" (for logs), into buf.
 * @returns buf.
 */
const char *weir_ckpt_url_redact(const char *url, char *buf, size_t size);

/** @brief Close the connection and free the store (NULL is accepted). */
void weir_ckpt_destroy(weir_ckpt_t *c);

/**
 * @brief Write checkpoint latest+1 of (topic, partition).
 * @param next_offset the next input offset to read after a restore.
 * @param fingerprint the graph fingerprint (NULL is stored as "").
 * @param state, len the state bytes (borrowed; any length, 0 included).
 * @param n_out the number of the new checkpoint (on WEIR_OK).
 * @returns WEIR_OK; WEIR_RETRY if Redis is unreachable or slow (nothing
 *          became visible; call again later); WEIR_ERR otherwise (errstr).
 */
int weir_ckpt_write(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t next_offset, const char *fingerprint,
                    const void *state, size_t len, int64_t *n_out, char *errstr, size_t errstr_size);

/**
 * @brief Read checkpoint `latest` (n_want <= 0) or checkpoint n_want, and
 *        verify its version, size and CRC-32.
 * @param n_out, next_offset the checkpoint's number and stored offset.
 * @param fingerprint if not NULL, receives the stored graph fingerprint
 *        (malloc'ed; the caller frees it).
 * @param state receives the state bytes (reset first; the caller frees it
 *        with weir_buf_free()).
 * @returns WEIR_OK; WEIR_CKPT_NONE if there is no checkpoint (or no
 *          checkpoint n_want); WEIR_RETRY if Redis is unreachable or slow;
 *          WEIR_ERR if the checkpoint is corrupt, truncated or of an unknown
 *          version (errstr names the Redis key).
 */
int weir_ckpt_read(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                   int64_t *next_offset, char **fingerprint, weir_buf_t *state, char *errstr, size_t errstr_size);

/** One checkpoint of the pipeline, as weir_ckpt_list() finds it. */
typedef struct weir_ckpt_info {
    char *topic; /**< owned */
    int32_t partition;
    int64_t n; /**< checkpoint number */
    int64_t next_offset;
    int64_t size;       /**< state bytes */
    int64_t created_ms; /**< wall clock at write, epoch ms */
    bool latest;        /**< it is the partition's `latest` */
} weir_ckpt_info_t;

/**
 * @brief List every checkpoint of the pipeline (SCAN, never KEYS), sorted by
 *        topic, partition and number. Hashes without meta are skipped.
 * @param out receives an array of *count entries (free with weir_ckpt_info_free()).
 * @returns WEIR_OK, WEIR_RETRY or WEIR_ERR.
 */
int weir_ckpt_list(weir_ckpt_t *c, weir_ckpt_info_t **out, int *count, char *errstr, size_t errstr_size);

/**
 * @brief Delete every key of the pipeline (weir:PIPELINE:*, found with SCAN,
 *        removed with UNLINK). Not atomic: run it with the pipeline stopped.
 * @param deleted receives the number of keys removed.
 * @returns WEIR_OK, WEIR_RETRY or WEIR_ERR.
 */
int weir_ckpt_delete_all(weir_ckpt_t *c, int64_t *deleted, char *errstr, size_t errstr_size);

/** @brief Free what weir_ckpt_list() returned. */
void weir_ckpt_info_free(weir_ckpt_info_t *infos, int count);

/** One field of a checkpoint hash, as stored (see weir_ckpt_meta()). */
typedef struct weir_ckpt_field {
    char *name;  /**< owned */
    char *value; /**< owned; NULL if it vanished between the two reads */
} weir_ckpt_field_t;

/**
 * @brief The raw meta fields of checkpoint `latest` (n_want <= 0) or n_want:
 *        every field of the hash but the chunks, unverified (for `weir state
 *        dump`, which must show a corrupt checkpoint too).
 * @param fields receives *count fields (free with weir_ckpt_fields_free()).
 * @returns WEIR_OK, WEIR_CKPT_NONE, WEIR_RETRY or WEIR_ERR.
 */
int weir_ckpt_meta(weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n_want, int64_t *n_out,
                   weir_ckpt_field_t **fields, int *count, char *errstr, size_t errstr_size);

/** @brief Free what weir_ckpt_meta() returned. */
void weir_ckpt_fields_free(weir_ckpt_field_t *fields, int count);

/** @returns the store's figures (valid until weir_ckpt_destroy()). */
const weir_ckpt_stats_t *weir_ckpt_stats(const weir_ckpt_t *c);

/**
 * @brief Name of a key of (topic, partition) into buf: n > 0 gives the
 *        checkpoint hash ...:ckpt:n, n == 0 the `latest` pointer.
 */
void weir_ckpt_key(const weir_ckpt_t *c, const char *topic, int32_t partition, int64_t n, char *buf, size_t size);

/* ---- test-only ---------------------------------------------------------- */

/**
 * Called by weir_ckpt_write() after each chunk's reply (chunk = its index) and
 * once more just before MULTI (chunk = -1). A non-zero return abandons the
 * write there, as if the process had died: the connection is closed, nothing
 * is committed, and the write returns WEIR_RETRY.
 */
typedef int (*weir_ckpt_hook_fn)(void *opaque, int chunk);

/** @brief Install (or with NULL remove) the write hook. For tests. */
void weir_ckpt_set_write_hook(weir_ckpt_t *c, weir_ckpt_hook_fn fn, void *opaque);

#endif
