/**
 * @file common.h
 * @brief Result codes, logging and small helpers shared by every part of weir.
 *
 * Anything that touches I/O returns one of three results (STYLE.md rule 4):
 * WEIR_OK, WEIR_RETRY (back-pressure or a passing outage: try again later)
 * or WEIR_ERR (a real error; the message is in the caller's errstr buffer).
 * Configuration errors come back in an `errstr` buffer the caller passes,
 * as in librdkafka.
 */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WEIR_OK 0
#define WEIR_RETRY 1
#define WEIR_ERR (-1)

#define WEIR_ERRSTR_SIZE 512

#define WEIR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define WEIR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define WEIR_UNUSED __attribute__((unused))
#else
#define WEIR_PRINTF(f, a)
#define WEIR_UNUSED
#endif

/** Log levels, as syslog numbers them. */
enum { WEIR_LOG_ERR = 3, WEIR_LOG_WARN = 4, WEIR_LOG_INFO = 6, WEIR_LOG_DEBUG = 7 };

/** Current log threshold (default WEIR_LOG_INFO); set from --log-level. */
extern int weir_log_level;

/** @brief Structured log line to stderr: `ts level component: message`. */
void weir_log(int level, const char *component, const char *fmt, ...) WEIR_PRINTF(3, 4);

/** @brief snprintf into errstr and return WEIR_ERR (for `return weir_err(...)`). */
int weir_err(char *errstr, size_t errstr_size, const char *fmt, ...) WEIR_PRINTF(3, 4);

/** @brief Allocation that aborts on failure (out-of-memory is not recoverable here). */
void *weir_malloc(size_t n);
void *weir_calloc(size_t n, size_t size);
void *weir_realloc(void *p, size_t n);
char *weir_strdup(const char *s);
char *weir_strndup(const char *s, size_t n);

/** @brief Monotonic clock in nanoseconds and wall clock in epoch milliseconds. */
/**
 * Set by the SIGINT/SIGTERM handlers (processor/engine/runtime.c): the run loops stop cleanly, and every loop
 * that may run long (the window's firing, k-means at end of input, the file-mode loop) checks it and returns
 * early, so a stop takes effect within a second whatever an operator is doing. An operator that returns early
 * leaves consistent state: what it did not fire yet fires at the next watermark.
 */
extern volatile sig_atomic_t weir_stop;

int64_t weir_now_ns(void);
int64_t weir_now_ms(void);

/**
 * @brief Parse a duration such as "10s", "500ms", "2m", "1h", "1d" or a bare
 *        number of milliseconds.
 * @returns WEIR_OK and *ms, or WEIR_ERR for a malformed string.
 */
int weir_parse_duration(const char *s, int64_t *ms);

/** @brief A growable byte buffer. */
typedef struct weir_buf {
    uint8_t *p; /**< bytes, owned */
    size_t len; /**< bytes used */
    size_t cap; /**< bytes allocated */
} weir_buf_t;

void weir_buf_reserve(weir_buf_t *b, size_t extra);

/** Largest pipeline file (YAML) and schema file (.avsc) weir reads (README.md, "Limits"). */
#define WEIR_MAX_CONFIG_FILE ((size_t)4 << 20)
/** Longest line of a JSON-lines input (file mode, weir produce --file); a longer one is dead-lettered. */
#define WEIR_MAX_INPUT_LINE ((size_t)16 << 20)

/**
 * @brief Open a regular file for reading; anything else (a device such as /dev/zero, a FIFO, a directory) is
 *        refused, without blocking on a FIFO. "-" is not special here.
 * @returns the stream (the caller fcloses it), or NULL with errstr naming the file.
 */
FILE *weir_open_regular(const char *path, char *errstr, size_t errstr_size);

/**
 * @brief Read a whole regular file of at most max bytes into a NUL-terminated buffer (weir_open_regular).
 * @returns the text (the caller frees it) and its length in *len, or NULL with errstr naming the file and the
 *          limit when it is larger.
 */
char *weir_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errstr_size);

/**
 * @brief getline() with a bound: reads one line into *line (grown as needed, at most max + 1 bytes); a line
 *        longer than max is consumed up to its newline and reported with *too_long set (the first max bytes
 *        are kept).
 * @returns the bytes kept (without the newline), or -1 at end of input / on a read error (ferror tells).
 */
ssize_t weir_getline_max(char **line, size_t *cap, FILE *fp, size_t max, bool *too_long);
void weir_buf_append(weir_buf_t *b, const void *p, size_t n);
void weir_buf_putc(weir_buf_t *b, char c);
void weir_buf_puts(weir_buf_t *b, const char *s);
void weir_buf_printf(weir_buf_t *b, const char *fmt, ...) WEIR_PRINTF(2, 3);
void weir_buf_free(weir_buf_t *b);
static inline void weir_buf_reset(weir_buf_t *b) { b->len = 0; }

/** @brief CRC-32 (IEEE, as zlib computes it) of n bytes, continuing from crc (start with 0). */
uint32_t weir_crc32(uint32_t crc, const void *p, size_t n);

#endif
