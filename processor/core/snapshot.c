/* Snapshot writer/reader and frames (see snapshot.h for the layout). */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

static void put_le(weir_writer_t *w, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    weir_buf_append(w->buf, b, (size_t)n);
}

void weir_w_u8(weir_writer_t *w, uint8_t v) { put_le(w, v, 1); }
void weir_w_u32(weir_writer_t *w, uint32_t v) { put_le(w, v, 4); }
void weir_w_u64(weir_writer_t *w, uint64_t v) { put_le(w, v, 8); }
void weir_w_i64(weir_writer_t *w, int64_t v) { put_le(w, (uint64_t)v, 8); }
void weir_w_f64(weir_writer_t *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_le(w, u, 8);
}
void weir_w_bytes(weir_writer_t *w, const void *p, size_t n) {
    weir_w_u32(w, (uint32_t)n);
    weir_buf_append(w->buf, p, n);
}
void weir_w_str(weir_writer_t *w, const char *s) {
    if (!s) {
        weir_w_u32(w, 0xffffffffu);
        return;
    }
    weir_w_bytes(w, s, strlen(s));
}

void weir_w_frame_begin(weir_writer_t *w, const char *tag, uint16_t version) {
    w->frame_start = w->buf->len;
    weir_buf_append(w->buf, "WSNP", 4);
    put_le(w, version, 2);
    put_le(w, 0, 2);
    weir_w_bytes(w, tag, strlen(tag));
    w->len_at = w->buf->len;
    put_le(w, 0, 8);
}

void weir_w_frame_end(weir_writer_t *w) {
    uint64_t plen = w->buf->len - w->len_at - 8;
    for (int i = 0; i < 8; i++)
        w->buf->p[w->len_at + (size_t)i] = (uint8_t)(plen >> (8 * i));
    uint32_t crc = weir_crc32(0, w->buf->p + w->frame_start, w->buf->len - w->frame_start);
    put_le(w, crc, 4);
}

void weir_reader_init(weir_reader_t *r, const void *p, size_t len) {
    memset(r, 0, sizeof(*r));
    r->p = p;
    r->len = len;
}

void weir_r_fail(weir_reader_t *r, const char *fmt, ...) {
    if (r->err)
        return;
    r->err = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errstr, sizeof(r->errstr), fmt, ap);
    va_end(ap);
}

const uint8_t *weir_r_raw(weir_reader_t *r, size_t n) {
    if (r->err)
        return NULL;
    if (n > r->len - r->pos) {
        weir_r_fail(r, "truncated at byte %zu (need %zu more, have %zu)", r->pos, n, r->len - r->pos);
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_le(weir_reader_t *r, int n) {
    const uint8_t *b = weir_r_raw(r, (size_t)n);
    if (!b)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

uint8_t weir_r_u8(weir_reader_t *r) { return (uint8_t)get_le(r, 1); }
uint32_t weir_r_u32(weir_reader_t *r) { return (uint32_t)get_le(r, 4); }
uint64_t weir_r_u64(weir_reader_t *r) { return get_le(r, 8); }
int64_t weir_r_i64(weir_reader_t *r) { return (int64_t)get_le(r, 8); }
double weir_r_f64(weir_reader_t *r) {
    uint64_t u = get_le(r, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

const uint8_t *weir_r_bytes(weir_reader_t *r, size_t *n) {
    uint32_t len = weir_r_u32(r);
    if (r->err) {
        *n = 0;
        return NULL;
    }
    *n = len;
    return weir_r_raw(r, len);
}

char *weir_r_strdup(weir_reader_t *r) {
    uint32_t len = weir_r_u32(r);
    if (r->err || len == 0xffffffffu)
        return NULL;
    const uint8_t *p = weir_r_raw(r, len);
    return p ? weir_strndup((const char *)p, len) : NULL;
}

/* The frame's header: magic, version, tag and payload length. */
static int frame_header(weir_reader_t *r, weir_frame_t *f) {
    memset(f, 0, sizeof(*f));
    size_t start = r->pos;
    const uint8_t *magic = weir_r_raw(r, 4);
    if (!magic)
        return WEIR_ERR;
    if (memcmp(magic, "WSNP", 4)) {
        weir_r_fail(r, "not a weir snapshot frame (bad magic at byte %zu)", start);
        return WEIR_ERR;
    }
    f->version = (uint16_t)get_le(r, 2);
    (void)get_le(r, 2);
    f->tag = weir_r_bytes(r, &f->tag_len);
    f->payload_len = weir_r_u64(r);
    if (r->err)
        return WEIR_ERR;
    f->start = r->p + start;
    return WEIR_OK;
}

/* The payload and the CRC after the header; a CRC mismatch is not a reader
 * error here (f->crc_ok says it), so that a caller can show the frame. */
static int frame_body(weir_reader_t *r, weir_frame_t *f) {
    const uint8_t *body = weir_r_raw(r, (size_t)f->payload_len);
    if (!body || f->payload_len > SIZE_MAX)
        return WEIR_ERR;
    size_t start = (size_t)(f->start - r->p);
    f->crc_computed = weir_crc32(0, f->start, r->pos - start);
    f->crc_stored = weir_r_u32(r);
    if (r->err)
        return WEIR_ERR;
    f->payload = body;
    f->len = r->pos - start;
    f->crc_ok = f->crc_stored == f->crc_computed;
    return WEIR_OK;
}

int weir_r_frame_next(weir_reader_t *r, weir_frame_t *f) {
    if (frame_header(r, f))
        return WEIR_ERR;
    return frame_body(r, f);
}

int weir_r_frame_open(weir_reader_t *r, const char *tag, uint16_t *version, weir_reader_t *payload) {
    weir_frame_t f;
    if (frame_header(r, &f))
        return WEIR_ERR;
    if (f.tag_len != strlen(tag) || memcmp(f.tag, tag, f.tag_len)) {
        weir_r_fail(r, "snapshot is for operator '%.*s', expected '%s'", (int)(f.tag_len > 64 ? 64 : f.tag_len),
                    (const char *)f.tag, tag);
        return WEIR_ERR;
    }
    if (frame_body(r, &f))
        return WEIR_ERR;
    if (!f.crc_ok) {
        weir_r_fail(r, "snapshot of '%s' fails its CRC check (stored %08x, computed %08x)", tag, f.crc_stored,
                    f.crc_computed);
        return WEIR_ERR;
    }
    *version = f.version;
    weir_reader_init(payload, f.payload, (size_t)f.payload_len);
    return WEIR_OK;
}

int weir_r_frame_expect(weir_reader_t *r, const char *node, const char *tag, uint16_t max_version, uint16_t *version,
                        weir_reader_t *body, char *errstr, size_t errstr_size) {
    if (weir_r_frame_open(r, tag, version, body))
        return weir_err(errstr, errstr_size, "node '%s': %s", node, r->errstr);
    if (*version < 1 || *version > max_version)
        return weir_err(errstr, errstr_size, "node '%s': unsupported %s snapshot version %u (this build reads 1..%u)",
                        node, tag, *version, max_version);
    return WEIR_OK;
}
