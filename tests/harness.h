/**
 * @file harness.h
 * @brief Integration-test helpers: start real processes (`weir broker`,
 *        `weir run`, redis-server), wait for what they print, stop them by pid.
 *        Every process started here is killed at exit even if a test fails.
 */
#ifndef WEIR_TEST_HARNESS_H
#define WEIR_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** @returns $WEIR_BIN (the weir binary) or aborts the test. */
const char *h_weir_bin(void);
/** @returns $WEIR_SRC (the repository root) or ".". */
const char *h_src(void);
/** @brief A fresh temporary directory for this test process (removed at exit). */
const char *h_tmpdir(void);
/** @brief path = tmpdir/name, in a static rotating buffer. */
const char *h_path(const char *name);

/** @brief Start argv[0] with stdout and stderr to the given files (NULL = /dev/null). */
pid_t h_spawn(char *const argv[], const char *out_path, const char *err_path);
/** @brief Send sig and wait up to timeout_ms. @returns exit status (0..255), 128+signal, or -1 on timeout. */
int h_stop(pid_t pid, int sig, int timeout_ms);
/** @brief Wait for exit up to timeout_ms. @returns as h_stop. */
int h_wait(pid_t pid, int timeout_ms);
/** @brief Wait until file contains needle (up to timeout_ms). */
bool h_wait_for_text(const char *path, const char *needle, int timeout_ms);
/** @brief Read a whole file (malloc'ed, NUL-terminated) or NULL. */
char *h_read_file(const char *path);
/** @brief Count occurrences of needle in file. */
int h_count_text(const char *path, const char *needle);

/** A `weir broker` process. */
typedef struct h_broker {
    pid_t pid;
    char bootstrap[256];
} h_broker_t;

/** @brief Start `weir broker` with extra args (e.g. "--topic", "t:4", NULL-terminated). */
void h_broker_start(h_broker_t *b, const char *const extra[]);
void h_broker_stop(h_broker_t *b);

struct rd_kafka_message_s;
/** Called for every message h_consume_topic reads. */
typedef void (*h_msg_fn)(const struct rd_kafka_message_s *m, void *arg);
/**
 * @brief Read partitions 0..partitions-1 of topic from the beginning with a
 *        plain librdkafka consumer (not weir's code), calling fn per message,
 *        until `want` messages arrived and nothing more came for a poll
 *        interval, or timeout_ms passed. @returns the number of messages read.
 */
int h_consume_topic(const char *bootstrap, const char *topic, int partitions, int want, int timeout_ms, h_msg_fn fn,
                    void *arg);

/** @brief Milliseconds since an arbitrary start. */
int64_t h_now_ms(void);

#endif
