/* JSON output: string escaping and values (see json.h). */
#include "json.h"

#include "numfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";

/* Length of a valid UTF-8 sequence at p (n bytes available), or 0 if invalid. */
size_t weir_utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0xC2)
        return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) {
        if (n < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* Append a control or other escaped byte. */
static void put_escape(weir_buf_t *out, uint8_t c) {
    char e[6];
    switch (c) {
    case '"': weir_buf_append(out, "\\\"", 2); return;
    case '\\': weir_buf_append(out, "\\\\", 2); return;
    case '\n': weir_buf_append(out, "\\n", 2); return;
    case '\r': weir_buf_append(out, "\\r", 2); return;
    case '\t': weir_buf_append(out, "\\t", 2); return;
    case '\b': weir_buf_append(out, "\\b", 2); return;
    case '\f': weir_buf_append(out, "\\f", 2); return;
    default:
        e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0';
        e[4] = hexdig[c >> 4], e[5] = hexdig[c & 15];
        weir_buf_append(out, e, 6);
        return;
    }
}

static inline bool json_plain(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* Strings: valid UTF-8 is copied; an invalid byte becomes U+FFFD, so the
 * output is always valid JSON that a strict reader accepts. */
void weir_json_append_str(weir_buf_t *out, const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s, *end = p + n;
    weir_buf_reserve(out, n + 2);
    weir_buf_putc(out, '"');
    while (p < end) {
        const uint8_t *run = p;
        while (p < end && json_plain(*p))
            p++;
        if (p > run)
            weir_buf_append(out, run, (size_t)(p - run));
        if (p == end)
            break;
        if (*p < 0x80) {
            put_escape(out, *p++);
            continue;
        }
        size_t k = weir_utf8_seq(p, (size_t)(end - p));
        if (k == 0) {
            weir_buf_append(out, "\\ufffd", 6);
            p++;
        } else {
            weir_buf_append(out, p, k);
            p += k;
        }
    }
    weir_buf_putc(out, '"');
}

/* Bytes: one character per byte, U+0000..U+00FF (Avro's JSON encoding of bytes). */
static void append_bytes(weir_buf_t *out, const uint8_t *p, size_t n) {
    weir_buf_reserve(out, n + 2);
    weir_buf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        if (json_plain(p[i]))
            weir_buf_putc(out, (char)p[i]);
        else
            put_escape(out, p[i]);
    }
    weir_buf_putc(out, '"');
}

static void append_long(weir_buf_t *out, int64_t v) {
    char tmp[WEIR_FMT_LONG_MAX];
    weir_buf_append(out, tmp, weir_fmt_long(v, tmp));
}

/* The project's one number formatter (numfmt.c, shortest round trip) with
 * ".0" after an integral value, so a double reads as a double ("20.0", as
 * Python and Java print it). Non-finite values are the caller's concern. */
size_t weir_json_format_double(char *buf, size_t size, double d) {
    char tmp[WEIR_FMT_DOUBLE_MAX + 3];
    size_t n = weir_fmt_double(d, tmp);
    if (!memchr(tmp, '.', n) && !memchr(tmp, 'e', n)) {
        tmp[n++] = '.';
        tmp[n++] = '0';
    }
    if (n >= size)
        n = size - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return n;
}

void weir_json_append_value(weir_buf_t *out, const weir_value_t *v) {
    char tmp[40];
    switch (v->type) {
    case WEIR_NULL: weir_buf_append(out, "null", 4); return;
    case WEIR_BOOL:
        if (v->u.b)
            weir_buf_append(out, "true", 4);
        else
            weir_buf_append(out, "false", 5);
        return;
    case WEIR_LONG: append_long(out, v->u.i); return;
    case WEIR_DOUBLE:
        if (!isfinite(v->u.d)) {
            weir_buf_append(out, "null", 4);
            return;
        }
        weir_buf_append(out, tmp, weir_json_format_double(tmp, sizeof(tmp), v->u.d));
        return;
    case WEIR_STRING: weir_json_append_str(out, v->u.s.p, v->u.s.n); return;
    case WEIR_BYTES: append_bytes(out, (const uint8_t *)v->u.s.p, v->u.s.n); return;
    }
    weir_buf_append(out, "null", 4);
}
