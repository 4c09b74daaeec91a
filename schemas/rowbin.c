/* The compact binary form of a compiled record, see rowbin.h. */
#include <inttypes.h>
#include "rowbin.h"

#include <string.h>

enum { RB_KEY = 1, RB_TS = 2, RB_ORIGIN = 4 };

void weir_rowbin_put_varint(weir_buf_t *b, int64_t x) {
    uint64_t u = ((uint64_t)x << 1) ^ (uint64_t)(x >> 63); /* zig-zag */
    uint8_t tmp[10];
    size_t n = 0;
    while (u >= 0x80) {
        tmp[n++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    tmp[n++] = (uint8_t)u;
    weir_buf_append(b, tmp, n);
}

static void put_bytes(weir_buf_t *b, const void *p, size_t n) {
    weir_rowbin_put_varint(b, (int64_t)n);
    weir_buf_append(b, p, n);
}

void weir_rowbin_encode(const weir_record_t *rec, weir_buf_t *out) {
    const bool origin = rec->topic != NULL;
    uint8_t head[2] = {WEIR_ROWBIN_VERSION, (uint8_t)((rec->key ? RB_KEY : 0) | (rec->ts != WEIR_TS_NONE ? RB_TS : 0) |
                                                      (origin ? RB_ORIGIN : 0))};
    weir_buf_append(out, head, 2);
    if (rec->ts != WEIR_TS_NONE)
        weir_rowbin_put_varint(out, rec->ts);
    if (rec->key)
        put_bytes(out, rec->key, rec->key_len);
    if (origin) {
        put_bytes(out, rec->topic, strlen(rec->topic));
        weir_rowbin_put_varint(out, rec->partition);
        weir_rowbin_put_varint(out, rec->offset);
    }
    const int nf = rec->rt->nfields;
    weir_rowbin_put_varint(out, nf);
    for (int i = 0; i < nf; i++) {
        const weir_value_t *v = &rec->v[i];
        uint8_t t = (uint8_t)v->type;
        weir_buf_append(out, &t, 1);
        switch (v->type) {
        case WEIR_NULL: break;
        case WEIR_BOOL: weir_buf_putc(out, v->u.b ? 1 : 0); break;
        case WEIR_LONG: weir_rowbin_put_varint(out, v->u.i); break;
        case WEIR_DOUBLE: {
            uint64_t u;
            memcpy(&u, &v->u.d, 8);
            uint8_t le[8];
            for (int k = 0; k < 8; k++)
                le[k] = (uint8_t)(u >> (8 * k));
            weir_buf_append(out, le, 8);
            break;
        }
        case WEIR_STRING:
        case WEIR_BYTES: put_bytes(out, v->u.s.p, v->u.s.n); break;
        }
    }
}

typedef struct rb_in {
    const uint8_t *p, *start, *end;
} rb_in_t;

size_t weir_rowbin_get_varint(const uint8_t *p, size_t n, int64_t *x) {
    uint64_t u = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        u |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *x = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            return i + 1;
        }
    }
    return 0; /* cut, or more than 10 bytes */
}

static bool get_varint(rb_in_t *in, int64_t *x) {
    size_t k = weir_rowbin_get_varint(in->p, (size_t)(in->end - in->p), x);
    in->p += k;
    return k > 0;
}

static bool get_bytes(rb_in_t *in, const uint8_t **p, size_t *n) {
    int64_t len;
    if (!get_varint(in, &len) || len < 0 || len > in->end - in->p)
        return false;
    *p = in->p;
    *n = (size_t)len;
    in->p += len;
    return true;
}

#define TRUNCATED()                                                                                                    \
    weir_err(reason, reason_size, "rowbin: truncated or malformed at byte %zu", (size_t)(in.p - in.start))

int weir_rowbin_decode(const void *buf, size_t len, weir_record_t *out, char *reason, size_t reason_size) {
    rb_in_t in = {buf, buf, (const uint8_t *)buf + len};
    weir_record_clear(out);
    if (len < 2)
        return TRUNCATED();
    if (in.p[0] != WEIR_ROWBIN_VERSION)
        return weir_err(reason, reason_size, "rowbin: version %u, this weir reads %d", in.p[0], WEIR_ROWBIN_VERSION);
    const uint8_t flags = in.p[1];
    in.p += 2;
    int64_t x;
    out->ts = WEIR_TS_NONE;
    if (flags & RB_TS) {
        if (!get_varint(&in, &out->ts))
            return TRUNCATED();
    }
    out->key = NULL;
    out->key_len = 0;
    if (flags & RB_KEY) {
        const uint8_t *k;
        if (!get_bytes(&in, &k, &out->key_len))
            return TRUNCATED();
        out->key = (const char *)k;
    }
    out->topic = NULL;
    out->partition = -1;
    out->offset = -1;
    if (flags & RB_ORIGIN) {
        const uint8_t *t;
        size_t tn;
        int64_t part;
        if (!get_bytes(&in, &t, &tn) || !get_varint(&in, &part) || !get_varint(&in, &out->offset))
            return TRUNCATED();
        out->topic = weir_arena_strndup(&out->arena, (const char *)t, tn);
        out->partition = (int32_t)part;
    }
    const weir_rowtype_t *rt = out->rt;
    if (!get_varint(&in, &x))
        return TRUNCATED();
    if (x != rt->nfields)
        return weir_err(reason, reason_size, "rowbin: %" PRId64 " fields where the row type has %d", x, rt->nfields);
    for (int i = 0; i < rt->nfields; i++) {
        const weir_field_t *f = &rt->fields[i];
        if (in.p >= in.end)
            return TRUNCATED();
        const weir_type_t t = (weir_type_t)*in.p++;
        weir_value_t *v = &out->v[i];
        if (t == WEIR_NULL) {
            if (!f->nullable && f->type != WEIR_NULL)
                return weir_err(reason, reason_size, "rowbin: field %d '%s': null where %s expected", i, f->name,
                                weir_type_name(f->type));
            v->type = WEIR_NULL;
            continue;
        }
        if (t != f->type)
            return weir_err(reason, reason_size, "rowbin: field %d '%s': %s where %s expected", i, f->name,
                            t <= WEIR_BYTES ? weir_type_name(t) : "unknown type", weir_type_name(f->type));
        switch (t) {
        case WEIR_BOOL:
            if (in.p >= in.end)
                return TRUNCATED();
            weir_set_bool(v, *in.p++ != 0);
            break;
        case WEIR_LONG:
            if (!get_varint(&in, &x))
                return TRUNCATED();
            weir_set_long(v, x);
            break;
        case WEIR_DOUBLE: {
            if (in.end - in.p < 8)
                return TRUNCATED();
            uint64_t u = 0;
            for (int k = 0; k < 8; k++)
                u |= (uint64_t)in.p[k] << (8 * k);
            in.p += 8;
            double d;
            memcpy(&d, &u, 8);
            weir_set_double(v, d);
            break;
        }
        case WEIR_STRING:
        case WEIR_BYTES: {
            const uint8_t *s;
            size_t n;
            if (!get_bytes(&in, &s, &n))
                return TRUNCATED();
            weir_set_str(v, t, (const char *)s, n);
            break;
        }
        default: break;
        }
    }
    if (in.p != in.end)
        return weir_err(reason, reason_size, "rowbin: %zu bytes after the last field", (size_t)(in.end - in.p));
    return WEIR_OK;
}
