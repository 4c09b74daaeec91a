/* Logging, allocation, time, durations, buffers and CRC-32. */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

int weir_log_level = WEIR_LOG_INFO;

void weir_log(int level, const char *component, const char *fmt, ...) {
    if (level > weir_log_level)
        return;
    static const char *names[8] = {"EMERG", "ALERT", "CRIT", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG"};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level & 7], component);
    va_list ap;
    va_start(ap, fmt);
    if (n < (int)sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so that lines of several threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}

int weir_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return WEIR_ERR;
}

static void oom(size_t n) {
    fprintf(stderr, "weir: out of memory allocating %zu bytes\n", n);
    abort();
}

void *weir_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *weir_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *weir_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *weir_strdup(const char *s) { return weir_strndup(s, strlen(s)); }

char *weir_strndup(const char *s, size_t n) {
    char *p = weir_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int64_t weir_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t weir_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

volatile sig_atomic_t weir_stop = 0;

int weir_parse_duration(const char *s, int64_t *ms) {
    if (!s || !*s)
        return WEIR_ERR;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return WEIR_ERR;
    while (*end == ' ')
        end++;
    double mult;
    if (!*end || !strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s"))
        mult = 1000;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else if (!strcmp(end, "d"))
        mult = 86400000;
    else
        return WEIR_ERR;
    double r = v * mult;
    if (!(r <= 9.0e15)) /* also NaN ("nan s"), whose conversion below would be undefined */
        return WEIR_ERR;
    *ms = (int64_t)(r + 0.5);
    return WEIR_OK;
}

void weir_buf_reserve(weir_buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->p = weir_realloc(b->p, cap);
    b->cap = cap;
}

void weir_buf_append(weir_buf_t *b, const void *p, size_t n) {
    weir_buf_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void weir_buf_putc(weir_buf_t *b, char c) {
    weir_buf_reserve(b, 1);
    b->p[b->len++] = (uint8_t)c;
}

void weir_buf_puts(weir_buf_t *b, const char *s) { weir_buf_append(b, s, strlen(s)); }

void weir_buf_printf(weir_buf_t *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        weir_buf_append(b, tmp, (size_t)n);
        return;
    }
    weir_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void weir_buf_free(weir_buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* CRC-32 (IEEE 802.3, reflected, as zlib): slicing-by-8 tables, 8 bytes per step. */
static uint32_t crc_table[8][256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t weir_crc32(uint32_t crc, const void *p, size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const uint8_t *b = p;
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        uint32_t hi = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
              crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        b += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_table[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

FILE *weir_open_regular(const char *path, char *errstr, size_t errstr_size) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        weir_err(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        weir_err(errstr, errstr_size, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        weir_err(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return fp;
}

char *weir_read_file(const char *path, size_t max, size_t *len, char *errstr, size_t errstr_size) {
    FILE *fp = weir_open_regular(path, errstr, errstr_size);
    if (!fp)
        return NULL;
    struct stat st;
    if (!fstat(fileno(fp), &st) && (uint64_t)st.st_size > max) {
        weir_err(errstr, errstr_size, "%s: %lld bytes, more than the limit of %zu bytes for this file", path,
                 (long long)st.st_size, max);
        fclose(fp);
        return NULL;
    }
    /* Read at most max + 1 bytes: a file that grew after fstat is still caught. */
    char *buf = weir_malloc(max + 2);
    size_t n = fread(buf, 1, max + 1, fp);
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr || n > max) {
        if (rerr)
            weir_err(errstr, errstr_size, "%s: read error", path);
        else
            weir_err(errstr, errstr_size, "%s: more than the limit of %zu bytes for this file", path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

ssize_t weir_getline_max(char **line, size_t *cap, FILE *fp, size_t max, bool *too_long) {
    size_t n = 0;
    int ch = EOF;
    *too_long = false;
    while ((ch = getc_unlocked(fp)) != EOF && ch != '\n') {
        if (n >= max) { /* too long: consume the rest of the line without keeping it */
            *too_long = true;
            continue;
        }
        if (n + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            *line = weir_realloc(*line, nc > max + 1 ? max + 1 : nc);
            *cap = nc > max + 1 ? max + 1 : nc;
        }
        (*line)[n++] = (char)ch;
    }
    if (ch == EOF && n == 0 && !*too_long)
        return -1;
    if (n + 1 > *cap) {
        *line = weir_realloc(*line, n + 1);
        *cap = n + 1;
    }
    (*line)[n] = '\0';
    return (ssize_t)n;
}
