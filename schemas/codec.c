/**
 * @file codec.c
 * @brief Avro schemas as row types; Avro-binary and JSON decoders/encoders.
 *
 * Layout of this file:
 *   1. small helpers (varints, arena copies, type names)
 *   2. schemas: .avsc -> weir_schema (a row type plus per-field Avro facts)
 *   3. the JSON encoder (the JSON writer itself is processor/core/json.c)
 *   4. JSON decoder (a fast path for flat objects; jansson for the rest)
 *   5. Avro decoder (avro-c generic value, behind a validating pre-scan)
 *   6. Avro encoder (avro-c generic value)
 *   7. the public decoder/encoder objects, dispatching on the format
 *
 * See schemas/README.md for the type mapping and the wire formats.
 */
#include "codec.h"

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* 1. helpers                                                                */
/* ------------------------------------------------------------------------ */

#define CONFLUENT_HDR 5

/* Copy n bytes into the arena, NUL-terminated. Not weir_arena_strndup: the
 * bytes may contain NULs (Avro bytes, JSON "\u0000") and must be kept whole. */
static const char *arena_copy(weir_arena_t *a, const void *p, size_t n) {
    char *d = weir_arena_alloc(a, n + 1);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

int weir_format_parse(const char *s, weir_format_t *fmt) {
    if (s == NULL)
        return WEIR_ERR;
    if (strcasecmp(s, "json") == 0) {
        *fmt = WEIR_FMT_JSON;
        return WEIR_OK;
    }
    if (strcasecmp(s, "avro") == 0) {
        *fmt = WEIR_FMT_AVRO;
        return WEIR_OK;
    }
    return WEIR_ERR;
}

/* ------------------------------------------------------------------------ */
/* 2. schemas                                                                */
/* ------------------------------------------------------------------------ */

/** The Avro type of a field's value (after unwrapping ["null", T]). */
typedef enum akind {
    AK_BOOL,
    AK_INT,
    AK_LONG,
    AK_FLOAT,
    AK_DOUBLE,
    AK_STRING,
    AK_BYTES,
    AK_FIXED,
    AK_ENUM,
} akind_t;

static const char *akind_name(akind_t k) {
    static const char *const n[] = {"boolean", "int", "long", "float", "double", "string", "bytes", "fixed", "enum"};
    return n[k];
}

/** What the codecs need to know about one Avro field (slot i == field i). */
typedef struct sfield {
    const char *name; /**< the row type's copy */
    akind_t kind;
    bool is_union;      /**< ["null", T] or [T, "null"] */
    int null_branch;    /**< union branch of null (is_union only) */
    int value_branch;   /**< union branch of T (is_union only) */
    int64_t fixed_size; /**< AK_FIXED */
    int nsymbols;       /**< AK_ENUM */
    char **symbols;     /**< AK_ENUM: owned copies */
    size_t *symlen;     /**< AK_ENUM */
    char *type_name;    /**< AK_ENUM/AK_FIXED full name, for messages; owned */
} sfield_t;

struct weir_schema {
    char *path;
    char *name;         /**< namespace.name */
    avro_schema_t avro; /**< one reference held */
    weir_rowtype_t *rt;
    int nfields;
    sfield_t *f;
};

static const char *avro_type_word(avro_schema_t s) {
    switch (avro_typeof(s)) {
    case AVRO_STRING: return "string";
    case AVRO_BYTES: return "bytes";
    case AVRO_INT32: return "int";
    case AVRO_INT64: return "long";
    case AVRO_FLOAT: return "float";
    case AVRO_DOUBLE: return "double";
    case AVRO_BOOLEAN: return "boolean";
    case AVRO_NULL: return "null";
    case AVRO_RECORD: return "record";
    case AVRO_ENUM: return "enum";
    case AVRO_FIXED: return "fixed";
    case AVRO_MAP: return "map";
    case AVRO_ARRAY: return "array";
    case AVRO_UNION: return "union";
    case AVRO_LINK: return "link";
    }
    return "unknown";
}

static avro_schema_t unlink_schema(avro_schema_t s) {
    /* A reference to a named type defined earlier in the file. */
    while (s != NULL && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    return s;
}

static char *full_name(avro_schema_t s) {
    const char *ns = avro_schema_namespace(s);
    const char *n = avro_schema_name(s);
    if (n == NULL)
        n = "";
    if (ns == NULL || ns[0] == '\0' || strchr(n, '.') != NULL)
        return weir_strdup(n);
    size_t len = strlen(ns) + 1 + strlen(n) + 1;
    char *r = weir_malloc(len);
    snprintf(r, len, "%s.%s", ns, n);
    return r;
}

/* Map one non-union Avro type. @returns WEIR_OK or WEIR_ERR (unsupported). */
static int map_primitive(avro_schema_t t, sfield_t *f, weir_type_t *wt) {
    switch (avro_typeof(t)) {
    case AVRO_BOOLEAN:
        f->kind = AK_BOOL;
        *wt = WEIR_BOOL;
        return WEIR_OK;
    case AVRO_INT32:
        f->kind = AK_INT;
        *wt = WEIR_LONG;
        return WEIR_OK;
    case AVRO_INT64:
        f->kind = AK_LONG;
        *wt = WEIR_LONG;
        return WEIR_OK;
    case AVRO_FLOAT:
        f->kind = AK_FLOAT;
        *wt = WEIR_DOUBLE;
        return WEIR_OK;
    case AVRO_DOUBLE:
        f->kind = AK_DOUBLE;
        *wt = WEIR_DOUBLE;
        return WEIR_OK;
    case AVRO_STRING:
        f->kind = AK_STRING;
        *wt = WEIR_STRING;
        return WEIR_OK;
    case AVRO_BYTES:
        f->kind = AK_BYTES;
        *wt = WEIR_BYTES;
        return WEIR_OK;
    case AVRO_FIXED:
        f->kind = AK_FIXED;
        f->fixed_size = avro_schema_fixed_size(t);
        f->type_name = full_name(t);
        *wt = WEIR_BYTES;
        return WEIR_OK;
    case AVRO_ENUM: {
        f->kind = AK_ENUM;
        f->type_name = full_name(t);
        int n = avro_schema_enum_number_of_symbols(t);
        f->nsymbols = n < 0 ? 0 : n;
        f->symbols = weir_calloc((size_t)f->nsymbols + 1, sizeof(char *));
        f->symlen = weir_calloc((size_t)f->nsymbols + 1, sizeof(size_t));
        for (int i = 0; i < f->nsymbols; i++) {
            const char *sym = avro_schema_enum_get(t, i);
            f->symbols[i] = weir_strdup(sym ? sym : "");
            f->symlen[i] = strlen(f->symbols[i]);
        }
        *wt = WEIR_STRING;
        return WEIR_OK;
    }
    default: return WEIR_ERR;
    }
}

static void sfield_free(sfield_t *f) {
    for (int i = 0; i < f->nsymbols; i++)
        free(f->symbols[i]);
    free(f->symbols);
    free(f->symlen);
    free(f->type_name);
}

void weir_schema_destroy(weir_schema_t *s) {
    if (s == NULL)
        return;
    for (int i = 0; i < s->nfields; i++)
        sfield_free(&s->f[i]);
    free(s->f);
    weir_rowtype_destroy(s->rt);
    if (s->avro != NULL)
        avro_schema_decref(s->avro);
    free(s->name);
    free(s->path);
    free(s);
}

weir_schema_t *weir_schema_load(const char *path, char *errstr, size_t errstr_size) {
    size_t len = 0;
    char *text = weir_read_file(path, WEIR_MAX_CONFIG_FILE, &len, errstr, errstr_size);
    if (text == NULL)
        return NULL;

    avro_schema_t as = NULL;
    int rc = avro_schema_from_json_length(text, len, &as);
    free(text);
    if (rc != 0 || as == NULL) {
        weir_err(errstr, errstr_size, "%s: invalid Avro schema: %s", path, avro_strerror());
        return NULL;
    }
    if (avro_typeof(as) != AVRO_RECORD) {
        weir_err(errstr, errstr_size, "%s: the top-level schema must be a record, not %s", path, avro_type_word(as));
        avro_schema_decref(as);
        return NULL;
    }

    weir_schema_t *s = weir_calloc(1, sizeof(*s));
    s->path = weir_strdup(path);
    s->avro = as;
    s->name = full_name(as);
    s->rt = weir_rowtype_new();
    size_t nf = avro_schema_record_size(as);
    s->f = weir_calloc(nf ? nf : 1, sizeof(sfield_t));

    for (size_t i = 0; i < nf; i++) {
        const char *fname = avro_schema_record_field_name(as, (int)i);
        avro_schema_t ft = unlink_schema(avro_schema_record_field_get_by_index(as, (int)i));
        sfield_t *f = &s->f[i];
        s->nfields = (int)i + 1; /* so destroy frees this field's parts on error */
        weir_type_t wt = WEIR_NULL;
        bool nullable = false;
        if (fname == NULL || ft == NULL) {
            weir_err(errstr, errstr_size, "%s: field %zu: cannot read the field", path, i);
            goto fail;
        }
        if (avro_typeof(ft) == AVRO_UNION) {
            size_t nb = avro_schema_union_size(ft);
            avro_schema_t b0 = nb == 2 ? unlink_schema(avro_schema_union_branch(ft, 0)) : NULL;
            avro_schema_t b1 = nb == 2 ? unlink_schema(avro_schema_union_branch(ft, 1)) : NULL;
            avro_schema_t val = NULL;
            if (b0 != NULL && b1 != NULL && avro_typeof(b0) == AVRO_NULL && avro_typeof(b1) != AVRO_NULL) {
                f->null_branch = 0, f->value_branch = 1, val = b1;
            } else if (b0 != NULL && b1 != NULL && avro_typeof(b1) == AVRO_NULL && avro_typeof(b0) != AVRO_NULL) {
                f->null_branch = 1, f->value_branch = 0, val = b0;
            } else {
                weir_err(errstr, errstr_size,
                         "%s: field '%s': unsupported Avro type union (only [\"null\", T] is "
                         "supported)",
                         path, fname);
                goto fail;
            }
            f->is_union = true;
            nullable = true;
            if (map_primitive(val, f, &wt) != WEIR_OK) {
                weir_err(errstr, errstr_size, "%s: field '%s': unsupported Avro type %s", path, fname,
                         avro_type_word(val));
                goto fail;
            }
        } else if (map_primitive(ft, f, &wt) != WEIR_OK) {
            weir_err(errstr, errstr_size, "%s: field '%s': unsupported Avro type %s", path, fname, avro_type_word(ft));
            goto fail;
        }
        if (weir_rowtype_add(s->rt, fname, wt, nullable) < 0) {
            weir_err(errstr, errstr_size, "%s: field '%s': duplicate field name", path, fname);
            goto fail;
        }
        f->name = s->rt->fields[i].name;
    }
    return s;

fail:
    weir_schema_destroy(s);
    return NULL;
}

const weir_rowtype_t *weir_schema_rowtype(const weir_schema_t *s) { return s->rt; }
const char *weir_schema_name(const weir_schema_t *s) { return s->name; }
const char *weir_schema_path(const weir_schema_t *s) { return s->path; }

/* ------------------------------------------------------------------------ */
/* 3. JSON output                                                            */
/* ------------------------------------------------------------------------ */

typedef struct json_enc {
    const weir_rowtype_t *rt;
    int nfields;
    char **member; /**< per slot: the escaped "name": prefix */
    size_t *member_len;
} json_enc_t;

static json_enc_t *json_enc_new(const weir_rowtype_t *rt) {
    json_enc_t *e = weir_calloc(1, sizeof(*e));
    e->rt = rt;
    e->nfields = rt->nfields;
    e->member = weir_calloc((size_t)rt->nfields + 1, sizeof(char *));
    e->member_len = weir_calloc((size_t)rt->nfields + 1, sizeof(size_t));
    weir_buf_t b = {0};
    for (int i = 0; i < rt->nfields; i++) {
        weir_buf_reset(&b);
        weir_json_append_str(&b, rt->fields[i].name, strlen(rt->fields[i].name));
        weir_buf_putc(&b, ':');
        e->member[i] = weir_strndup((const char *)b.p, b.len);
        e->member_len[i] = b.len;
    }
    weir_buf_free(&b);
    return e;
}

static void json_enc_free(json_enc_t *e) {
    for (int i = 0; i < e->nfields; i++)
        free(e->member[i]);
    free(e->member);
    free(e->member_len);
    free(e);
}

static int json_encode(json_enc_t *e, const weir_record_t *rec, const char *extra_key, const char *extra_val,
                       weir_buf_t *out) {
    bool first = true;
    weir_buf_putc(out, '{');
    if (extra_key != NULL) {
        weir_json_append_str(out, extra_key, strlen(extra_key));
        weir_buf_putc(out, ':');
        if (extra_val != NULL)
            weir_json_append_str(out, extra_val, strlen(extra_val));
        else
            weir_buf_append(out, "null", 4);
        first = false;
    }
    for (int i = 0; i < e->nfields; i++) {
        if (!first)
            weir_buf_putc(out, ',');
        first = false;
        weir_buf_append(out, e->member[i], e->member_len[i]);
        weir_json_append_value(out, &rec->v[i]);
    }
    weir_buf_putc(out, '}');
    return WEIR_OK;
}

/* ------------------------------------------------------------------------ */
/* 4. JSON decoder                                                           */
/* ------------------------------------------------------------------------ */

/* A field name -> slot table, built once per decoder: open addressing on an
 * FNV-1a hash, at most half full, so a lookup is one hash and usually one
 * memcmp. */
typedef struct json_dec {
    const weir_rowtype_t *rt;
    int nfields;
    uint32_t mask;
    int32_t *table;   /**< slot or -1 */
    uint32_t *hash;   /**< per slot */
    size_t *name_len; /**< per slot */
    uint32_t *seen;   /**< per slot: gen of the last message that set it */
    uint32_t gen;     /**< per message */
} json_dec_t;

static inline uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

static json_dec_t *json_dec_new(const weir_rowtype_t *rt) {
    json_dec_t *d = weir_calloc(1, sizeof(*d));
    d->rt = rt;
    d->nfields = rt->nfields;
    uint32_t size = 8;
    while (size < (uint32_t)rt->nfields * 2)
        size *= 2;
    d->mask = size - 1;
    d->table = weir_malloc(size * sizeof(int32_t));
    for (uint32_t i = 0; i < size; i++)
        d->table[i] = -1;
    size_t nf = (size_t)rt->nfields + 1;
    d->hash = weir_calloc(nf, sizeof(uint32_t));
    d->name_len = weir_calloc(nf, sizeof(size_t));
    d->seen = weir_calloc(nf, sizeof(uint32_t));
    for (int i = 0; i < rt->nfields; i++) {
        d->name_len[i] = strlen(rt->fields[i].name);
        d->hash[i] = fnv1a(rt->fields[i].name, d->name_len[i]);
        uint32_t j = d->hash[i] & d->mask;
        while (d->table[j] >= 0)
            j = (j + 1) & d->mask;
        d->table[j] = i;
    }
    return d;
}

static void json_dec_free(json_dec_t *d) {
    free(d->table);
    free(d->hash);
    free(d->name_len);
    free(d->seen);
    free(d);
}

static inline int json_dec_slot(const json_dec_t *d, const char *k, size_t n) {
    uint32_t h = fnv1a(k, n);
    for (uint32_t j = h & d->mask;; j = (j + 1) & d->mask) {
        int32_t s = d->table[j];
        if (s < 0)
            return -1;
        if (d->hash[s] == h && d->name_len[s] == n && memcmp(d->rt->fields[s].name, k, n) == 0)
            return s;
    }
}

static const char *json_type_word(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "long";
    case JSON_REAL: return "double";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* A JSON string for a bytes field: each character U+0000..U+00FF is one byte. */
static int json_to_bytes(const char *s, size_t n, weir_arena_t *a, weir_value_t *v) {
    char *d = weir_arena_alloc(a, n + 1);
    size_t o = 0;
    const uint8_t *p = (const uint8_t *)s, *end = p + n;
    while (p < end) {
        if (*p < 0x80) {
            d[o++] = (char)*p++;
        } else if ((*p == 0xC2 || *p == 0xC3) && p + 1 < end) {
            d[o++] = (char)(((p[0] & 0x1F) << 6) | (p[1] & 0x3F));
            p += 2;
        } else {
            return WEIR_ERR;
        }
    }
    d[o] = '\0';
    v->type = WEIR_BYTES;
    v->u.s.p = d;
    v->u.s.n = o;
    return WEIR_OK;
}

/* 2^63 as a double: the doubles in [-2^63, 2^63) convert to int64 exactly. */
#define TWO63 9223372036854775808.0

/* The reference decoder: jansson builds a tree, we walk it once. */
static int json_decode_tree(json_dec_t *d, const void *buf, size_t len, weir_record_t *out, char *reason,
                            size_t reason_size) {
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        return weir_err(reason, reason_size, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                        jerr.text);
    int rc = WEIR_OK;
    if (!json_is_object(root)) {
        rc = weir_err(reason, reason_size, "expected a JSON object, got %s", json_type_word(root));
        goto done;
    }
    for (void *it = json_object_iter(root); it != NULL; it = json_object_iter_next(root, it)) {
        const char *key = json_object_iter_key(it);
        int slot = json_dec_slot(d, key, json_object_iter_key_len(it));
        if (slot < 0)
            continue; /* unknown fields are ignored */
        json_t *j = json_object_iter_value(it);
        const weir_field_t *f = &d->rt->fields[slot];
        weir_value_t *v = &out->v[slot];
        if (json_is_null(j))
            continue; /* checked with the missing ones below */
        switch (f->type) {
        case WEIR_BOOL:
            if (!json_is_boolean(j))
                goto mismatch;
            *v = weir_v_bool(json_is_true(j));
            break;
        case WEIR_LONG:
            if (json_is_integer(j)) {
                *v = weir_v_long((int64_t)json_integer_value(j));
            } else if (json_is_real(j)) {
                double x = json_real_value(j);
                if (x != floor(x) || x < -TWO63 || x >= TWO63) {
                    char num[40];
                    weir_json_format_double(num, sizeof(num), x);
                    rc = weir_err(reason, reason_size, "field '%s': expected long, got double %s%s", f->name, num,
                                  x != floor(x) ? "" : " (out of range)");
                    goto done;
                }
                *v = weir_v_long((int64_t)x);
            } else {
                goto mismatch;
            }
            break;
        case WEIR_DOUBLE:
            if (json_is_real(j))
                *v = weir_v_double(json_real_value(j));
            else if (json_is_integer(j))
                *v = weir_v_double((double)json_integer_value(j));
            else
                goto mismatch;
            break;
        case WEIR_STRING: {
            if (!json_is_string(j))
                goto mismatch;
            size_t n = json_string_length(j);
            *v = weir_v_str(arena_copy(&out->arena, json_string_value(j), n), n);
            break;
        }
        case WEIR_BYTES:
            if (!json_is_string(j))
                goto mismatch;
            if (json_to_bytes(json_string_value(j), json_string_length(j), &out->arena, v) != WEIR_OK) {
                rc = weir_err(reason, reason_size, "field '%s': bytes must be a string of characters U+0000..U+00FF",
                              f->name);
                goto done;
            }
            break;
        case WEIR_NULL: goto mismatch; /* only null fits a null column */
        }
        continue;
    mismatch:
        rc = weir_err(reason, reason_size, "field '%s': expected %s, got %s", f->name, weir_type_name(f->type),
                      json_type_word(j));
        goto done;
    }

    for (int i = 0; i < d->nfields; i++) {
        if (out->v[i].type == WEIR_NULL && !d->rt->fields[i].nullable && d->rt->fields[i].type != WEIR_NULL) {
            rc = weir_err(reason, reason_size, "missing required field '%s'", d->rt->fields[i].name);
            goto done;
        }
    }
done:
    json_decref(root);
    return rc;
}

/*
 * The fast path. jansson's lexer costs about 1.5 us for a 100-byte record,
 * which is below the 1M records/s target, so the common case -- a flat
 * object whose values are unescaped strings, numbers, true/false/null --
 * is parsed here directly from the buffer. It only ever succeeds: anything
 * else (escapes, nested values, a wrong type, a duplicate or missing field,
 * a syntax error, a number jansson might treat differently) returns
 * FAST_NO and the message is decoded again by json_decode_tree, which is
 * the reference for both the values and the error messages. So both paths
 * accept the same messages and produce the same records.
 */
#define FAST_OK 0
#define FAST_NO 1

static inline const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* A string body without escapes or control characters, valid UTF-8;
 * p is after the opening quote. @returns the closing quote or NULL. */
static inline const char *scan_plain_string(const char *p, const char *e) {
    while (p < e) {
        uint8_t c = (uint8_t)*p;
        if (c == '"')
            return p;
        if (c < 0x20 || c == '\\')
            return NULL;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t k = weir_utf8_seq((const uint8_t *)p, (size_t)(e - p));
        if (k == 0)
            return NULL;
        p += k;
    }
    return NULL;
}

/* A JSON number per RFC 8259 at p. @returns its end or NULL; *is_real. */
static inline const char *scan_number(const char *p, const char *e, bool *is_real) {
    *is_real = false;
    if (p < e && *p == '-')
        p++;
    if (p == e)
        return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        return NULL;
    }
    if (p < e && *p == '.') {
        *is_real = true;
        const char *q = ++p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == q)
            return NULL;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *is_real = true;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        const char *q = p;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        if (p == q)
            return NULL;
    }
    return p;
}

static int json_decode_fast(json_dec_t *d, const char *p, size_t len, weir_record_t *out) {
    const char *e = p + len;
    if (++d->gen == 0) {
        memset(d->seen, 0, (size_t)d->nfields * sizeof(uint32_t));
        d->gen = 1;
    }
    p = skip_ws(p, e);
    if (p == e || *p != '{')
        return FAST_NO;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') {
        p++;
        goto end;
    }
    for (;;) {
        if (p == e || *p != '"')
            return FAST_NO;
        const char *key = p + 1;
        const char *kend = scan_plain_string(key, e);
        if (kend == NULL)
            return FAST_NO;
        int slot = json_dec_slot(d, key, (size_t)(kend - key));
        if (slot >= 0) {
            if (d->seen[slot] == d->gen)
                return FAST_NO; /* duplicate: let jansson decide */
            d->seen[slot] = d->gen;
        }
        p = skip_ws(kend + 1, e);
        if (p == e || *p != ':')
            return FAST_NO;
        p = skip_ws(p + 1, e);
        if (p == e)
            return FAST_NO;
        weir_type_t ft = slot >= 0 ? d->rt->fields[slot].type : WEIR_NULL;
        weir_value_t *v = slot >= 0 ? &out->v[slot] : NULL;
        char c = *p;
        if (c == '"') {
            const char *s0 = p + 1, *s1 = scan_plain_string(s0, e);
            if (s1 == NULL)
                return FAST_NO;
            if (slot >= 0) {
                size_t n = (size_t)(s1 - s0);
                if (ft == WEIR_STRING)
                    weir_set_str(v, WEIR_STRING, arena_copy(&out->arena, s0, n), n);
                else if (ft != WEIR_BYTES || json_to_bytes(s0, n, &out->arena, v) != WEIR_OK)
                    return FAST_NO;
            }
            p = s1 + 1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            bool is_real;
            const char *n0 = p, *n1 = scan_number(p, e, &is_real);
            if (n1 == NULL)
                return FAST_NO;
            p = n1;
            /* jansson rejects too big numbers even for unknown fields, so
             * every number is checked */
            if (!is_real) {
                /* up to 18 digits cannot overflow; longer ones go to jansson */
                const char *q = n0;
                bool neg = *q == '-';
                if (neg)
                    q++;
                if (n1 - q > 18)
                    return FAST_NO;
                int64_t x = 0;
                for (; q < n1; q++)
                    x = x * 10 + (*q - '0');
                if (neg)
                    x = -x;
                if (slot < 0)
                    goto next;
                if (ft == WEIR_LONG)
                    weir_set_long(v, x);
                else if (ft == WEIR_DOUBLE)
                    weir_set_double(v, (double)x);
                else
                    return FAST_NO;
            } else {
                char tmp[64], *endp;
                size_t n = (size_t)(n1 - n0);
                if (n >= sizeof(tmp) || (slot >= 0 && ft != WEIR_DOUBLE && ft != WEIR_LONG))
                    return FAST_NO;
                memcpy(tmp, n0, n);
                tmp[n] = '\0';
                double x = strtod(tmp, &endp);
                if (endp != tmp + n || !isfinite(x))
                    return FAST_NO; /* a locale's decimal comma; overflow */
                if (slot < 0)
                    goto next;
                if (ft == WEIR_DOUBLE) {
                    weir_set_double(v, x);
                } else {
                    if (x != floor(x) || x < -TWO63 || x >= TWO63)
                        return FAST_NO;
                    weir_set_long(v, (int64_t)x);
                }
            }
        } else if (c == 't' || c == 'f') {
            bool b = c == 't';
            size_t n = b ? 4 : 5;
            if ((size_t)(e - p) < n || memcmp(p, b ? "true" : "false", n) != 0)
                return FAST_NO;
            p += n;
            if (slot >= 0) {
                if (ft != WEIR_BOOL)
                    return FAST_NO;
                weir_set_bool(v, b);
            }
        } else if (c == 'n') {
            if ((size_t)(e - p) < 4 || memcmp(p, "null", 4) != 0)
                return FAST_NO;
            p += 4; /* the value stays null */
        } else {
            return FAST_NO; /* nested object or array, or not JSON */
        }
    next:
        p = skip_ws(p, e);
        if (p == e)
            return FAST_NO;
        if (*p == '}') {
            p++;
            break;
        }
        if (*p != ',')
            return FAST_NO;
        p = skip_ws(p + 1, e);
    }
end:
    if (skip_ws(p, e) != e)
        return FAST_NO;
    for (int i = 0; i < d->nfields; i++) {
        if (out->v[i].type == WEIR_NULL && !d->rt->fields[i].nullable && d->rt->fields[i].type != WEIR_NULL)
            return FAST_NO;
    }
    return FAST_OK;
}

static int json_decode(json_dec_t *d, const void *buf, size_t len, weir_record_t *out, char *reason,
                       size_t reason_size) {
    if (json_decode_fast(d, buf, len, out) == FAST_OK)
        return WEIR_OK;
    weir_record_clear(out);
    return json_decode_tree(d, buf, len, out, reason, reason_size);
}

/* ------------------------------------------------------------------------ */
/* 5. Avro decoder                                                           */
/* ------------------------------------------------------------------------ */

#define VARINT_TRUNCATED 0
#define VARINT_BAD SIZE_MAX

/* Read a zigzag varint. @returns bytes used, VARINT_TRUNCATED, or VARINT_BAD
 * (longer than 10 bytes or more than 64 bits). */
static inline size_t get_varint(const uint8_t *p, size_t n, int64_t *out) {
    uint64_t u = 0;
    for (size_t i = 0; i < 10; i++) {
        if (i == n)
            return VARINT_TRUNCATED;
        u |= (uint64_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i == 9 && p[i] > 1)
                return VARINT_BAD;
            *out = (int64_t)((u >> 1) ^ (~(u & 1) + 1));
            return i + 1;
        }
    }
    return VARINT_BAD;
}

typedef struct avro_dec {
    const weir_schema_t *schema;
    bool confluent;
} avro_dec_t;

static inline uint64_t load_le(const uint8_t *p, size_t w) {
    uint64_t u = 0;
    for (size_t i = 0; i < w; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return u;
}

static avro_dec_t *avro_dec_new(const weir_schema_t *schema, bool confluent) {
    avro_dec_t *d = weir_calloc(1, sizeof(*d));
    d->schema = schema;
    d->confluent = confluent;
    return d;
}

static void avro_dec_free(avro_dec_t *d) { free(d); }

/*
 * Decode the Avro binary encoding of a flat record (the only shape
 * weir_schema_load accepts: fields of primitive, enum or fixed type, or a
 * union of one of them with null) in one pass, straight from the bytes: no
 * allocation beyond out's arena. Everything is checked: varints (at most 64
 * bits), string/bytes lengths within the message, enum indexes within the
 * symbols, union branches, booleans 0/1, int range, and no trailing bytes.
 * avro-c (which parses the schemas) is not on this path: its generic value
 * API cost about a fifth of a record's whole trip through the Kafka runtime.
 */
static int avro_decode(avro_dec_t *d, const void *buf, size_t len, weir_record_t *out, char *reason,
                       size_t reason_size) {
    const weir_schema_t *s = d->schema;
    const uint8_t *p = buf;
    size_t n = len;
    if (d->confluent) {
        if (n < CONFLUENT_HDR || p[0] != 0)
            return weir_err(reason, reason_size, "invalid Avro: no Confluent header (magic byte 0 + 4-byte schema id)");
        p += CONFLUENT_HDR;
        n -= CONFLUENT_HDR;
    }
    size_t pos = 0;
    for (int i = 0; i < s->nfields; i++) {
        const sfield_t *f = &s->f[i];
        weir_value_t *v = &out->v[i];
        int64_t x = 0;
        size_t k;
        if (f->is_union) {
            if ((k = get_varint(p + pos, n - pos, &x)) == VARINT_TRUNCATED)
                goto truncated;
            if (k == VARINT_BAD)
                goto bad_varint;
            pos += k;
            if (x == f->null_branch)
                continue; /* already null */
            if (x != f->value_branch)
                return weir_err(reason, reason_size, "invalid Avro: field '%s': union branch %" PRId64 " out of range",
                                f->name, x);
        }
        switch (f->kind) {
        case AK_BOOL:
            if (pos >= n)
                goto truncated;
            if (p[pos] > 1)
                return weir_err(reason, reason_size, "invalid Avro: field '%s': boolean byte 0x%02x is not 0 or 1",
                                f->name, p[pos]);
            weir_set_bool(v, p[pos] != 0);
            pos++;
            break;
        case AK_INT:
        case AK_LONG:
            if ((k = get_varint(p + pos, n - pos, &x)) == VARINT_TRUNCATED)
                goto truncated;
            if (k == VARINT_BAD)
                goto bad_varint;
            pos += k;
            if (f->kind == AK_INT && (x < INT32_MIN || x > INT32_MAX))
                return weir_err(reason, reason_size, "invalid Avro: field '%s': %" PRId64 " out of range for int",
                                f->name, x);
            weir_set_long(v, x);
            break;
        case AK_FLOAT: {
            if (n - pos < 4)
                goto truncated;
            uint32_t u = (uint32_t)load_le(p + pos, 4);
            float fl;
            memcpy(&fl, &u, sizeof(fl));
            weir_set_double(v, fl);
            pos += 4;
            break;
        }
        case AK_DOUBLE: {
            if (n - pos < 8)
                goto truncated;
            uint64_t u = load_le(p + pos, 8);
            double db;
            memcpy(&db, &u, sizeof(db));
            weir_set_double(v, db);
            pos += 8;
            break;
        }
        case AK_STRING:
        case AK_BYTES:
            if ((k = get_varint(p + pos, n - pos, &x)) == VARINT_TRUNCATED)
                goto truncated;
            if (k == VARINT_BAD)
                goto bad_varint;
            pos += k;
            if (x < 0)
                return weir_err(reason, reason_size, "invalid Avro: field '%s': negative length %" PRId64, f->name, x);
            if ((uint64_t)x > n - pos)
                return weir_err(reason, reason_size,
                                "invalid Avro: field '%s': message truncated (length %" PRId64 ", %zu bytes left)",
                                f->name, x, n - pos);
            if (f->kind == AK_STRING) {
                weir_set_str(v, WEIR_STRING, arena_copy(&out->arena, p + pos, (size_t)x), (size_t)x);
            } else {
                weir_set_str(v, WEIR_BYTES, arena_copy(&out->arena, p + pos, (size_t)x), (size_t)x);
            }
            pos += (size_t)x;
            break;
        case AK_FIXED:
            if ((uint64_t)f->fixed_size > n - pos)
                goto truncated;
            v->type = WEIR_BYTES;
            v->u.s.p = arena_copy(&out->arena, p + pos, (size_t)f->fixed_size);
            v->u.s.n = (size_t)f->fixed_size;
            pos += (size_t)f->fixed_size;
            break;
        case AK_ENUM:
            if ((k = get_varint(p + pos, n - pos, &x)) == VARINT_TRUNCATED)
                goto truncated;
            if (k == VARINT_BAD)
                goto bad_varint;
            pos += k;
            if (x < 0 || x >= f->nsymbols)
                return weir_err(reason, reason_size, "invalid Avro: field '%s': enum index %" PRId64 " out of range",
                                f->name, x);
            weir_set_str(v, WEIR_STRING, f->symbols[x], f->symlen[x]);
            break;
        }
        continue;
    truncated:
        return weir_err(reason, reason_size, "invalid Avro: field '%s': message truncated", f->name);
    bad_varint:
        return weir_err(reason, reason_size, "invalid Avro: field '%s': varint longer than 64 bits", f->name);
    }
    if (pos != n)
        return weir_err(reason, reason_size, "invalid Avro: %zu trailing bytes after the record", n - pos);
    return WEIR_OK;
}

/* ------------------------------------------------------------------------ */
/* 6. Avro encoder                                                           */
/* ------------------------------------------------------------------------ */

typedef struct avro_enc {
    const weir_schema_t *schema;
    int *slot; /**< per schema field: rt slot, or -1 (always null) */
    bool confluent;
    uint8_t header[CONFLUENT_HDR];
} avro_enc_t;

static bool avro_compatible(akind_t k, weir_type_t t) {
    switch (k) {
    case AK_BOOL: return t == WEIR_BOOL;
    case AK_INT:
    case AK_LONG: return t == WEIR_LONG;
    case AK_FLOAT:
    case AK_DOUBLE: return t == WEIR_DOUBLE || t == WEIR_LONG;
    case AK_STRING:
    case AK_ENUM: return t == WEIR_STRING;
    case AK_BYTES:
    case AK_FIXED: return t == WEIR_BYTES;
    }
    return false;
}

static void avro_enc_free(avro_enc_t *e) {
    free(e->slot);
    free(e);
}

static avro_enc_t *avro_enc_new(const weir_schema_t *s, const weir_rowtype_t *rt, bool confluent, int32_t schema_id,
                                char *errstr, size_t errstr_size) {
    avro_enc_t *e = weir_calloc(1, sizeof(*e));
    e->schema = s;
    e->confluent = confluent;
    e->header[0] = 0;
    e->header[1] = (uint8_t)((uint32_t)schema_id >> 24);
    e->header[2] = (uint8_t)((uint32_t)schema_id >> 16);
    e->header[3] = (uint8_t)((uint32_t)schema_id >> 8);
    e->header[4] = (uint8_t)schema_id;
    e->slot = weir_calloc((size_t)s->nfields + 1, sizeof(int));
    for (int i = 0; i < s->nfields; i++) {
        const sfield_t *f = &s->f[i];
        int slot = weir_rowtype_find(rt, f->name);
        e->slot[i] = slot;
        if (slot < 0) {
            if (!f->is_union) {
                weir_err(errstr, errstr_size, "schema %s: field '%s' is not produced by node and is not nullable",
                         s->path, f->name);
                goto fail;
            }
            continue;
        }
        weir_type_t t = rt->fields[slot].type;
        if (t == WEIR_NULL) {
            if (!f->is_union) {
                weir_err(errstr, errstr_size, "schema %s: field '%s' is %s but the node always produces null", s->path,
                         f->name, akind_name(f->kind));
                goto fail;
            }
        } else if (!avro_compatible(f->kind, t)) {
            weir_err(errstr, errstr_size, "schema %s: field '%s' is %s in the schema but the node produces %s", s->path,
                     f->name, akind_name(f->kind), weir_type_name(t));
            goto fail;
        }
    }
    return e;
fail:
    avro_enc_free(e);
    return NULL;
}

/* Append the zigzag varint of x; the caller has reserved 10 bytes. */
static inline void put_varint(weir_buf_t *out, int64_t x) {
    uint64_t u = ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
    uint8_t *p = out->p + out->len;
    size_t k = 0;
    while (u >= 0x80) {
        p[k++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    p[k++] = (uint8_t)u;
    out->len += k;
}

static inline void put_le(weir_buf_t *out, uint64_t u, size_t w) {
    uint8_t *p = out->p + out->len;
    for (size_t i = 0; i < w; i++)
        p[i] = (uint8_t)(u >> (8 * i));
    out->len += w;
}

/* Append field i's Avro binary encoding of v to out. */
static int avro_put_field(const avro_enc_t *e, int i, const weir_value_t *v, weir_buf_t *out, char *reason,
                          size_t reason_size) {
    const sfield_t *f = &e->schema->f[i];
    weir_buf_reserve(out, 20);
    if (v->type == WEIR_NULL) {
        if (!f->is_union)
            return weir_err(reason, reason_size, "field '%s' is null but not nullable in the schema", f->name);
        put_varint(out, f->null_branch);
        return WEIR_OK;
    }
    if (f->is_union)
        put_varint(out, f->value_branch);
    switch (f->kind) {
    case AK_BOOL:
        if (v->type != WEIR_BOOL)
            goto type_fail;
        out->p[out->len++] = v->u.b ? 1 : 0;
        break;
    case AK_INT:
        if (v->type != WEIR_LONG)
            goto type_fail;
        if (v->u.i < INT32_MIN || v->u.i > INT32_MAX)
            return weir_err(reason, reason_size, "field '%s': %" PRId64 " is out of range for Avro int", f->name,
                            v->u.i);
        put_varint(out, v->u.i);
        break;
    case AK_LONG:
        if (v->type != WEIR_LONG)
            goto type_fail;
        put_varint(out, v->u.i);
        break;
    case AK_FLOAT: {
        if (v->type != WEIR_DOUBLE && v->type != WEIR_LONG)
            goto type_fail;
        float fl = (float)weir_v_num(v);
        uint32_t u;
        memcpy(&u, &fl, sizeof(u));
        put_le(out, u, 4);
        break;
    }
    case AK_DOUBLE: {
        if (v->type != WEIR_DOUBLE && v->type != WEIR_LONG)
            goto type_fail;
        double db = weir_v_num(v);
        uint64_t u;
        memcpy(&u, &db, sizeof(u));
        put_le(out, u, 8);
        break;
    }
    case AK_STRING:
    case AK_BYTES:
        if (v->type != (f->kind == AK_STRING ? WEIR_STRING : WEIR_BYTES))
            goto type_fail;
        put_varint(out, (int64_t)v->u.s.n);
        weir_buf_append(out, v->u.s.p, v->u.s.n);
        break;
    case AK_FIXED:
        if (v->type != WEIR_BYTES)
            goto type_fail;
        if ((int64_t)v->u.s.n != f->fixed_size)
            return weir_err(reason, reason_size, "field '%s': %zu bytes for fixed %s of size %" PRId64, f->name,
                            v->u.s.n, f->type_name, f->fixed_size);
        weir_buf_append(out, v->u.s.p, v->u.s.n);
        break;
    case AK_ENUM: {
        if (v->type != WEIR_STRING)
            goto type_fail;
        int sym = -1;
        for (int k = 0; k < f->nsymbols; k++) {
            if (f->symlen[k] == v->u.s.n && memcmp(f->symbols[k], v->u.s.p, v->u.s.n) == 0) {
                sym = k;
                break;
            }
        }
        if (sym < 0)
            return weir_err(reason, reason_size, "field '%s': '%.*s' is not a symbol of enum %s", f->name,
                            (int)(v->u.s.n > 64 ? 64 : v->u.s.n), v->u.s.p, f->type_name);
        put_varint(out, sym);
        break;
    }
    }
    return WEIR_OK;
type_fail:
    return weir_err(reason, reason_size, "field '%s': %s value for Avro %s", f->name, weir_type_name(v->type),
                    akind_name(f->kind));
}

/* The Avro binary encoding, written directly (see avro_decode for why not avro-c). */
static int avro_encode(avro_enc_t *e, const weir_record_t *rec, weir_buf_t *out, char *reason, size_t reason_size) {
    const weir_schema_t *s = e->schema;
    static const weir_value_t null_value = {.type = WEIR_NULL};
    size_t start = out->len;
    if (e->confluent)
        weir_buf_append(out, e->header, CONFLUENT_HDR);
    for (int i = 0; i < s->nfields; i++) {
        const weir_value_t *v = e->slot[i] >= 0 ? &rec->v[e->slot[i]] : &null_value;
        if (avro_put_field(e, i, v, out, reason, reason_size) != WEIR_OK) {
            out->len = start;
            return WEIR_ERR;
        }
    }
    return WEIR_OK;
}

/* ------------------------------------------------------------------------ */
/* 7. decoder / encoder objects                                              */
/* ------------------------------------------------------------------------ */

static bool rowtype_equal(const weir_rowtype_t *a, const weir_rowtype_t *b) {
    if (a == b)
        return true;
    if (a->nfields != b->nfields)
        return false;
    for (int i = 0; i < a->nfields; i++) {
        if (strcmp(a->fields[i].name, b->fields[i].name) != 0 || a->fields[i].type != b->fields[i].type ||
            a->fields[i].nullable != b->fields[i].nullable)
            return false;
    }
    return true;
}

struct weir_decoder {
    weir_format_t fmt;
    const weir_rowtype_t *rt;
    json_dec_t *json;
    avro_dec_t *avro;
};

weir_decoder_t *weir_decoder_new(weir_format_t fmt, const weir_schema_t *schema, const weir_rowtype_t *rt,
                                 bool confluent, char *errstr, size_t errstr_size) {
    if (rt == NULL && schema != NULL)
        rt = schema->rt;
    if (rt == NULL) {
        weir_err(errstr, errstr_size, "decoder: no row type");
        return NULL;
    }
    weir_decoder_t *d = weir_calloc(1, sizeof(*d));
    d->fmt = fmt;
    d->rt = rt;
    if (fmt == WEIR_FMT_JSON) {
        /* Confluent framing is an Avro matter; it is ignored for JSON. */
        d->json = json_dec_new(rt);
        return d;
    }
    if (fmt != WEIR_FMT_AVRO) {
        weir_err(errstr, errstr_size, "decoder: unknown format %d", (int)fmt);
        goto fail;
    }
    if (schema == NULL) {
        weir_err(errstr, errstr_size, "decoder: the Avro format needs a schema");
        goto fail;
    }
    if (!rowtype_equal(rt, schema->rt)) {
        weir_err(errstr, errstr_size, "decoder: the row type is not that of schema %s", schema->path);
        goto fail;
    }
    d->avro = avro_dec_new(schema, confluent);
    if (d->avro == NULL)
        goto fail;
    return d;
fail:
    free(d);
    return NULL;
}

/*
 * Lifetime of the decoded values: numbers are in out->v; strings and bytes
 * are copied into out->arena (JSON: jansson's tree is freed before we
 * return; Avro: the message buffer belongs to the caller), so they
 * stay valid until out is cleared, decoded into again or freed. Avro enum
 * symbols point into the schema.
 */
int weir_decode(weir_decoder_t *d, const void *buf, size_t len, weir_record_t *out, char *reason, size_t reason_size) {
    if (out->rt == NULL || out->rt->nfields != d->rt->nfields || out->cap < d->rt->nfields)
        return weir_err(reason, reason_size, "record has %d fields, the decoder produces %d",
                        out->rt ? out->rt->nfields : -1, d->rt->nfields);
    weir_record_clear(out);
    if (buf == NULL)
        buf = "";
    if (d->fmt == WEIR_FMT_JSON)
        return json_decode(d->json, buf, len, out, reason, reason_size);
    return avro_decode(d->avro, buf, len, out, reason, reason_size);
}

void weir_decoder_destroy(weir_decoder_t *d) {
    if (d == NULL)
        return;
    if (d->json != NULL)
        json_dec_free(d->json);
    if (d->avro != NULL)
        avro_dec_free(d->avro);
    free(d);
}

struct weir_encoder {
    weir_format_t fmt;
    const weir_rowtype_t *rt;
    json_enc_t *json;
    avro_enc_t *avro;
};

weir_encoder_t *weir_encoder_new(weir_format_t fmt, const weir_schema_t *schema, const weir_rowtype_t *rt,
                                 bool confluent, int32_t schema_id, char *errstr, size_t errstr_size) {
    if (rt == NULL && schema != NULL)
        rt = schema->rt;
    if (rt == NULL) {
        weir_err(errstr, errstr_size, "encoder: no row type");
        return NULL;
    }
    weir_encoder_t *e = weir_calloc(1, sizeof(*e));
    e->fmt = fmt;
    e->rt = rt;
    if (fmt == WEIR_FMT_JSON) {
        e->json = json_enc_new(rt); /* confluent is ignored for JSON */
        return e;
    }
    if (fmt != WEIR_FMT_AVRO) {
        weir_err(errstr, errstr_size, "encoder: unknown format %d", (int)fmt);
        goto fail;
    }
    if (schema == NULL) {
        weir_err(errstr, errstr_size, "encoder: the Avro format needs a schema");
        goto fail;
    }
    e->avro = avro_enc_new(schema, rt, confluent, schema_id, errstr, errstr_size);
    if (e->avro == NULL)
        goto fail;
    return e;
fail:
    free(e);
    return NULL;
}

int weir_encode(weir_encoder_t *e, const weir_record_t *rec, const char *extra_key, const char *extra_val,
                weir_buf_t *out, char *reason, size_t reason_size) {
    if (rec->rt == NULL || rec->rt->nfields != e->rt->nfields || rec->cap < e->rt->nfields)
        return weir_err(reason, reason_size, "record has %d fields, the encoder expects %d",
                        rec->rt ? rec->rt->nfields : -1, e->rt->nfields);
    if (e->fmt == WEIR_FMT_JSON)
        return json_encode(e->json, rec, extra_key, extra_val, out);
    return avro_encode(e->avro, rec, out, reason, reason_size);
}

void weir_encoder_destroy(weir_encoder_t *e) {
    if (e == NULL)
        return;
    if (e->json != NULL)
        json_enc_free(e->json);
    if (e->avro != NULL)
        avro_enc_free(e->avro);
    free(e);
}
