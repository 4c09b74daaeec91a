/**
 * @file test_codec.c
 * @brief Schemas (.avsc -> row type) and the Avro/JSON decoders and encoders.
 *
 * WEIR_SRC points at the repository root (set by tests/meson.build).
 */
#include <avro.h>
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char errstr[WEIR_ERRSTR_SIZE];
static char reason[WEIR_ERRSTR_SIZE];

static const char *src_root(void) {
    const char *s = getenv("WEIR_SRC");
    return s && *s ? s : ".";
}

static weir_schema_t *load_repo_schema(const char *name) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/%s", src_root(), name);
    weir_schema_t *s = weir_schema_load(path, errstr, sizeof(errstr));
    cr_assert_not_null(s, "loading %s: %s", path, errstr);
    return s;
}

/* Write text to a fresh temporary .avsc file; the path is in a static buffer. */
static const char *tmp_schema(const char *text) {
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/weir_test_codec_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static weir_schema_t *load_text(const char *text) {
    const char *path = tmp_schema(text);
    weir_schema_t *s = weir_schema_load(path, errstr, sizeof(errstr));
    unlink(path);
    return s;
}

/* Load text expecting failure; errstr must contain every given fragment. */
static void expect_load_error(const char *text, const char *frag1, const char *frag2) {
    const char *path = tmp_schema(text);
    weir_schema_t *s = weir_schema_load(path, errstr, sizeof(errstr));
    unlink(path);
    cr_assert_null(s, "schema unexpectedly loaded: %s", text);
    cr_assert(strstr(errstr, path) != NULL, "error does not name the path: %s", errstr);
    cr_assert(strstr(errstr, frag1) != NULL, "error '%s' lacks '%s'", errstr, frag1);
    if (frag2)
        cr_assert(strstr(errstr, frag2) != NULL, "error '%s' lacks '%s'", errstr, frag2);
}

static bool str_is(const weir_value_t *v, const char *s) {
    return v->type == WEIR_STRING && v->u.s.n == strlen(s) && memcmp(v->u.s.p, s, v->u.s.n) == 0;
}

static bool bytes_is(const weir_value_t *v, const void *p, size_t n) {
    return v->type == WEIR_BYTES && v->u.s.n == n && memcmp(v->u.s.p, p, n) == 0;
}

static bool value_eq(const weir_value_t *a, const weir_value_t *b) {
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case WEIR_NULL: return true;
    case WEIR_BOOL: return a->u.b == b->u.b;
    case WEIR_LONG: return a->u.i == b->u.i;
    case WEIR_DOUBLE:
        return (isnan(a->u.d) && isnan(b->u.d)) || (a->u.d == b->u.d && signbit(a->u.d) == signbit(b->u.d));
    case WEIR_STRING:
    case WEIR_BYTES: return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    }
    return false;
}

static void assert_records_equal(const weir_record_t *a, const weir_record_t *b) {
    cr_assert_eq(a->rt->nfields, b->rt->nfields);
    for (int i = 0; i < a->rt->nfields; i++)
        cr_assert(value_eq(&a->v[i], &b->v[i]), "field '%s' differs (types %s/%s)", a->rt->fields[i].name,
                  weir_type_name(a->v[i].type), weir_type_name(b->v[i].type));
}

/* An independent Avro writer for the tests: zigzag varints per the spec. */
static void put_long(weir_buf_t *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        weir_buf_putc(b, (char)(0x80 | (z & 0x7F)));
        z >>= 7;
    }
    weir_buf_putc(b, (char)z);
}

static void put_double(weir_buf_t *b, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        weir_buf_putc(b, (char)(u >> (8 * i))); /* little-endian */
}

static char *buf_str(weir_buf_t *b) {
    static char s[8192];
    size_t n = b->len < sizeof(s) - 1 ? b->len : sizeof(s) - 1;
    memcpy(s, b->p, n);
    s[n] = '\0';
    return s;
}

/* A schema with every supported type, plain and nullable (both union orders). */
static const char *ALL_TYPES =
    "{\"type\":\"record\",\"name\":\"All\",\"namespace\":\"t\",\"fields\":["
    "{\"name\":\"b\",\"type\":\"boolean\"},"
    "{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"l\",\"type\":\"long\"},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"d\",\"type\":\"double\"},"
    "{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"by\",\"type\":\"bytes\"},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"Four\",\"size\":4}},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\",\"GREEN\",\"BLUE\"]}},"
    "{\"name\":\"e2\",\"type\":\"Color\"},"
    "{\"name\":\"nb\",\"type\":[\"null\",\"boolean\"]},"
    "{\"name\":\"nl\",\"type\":[\"long\",\"null\"]},"
    "{\"name\":\"nd\",\"type\":[\"null\",\"double\"]},"
    "{\"name\":\"ns\",\"type\":[\"string\",\"null\"]},"
    "{\"name\":\"nby\",\"type\":[\"null\",\"bytes\"]},"
    "{\"name\":\"ne\",\"type\":[\"null\",\"Color\"]}"
    "]}";

static void fill_all(weir_record_t *r) {
    static const char bytes[] = {0, 'a', (char)0xff, '"', '\n'};
    r->v[0] = weir_v_bool(true);
    r->v[1] = weir_v_long(-2147483648LL);
    r->v[2] = weir_v_long(INT64_MIN);
    r->v[3] = weir_v_double(1.5);
    r->v[4] = weir_v_double(-0.1);
    r->v[5] = weir_v_str("h\xc3\xa9llo \"w\"", 11);
    r->v[6] = (weir_value_t){.type = WEIR_BYTES, .u.s = {bytes, sizeof(bytes)}};
    r->v[7] = (weir_value_t){.type = WEIR_BYTES, .u.s = {"\x01\x02\x03\x04", 4}};
    r->v[8] = weir_v_str("GREEN", 5);
    r->v[9] = weir_v_str("BLUE", 4);
    r->v[10] = weir_v_bool(false);
    r->v[11] = weir_v_long(INT64_MAX);
    r->v[12] = weir_v_double(1e300);
    r->v[13] = weir_v_str("", 0);
    r->v[14] = (weir_value_t){.type = WEIR_BYTES, .u.s = {"", 0}};
    r->v[15] = weir_v_str("RED", 3);
}

static void fill_nulls(weir_record_t *r) {
    fill_all(r);
    for (int i = 10; i < 16; i++)
        r->v[i] = weir_v_null();
}

static void fill_reading(weir_record_t *r, bool with_pressure) {
    r->v[0] = weir_v_str("s-0042", 6);
    r->v[1] = weir_v_long(1700000000000LL);
    r->v[2] = weir_v_double(21.5);
    r->v[3] = weir_v_double(45.25);
    r->v[4] = with_pressure ? weir_v_double(1013.2) : weir_v_null();
    r->v[5] = weir_v_str("lab", 3);
}

/* The hand-assembled Avro encoding of fill_reading's record. */
static void reading_bytes(weir_buf_t *b, bool with_pressure) {
    /* sensor_id: length 6 -> zigzag 12 = 0x0c */
    static const uint8_t id[] = {0x0c, 's', '-', '0', '0', '4', '2'};
    weir_buf_append(b, id, sizeof(id));
    /* ts 1700000000000: zigzag 3400000000000 = 0x3179fcad000 -> 7-bit groups, LSB first */
    static const uint8_t ts[] = {0x80, 0xA0, 0xAB, 0xFE, 0xF9, 0x62};
    weir_buf_append(b, ts, sizeof(ts));
    /* 21.5 = 0x4035800000000000, little-endian */
    static const uint8_t t[] = {0, 0, 0, 0, 0, 0x80, 0x35, 0x40};
    weir_buf_append(b, t, 8);
    put_double(b, 45.25);
    if (with_pressure) {
        weir_buf_putc(b, 0x02); /* union branch 1 (double), zigzag 1 = 2 */
        put_double(b, 1013.2);
    } else {
        weir_buf_putc(b, 0x00); /* branch 0: null */
    }
    static const uint8_t site[] = {0x06, 'l', 'a', 'b'};
    weir_buf_append(b, site, sizeof(site));
}

/* ------------------------------------------------------------------------ */
/* schemas                                                                   */
/* ------------------------------------------------------------------------ */

Test(schema, load_every_repo_schema) {
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/schemas", src_root());
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".avsc") != 0)
            continue;
        weir_schema_t *s = load_repo_schema(de->d_name);
        cr_assert_gt(weir_schema_rowtype(s)->nfields, 0, "%s has no fields", de->d_name);
        cr_assert(strncmp(weir_schema_name(s), "weir.", 5) == 0, "%s: name %s", de->d_name, weir_schema_name(s));
        /* every schema can drive both codecs */
        weir_decoder_t *dec = weir_decoder_new(WEIR_FMT_AVRO, s, weir_schema_rowtype(s), false, errstr, sizeof(errstr));
        cr_assert_not_null(dec, "%s: %s", de->d_name, errstr);
        weir_encoder_t *enc =
            weir_encoder_new(WEIR_FMT_AVRO, s, weir_schema_rowtype(s), false, 0, errstr, sizeof(errstr));
        cr_assert_not_null(enc, "%s: %s", de->d_name, errstr);
        weir_encoder_destroy(enc);
        weir_decoder_destroy(dec);
        weir_schema_destroy(s);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 5, "expected at least 5 schemas, found %d", n);
}

Test(schema, sensor_reading_row_type) {
    weir_schema_t *s = load_repo_schema("sensor_reading.avsc");
    const weir_rowtype_t *rt = weir_schema_rowtype(s);
    cr_assert_str_eq(weir_schema_name(s), "weir.SensorReading");
    cr_assert(strstr(weir_schema_path(s), "sensor_reading.avsc") != NULL);
    static const struct {
        const char *name;
        weir_type_t type;
        bool nullable;
    } want[] = {
        {"sensor_id", WEIR_STRING, false}, {"ts", WEIR_LONG, false},        {"temperature", WEIR_DOUBLE, false},
        {"humidity", WEIR_DOUBLE, false},  {"pressure", WEIR_DOUBLE, true}, {"site", WEIR_STRING, false},
    };
    cr_assert_eq(rt->nfields, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_str_eq(rt->fields[i].name, want[i].name);
        cr_assert_eq(rt->fields[i].type, want[i].type, "field %s", want[i].name);
        cr_assert_eq(rt->fields[i].nullable, want[i].nullable, "field %s", want[i].name);
    }
    weir_schema_destroy(s);
}

Test(schema, sensor_enriched_row_type) {
    weir_schema_t *s = load_repo_schema("sensor_enriched.avsc");
    const weir_rowtype_t *rt = weir_schema_rowtype(s);
    cr_assert_eq(rt->nfields, 8);
    int tf = weir_rowtype_find(rt, "temp_f"), ha = weir_rowtype_find(rt, "heat_alert");
    cr_assert(tf >= 0 && ha >= 0);
    cr_assert_eq(rt->fields[tf].type, WEIR_DOUBLE);
    cr_assert_eq(rt->fields[ha].type, WEIR_BOOL);
    cr_assert(rt->fields[weir_rowtype_find(rt, "pressure")].nullable);
    weir_schema_destroy(s);
}

Test(schema, forecast_is_flat_with_json_string) {
    weir_schema_t *s = load_repo_schema("forecast.avsc");
    const weir_rowtype_t *rt = weir_schema_rowtype(s);
    int f = weir_rowtype_find(rt, "forecast");
    cr_assert(f >= 0);
    cr_assert_eq(rt->fields[f].type, WEIR_STRING);
    cr_assert(rt->fields[f].nullable);
    weir_schema_destroy(s);
}

Test(schema, type_mapping) {
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s, "%s", errstr);
    const weir_rowtype_t *rt = weir_schema_rowtype(s);
    static const struct {
        weir_type_t type;
        bool nullable;
    } want[] = {
        {WEIR_BOOL, false},   {WEIR_LONG, false},   {WEIR_LONG, false},  {WEIR_DOUBLE, false},
        {WEIR_DOUBLE, false}, {WEIR_STRING, false}, {WEIR_BYTES, false}, {WEIR_BYTES, false},
        {WEIR_STRING, false}, {WEIR_STRING, false}, {WEIR_BOOL, true},   {WEIR_LONG, true},
        {WEIR_DOUBLE, true},  {WEIR_STRING, true},  {WEIR_BYTES, true},  {WEIR_STRING, true},
    };
    cr_assert_eq(rt->nfields, (int)(sizeof(want) / sizeof(want[0])));
    for (int i = 0; i < rt->nfields; i++) {
        cr_assert_eq(rt->fields[i].type, want[i].type, "field %s", rt->fields[i].name);
        cr_assert_eq(rt->fields[i].nullable, want[i].nullable, "field %s", rt->fields[i].name);
    }
    cr_assert_str_eq(weir_schema_name(s), "t.All");
    weir_schema_destroy(s);
}

#define REC(fields) "{\"type\":\"record\",\"name\":\"R\",\"fields\":[" fields "]}"

Test(schema, unsupported_types_name_path_and_field) {
    expect_load_error(REC("{\"name\":\"a\",\"type\":\"long\"},"
                          "{\"name\":\"xs\",\"type\":{\"type\":\"array\",\"items\":\"double\"}}"),
                      "field 'xs'", "unsupported Avro type array");
    expect_load_error(REC("{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"long\"}}"), "field 'm'",
                      "unsupported Avro type map");
    expect_load_error(REC("{\"name\":\"sub\",\"type\":{\"type\":\"record\",\"name\":\"S\","
                          "\"fields\":[{\"name\":\"x\",\"type\":\"long\"}]}}"),
                      "field 'sub'", "unsupported Avro type record");
    expect_load_error(REC("{\"name\":\"u\",\"type\":[\"null\",\"string\",\"long\"]}"), "field 'u'",
                      "unsupported Avro type union");
    expect_load_error(REC("{\"name\":\"u\",\"type\":[\"string\",\"long\"]}"), "field 'u'",
                      "unsupported Avro type union");
    expect_load_error(REC("{\"name\":\"u\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"long\"}]}"), "field 'u'",
                      "unsupported Avro type array");
    expect_load_error(REC("{\"name\":\"n\",\"type\":\"null\"}"), "field 'n'", "unsupported Avro type null");
}

Test(schema, top_level_and_syntax_errors) {
    expect_load_error("\"string\"", "must be a record", "string");
    expect_load_error("{\"type\":\"array\",\"items\":\"long\"}", "must be a record", "array");
    expect_load_error("{\"type\":\"record\",\"name\":\"R\",\"fields\":[", "invalid Avro schema", NULL);
    expect_load_error("{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"x\",\"type\":\"nope\"}]}",
                      "invalid Avro schema", NULL);
    weir_schema_t *s = weir_schema_load("/nonexistent/x.avsc", errstr, sizeof(errstr));
    cr_assert_null(s);
    cr_assert(strstr(errstr, "/nonexistent/x.avsc") != NULL, "%s", errstr);
}

Test(schema, format_parse) {
    weir_format_t f = WEIR_FMT_JSON;
    cr_assert_eq(weir_format_parse("avro", &f), WEIR_OK);
    cr_assert_eq(f, WEIR_FMT_AVRO);
    cr_assert_eq(weir_format_parse("json", &f), WEIR_OK);
    cr_assert_eq(f, WEIR_FMT_JSON);
    cr_assert_eq(weir_format_parse("xml", &f), WEIR_ERR);
    cr_assert_eq(weir_format_parse("", &f), WEIR_ERR);
    cr_assert_eq(weir_format_parse(NULL, &f), WEIR_ERR);
}

/* ------------------------------------------------------------------------ */
/* Avro                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct fixture {
    weir_schema_t *s;
    const weir_rowtype_t *rt;
    weir_decoder_t *dec;
    weir_encoder_t *enc;
    weir_record_t in, out;
    weir_buf_t buf;
} fixture_t;

static void fx_open(fixture_t *fx, weir_schema_t *s, weir_format_t fmt, bool confluent) {
    memset(fx, 0, sizeof(*fx));
    fx->s = s;
    fx->rt = weir_schema_rowtype(s);
    fx->dec = weir_decoder_new(fmt, s, fx->rt, confluent, errstr, sizeof(errstr));
    cr_assert_not_null(fx->dec, "%s", errstr);
    fx->enc = weir_encoder_new(fmt, s, fx->rt, confluent, 42, errstr, sizeof(errstr));
    cr_assert_not_null(fx->enc, "%s", errstr);
    weir_record_init(&fx->in, fx->rt);
    weir_record_init(&fx->out, fx->rt);
}

static void fx_close(fixture_t *fx) {
    weir_record_free(&fx->in);
    weir_record_free(&fx->out);
    weir_buf_free(&fx->buf);
    weir_encoder_destroy(fx->enc);
    weir_decoder_destroy(fx->dec);
    weir_schema_destroy(fx->s);
}

static void fx_roundtrip(fixture_t *fx) {
    weir_buf_reset(&fx->buf);
    int rc = weir_encode(fx->enc, &fx->in, NULL, NULL, &fx->buf, reason, sizeof(reason));
    cr_assert_eq(rc, WEIR_OK, "encode: %s", reason);
    rc = weir_decode(fx->dec, fx->buf.p, fx->buf.len, &fx->out, reason, sizeof(reason));
    cr_assert_eq(rc, WEIR_OK, "decode: %s", reason);
    assert_records_equal(&fx->in, &fx->out);
}

/* Decode from an exact-size heap copy, so that a sanitizer build catches any
 * read past the end of the message. */
static int decode(fixture_t *fx, const void *p, size_t n) {
    void *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    reason[0] = '\0';
    int rc = weir_decode(fx->dec, copy, n, &fx->out, reason, sizeof(reason));
    free(copy);
    return rc;
}

Test(avro, roundtrip_every_type) {
    fixture_t fx;
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s, "%s", errstr);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    fill_all(&fx.in);
    fx_roundtrip(&fx);
    fill_nulls(&fx.in);
    fx_roundtrip(&fx);
    fill_all(&fx.in); /* again, after nulls: the reused avro value switches branches */
    fx_roundtrip(&fx);
    fx_close(&fx);
}

Test(avro, roundtrip_sensor_reading_and_hand_bytes) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, false);
    for (int p = 0; p < 2; p++) {
        weir_buf_t want = {0};
        reading_bytes(&want, p);
        fill_reading(&fx.in, p);
        /* our encoder writes exactly the spec's bytes */
        weir_buf_reset(&fx.buf);
        cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK, "%s", reason);
        cr_assert_eq(fx.buf.len, want.len);
        cr_assert(memcmp(fx.buf.p, want.p, want.len) == 0, "encoded bytes differ");
        /* and the independently assembled bytes decode to the values */
        cr_assert_eq(decode(&fx, want.p, want.len), WEIR_OK, "%s", reason);
        cr_assert(str_is(&fx.out.v[0], "s-0042"));
        cr_assert_eq(fx.out.v[1].type, WEIR_LONG);
        cr_assert_eq(fx.out.v[1].u.i, 1700000000000LL);
        cr_assert_eq(fx.out.v[2].u.d, 21.5);
        cr_assert_eq(fx.out.v[3].u.d, 45.25);
        if (p) {
            cr_assert_eq(fx.out.v[4].type, WEIR_DOUBLE);
            cr_assert_eq(fx.out.v[4].u.d, 1013.2);
        } else {
            cr_assert_eq(fx.out.v[4].type, WEIR_NULL);
        }
        cr_assert(str_is(&fx.out.v[5], "lab"));
        weir_buf_free(&want);
    }
    fx_close(&fx);
}

Test(avro, zigzag_vectors_from_the_spec) {
    /* Avro spec: 0->00, -1->01, 1->02, -2->03, 2->04, -64->7f, 64->80 01 */
    static const struct {
        int64_t v;
        uint8_t b[10];
        size_t n;
    } vec[] = {
        {0, {0x00}, 1},
        {-1, {0x01}, 1},
        {1, {0x02}, 1},
        {-2, {0x03}, 1},
        {2, {0x04}, 1},
        {-64, {0x7f}, 1},
        {64, {0x80, 0x01}, 2},
        {INT64_MAX, {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
        {INT64_MIN, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
    };
    fixture_t fx;
    weir_schema_t *s = load_text(REC("{\"name\":\"l\",\"type\":\"long\"},{\"name\":\"i\",\"type\":\"int\"}"));
    cr_assert_not_null(s, "%s", errstr);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    for (size_t k = 0; k < sizeof(vec) / sizeof(vec[0]); k++) {
        uint8_t msg[16];
        memcpy(msg, vec[k].b, vec[k].n);
        msg[vec[k].n] = 0x7e; /* int 63 */
        cr_assert_eq(decode(&fx, msg, vec[k].n + 1), WEIR_OK, "vector %zu: %s", k, reason);
        cr_assert_eq(fx.out.v[0].u.i, vec[k].v, "vector %zu", k);
        cr_assert_eq(fx.out.v[1].u.i, 63);
        /* and the encoder produces the same bytes */
        fx.in.v[0] = weir_v_long(vec[k].v);
        fx.in.v[1] = weir_v_long(63);
        weir_buf_reset(&fx.buf);
        cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
        cr_assert_eq(fx.buf.len, vec[k].n + 1);
        cr_assert(memcmp(fx.buf.p, msg, vec[k].n + 1) == 0, "vector %zu encodes differently", k);
    }
    fx_close(&fx);
}

Test(avro, confluent_header) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, true);
    fill_reading(&fx.in, true);
    weir_buf_reset(&fx.buf);
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
    static const uint8_t hdr[5] = {0, 0, 0, 0, 42};
    cr_assert(memcmp(fx.buf.p, hdr, 5) == 0, "Confluent header");
    weir_buf_t want = {0};
    reading_bytes(&want, true);
    cr_assert_eq(fx.buf.len, want.len + 5);
    cr_assert(memcmp(fx.buf.p + 5, want.p, want.len) == 0);
    fx_roundtrip(&fx);
    /* bad magic, short message */
    fx.buf.p[0] = 1;
    cr_assert_eq(decode(&fx, fx.buf.p, fx.buf.len), WEIR_ERR);
    cr_assert(strstr(reason, "Confluent") != NULL, "%s", reason);
    cr_assert_eq(decode(&fx, "\0\0\0", 3), WEIR_ERR);
    cr_assert(strncmp(reason, "invalid Avro: ", 14) == 0, "%s", reason);
    weir_buf_free(&want);
    fx_close(&fx);
}

Test(avro, truncated_messages_name_the_field) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, false);
    weir_buf_t msg = {0};
    reading_bytes(&msg, true);
    for (size_t n = 0; n < msg.len; n++) {
        cr_assert_eq(decode(&fx, msg.p, n), WEIR_ERR, "truncated to %zu decoded", n);
        cr_assert(strncmp(reason, "invalid Avro: ", 14) == 0, "%zu: %s", n, reason);
        cr_assert(strstr(reason, "field '") != NULL, "%zu: %s", n, reason);
        cr_assert(strstr(reason, "truncated") != NULL, "%zu: %s", n, reason);
    }
    /* 10 bytes: sensor_id (7) and 3 of the 6 bytes of ts */
    decode(&fx, msg.p, 10);
    cr_assert(strstr(reason, "field 'ts'") != NULL, "%s", reason);
    decode(&fx, msg.p, 3);
    cr_assert(strstr(reason, "field 'sensor_id'") != NULL, "%s", reason);
    /* trailing garbage */
    weir_buf_putc(&msg, 0);
    cr_assert_eq(decode(&fx, msg.p, msg.len), WEIR_ERR);
    cr_assert(strstr(reason, "trailing") != NULL, "%s", reason);
    weir_buf_free(&msg);
    fx_close(&fx);
}

Test(avro, bad_values_name_the_field) {
    fixture_t fx;
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    fill_all(&fx.in);
    weir_buf_reset(&fx.buf);
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
    uint8_t *m = fx.buf.p;
    size_t n = fx.buf.len;

    m[0] = 2; /* boolean byte */
    cr_assert_eq(decode(&fx, m, n), WEIR_ERR);
    cr_assert(strstr(reason, "field 'b'") != NULL, "%s", reason);
    m[0] = 1;

    /* int field: replace by 2^31 (zigzag 2^32 = 80 80 80 80 10), keep the rest */
    weir_buf_t b = {0};
    weir_buf_putc(&b, 1);
    put_long(&b, 2147483648LL);
    size_t old_int = 5; /* INT32_MIN zigzag = 2^32-1: ff ff ff ff 0f */
    weir_buf_append(&b, m + 1 + old_int, n - 1 - old_int);
    cr_assert_eq(decode(&fx, b.p, b.len), WEIR_ERR);
    cr_assert(strstr(reason, "field 'i'") != NULL && strstr(reason, "range") != NULL, "%s", reason);

    /* string length longer than the message; negative length */
    weir_buf_reset(&b);
    weir_buf_append(&b, m, 1 + 5 + 10 + 4 + 8); /* b, i, l, f, d */
    put_long(&b, 1000000000000LL);
    weir_buf_puts(&b, "xx");
    cr_assert_eq(decode(&fx, b.p, b.len), WEIR_ERR);
    cr_assert(strstr(reason, "field 's'") != NULL, "%s", reason);
    b.len = 1 + 5 + 10 + 4 + 8;
    put_long(&b, -3);
    weir_buf_puts(&b, "xx");
    cr_assert_eq(decode(&fx, b.p, b.len), WEIR_ERR);
    cr_assert(strstr(reason, "field 's'") != NULL && strstr(reason, "negative") != NULL, "%s", reason);

    /* an 11-byte varint */
    b.len = 1;
    weir_buf_append(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    cr_assert_eq(decode(&fx, b.p, b.len), WEIR_ERR);
    cr_assert(strstr(reason, "field 'i'") != NULL, "%s", reason);
    weir_buf_free(&b);
    fx_close(&fx);

    /* enum index and union branch out of range, on a small schema */
    s = load_text(REC("{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
                      "{\"name\":\"p\",\"type\":[\"null\",\"double\"]}"));
    cr_assert_not_null(s, "%s", errstr);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    cr_assert_eq(decode(&fx, "\x02\x00", 2), WEIR_OK, "%s", reason);
    cr_assert(str_is(&fx.out.v[0], "B"));
    cr_assert_eq(fx.out.v[1].type, WEIR_NULL);
    cr_assert_eq(decode(&fx, "\x04\x00", 2), WEIR_ERR);
    cr_assert(strstr(reason, "field 'e'") != NULL && strstr(reason, "enum") != NULL, "%s", reason);
    cr_assert_eq(decode(&fx, "\x01\x00", 2), WEIR_ERR); /* index -1 */
    cr_assert(strstr(reason, "field 'e'") != NULL, "%s", reason);
    cr_assert_eq(decode(&fx, "\x00\x04", 2), WEIR_ERR); /* branch 2 */
    cr_assert(strstr(reason, "field 'p'") != NULL && strstr(reason, "union") != NULL, "%s", reason);
    fx_close(&fx);
}

/* xorshift64*, deterministic */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

Test(avro, random_bytes_never_crash) {
    fixture_t fx;
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    uint8_t m[128];
    int ok = 0;
    for (int k = 0; k < 200000; k++) {
        size_t n = rnd() % sizeof(m);
        for (size_t j = 0; j < n; j++)
            m[j] = (uint8_t)rnd();
        int rc = decode(&fx, m, n);
        cr_assert(rc == WEIR_OK || rc == WEIR_ERR);
        if (rc == WEIR_ERR)
            cr_assert(strncmp(reason, "invalid Avro: ", 14) == 0, "%s", reason);
        else
            ok++;
    }
    /* mutations of a valid message: flip bits, truncate, extend */
    fill_all(&fx.in);
    weir_buf_reset(&fx.buf);
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
    cr_assert_leq(fx.buf.len, sizeof(m));
    for (int k = 0; k < 200000; k++) {
        size_t n = fx.buf.len;
        memcpy(m, fx.buf.p, n);
        int flips = 1 + (int)(rnd() % 3);
        for (int j = 0; j < flips; j++)
            m[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        if (rnd() % 4 == 0)
            n = rnd() % (n + 1);
        int rc = decode(&fx, m, n);
        cr_assert(rc == WEIR_OK || rc == WEIR_ERR);
        if (rc == WEIR_OK)
            ok++;
    }
    cr_assert_gt(ok, 0, "no mutated message decoded at all");
    fx_close(&fx);
}

Test(avro, sensor_reading_random_bytes_never_crash) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, true);
    uint8_t m[64];
    for (int k = 0; k < 100000; k++) {
        size_t n = rnd() % sizeof(m);
        for (size_t j = 0; j < n; j++)
            m[j] = (uint8_t)rnd();
        if (n)
            m[0] = 0; /* get past the magic byte */
        int rc = decode(&fx, m, n);
        cr_assert(rc == WEIR_OK || rc == WEIR_ERR);
    }
    fx_close(&fx);
}

Test(avro, large_string_grows_the_buffer) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, false);
    size_t n = 300000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    fill_reading(&fx.in, true);
    fx.in.v[5] = weir_v_str(big, n);
    fx_roundtrip(&fx);
    /* appending to a non-empty buffer keeps what was there */
    weir_buf_reset(&fx.buf);
    weir_buf_puts(&fx.buf, "XYZ");
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
    cr_assert(memcmp(fx.buf.p, "XYZ", 3) == 0);
    cr_assert_eq(decode(&fx, fx.buf.p + 3, fx.buf.len - 3), WEIR_OK, "%s", reason);
    cr_assert_eq(fx.out.v[5].u.s.n, n);
    cr_assert(memcmp(fx.out.v[5].u.s.p, big, n) == 0);
    free(big);
    fx_close(&fx);
}

Test(avro, decoded_strings_survive_the_next_decode_of_another_record) {
    /* strings are copied into the record's arena, so two records decoded
     * one after the other with the same decoder are both intact */
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_AVRO, false);
    weir_record_t second;
    weir_record_init(&second, fx.rt);
    fill_reading(&fx.in, true);
    weir_buf_reset(&fx.buf);
    weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason));
    cr_assert_eq(decode(&fx, fx.buf.p, fx.buf.len), WEIR_OK);
    fx.in.v[0] = weir_v_str("other-sensor", 12);
    weir_buf_reset(&fx.buf);
    weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason));
    cr_assert_eq(weir_decode(fx.dec, fx.buf.p, fx.buf.len, &second, reason, sizeof(reason)), WEIR_OK);
    memset(fx.buf.p, 'Z', fx.buf.len);
    cr_assert(str_is(&fx.out.v[0], "s-0042"));
    cr_assert(str_is(&second.v[0], "other-sensor"));
    weir_record_free(&second);
    fx_close(&fx);
}

Test(avro, encoder_checks_at_startup) {
    weir_schema_t *s = load_repo_schema("sensor_enriched.avsc");
    weir_rowtype_t *rt = weir_rowtype_new();
    weir_rowtype_add(rt, "sensor_id", WEIR_STRING, false);
    weir_rowtype_add(rt, "ts", WEIR_LONG, false);
    weir_rowtype_add(rt, "temperature", WEIR_DOUBLE, false);
    weir_rowtype_add(rt, "humidity", WEIR_LONG, false); /* long -> double is fine */
    weir_rowtype_add(rt, "site", WEIR_STRING, false);
    weir_rowtype_add(rt, "temp_f", WEIR_DOUBLE, false);
    /* heat_alert missing and not nullable */
    weir_encoder_t *e = weir_encoder_new(WEIR_FMT_AVRO, s, rt, false, 0, errstr, sizeof(errstr));
    cr_assert_null(e);
    char want[1024];
    snprintf(want, sizeof(want), "schema %s: field 'heat_alert' is not produced by node and is not nullable",
             weir_schema_path(s));
    cr_assert_str_eq(errstr, want);

    /* wrong type */
    weir_rowtype_add(rt, "heat_alert", WEIR_STRING, false);
    e = weir_encoder_new(WEIR_FMT_AVRO, s, rt, false, 0, errstr, sizeof(errstr));
    cr_assert_null(e);
    cr_assert(strstr(errstr, "field 'heat_alert'") != NULL && strstr(errstr, "boolean") != NULL, "%s", errstr);
    weir_rowtype_destroy(rt);

    /* the right row type; pressure (nullable) absent -> written as null; extra
     * fields of the node are not written */
    rt = weir_rowtype_new();
    weir_rowtype_add(rt, "extra", WEIR_STRING, false);
    weir_rowtype_add(rt, "heat_alert", WEIR_BOOL, false);
    weir_rowtype_add(rt, "temp_f", WEIR_DOUBLE, false);
    weir_rowtype_add(rt, "site", WEIR_STRING, false);
    weir_rowtype_add(rt, "humidity", WEIR_LONG, false);
    weir_rowtype_add(rt, "temperature", WEIR_DOUBLE, false);
    weir_rowtype_add(rt, "ts", WEIR_LONG, false);
    weir_rowtype_add(rt, "sensor_id", WEIR_STRING, false);
    e = weir_encoder_new(WEIR_FMT_AVRO, s, rt, false, 0, errstr, sizeof(errstr));
    cr_assert_not_null(e, "%s", errstr);
    weir_record_t r;
    weir_record_init(&r, rt);
    r.v[0] = weir_v_str("ignored", 7);
    r.v[1] = weir_v_bool(true);
    r.v[2] = weir_v_double(98.6);
    r.v[3] = weir_v_str("lab", 3);
    r.v[4] = weir_v_long(40);
    r.v[5] = weir_v_double(37.0);
    r.v[6] = weir_v_long(5);
    r.v[7] = weir_v_str("s1", 2);
    weir_buf_t out = {0};
    cr_assert_eq(weir_encode(e, &r, NULL, NULL, &out, reason, sizeof(reason)), WEIR_OK, "%s", reason);
    weir_decoder_t *d = weir_decoder_new(WEIR_FMT_AVRO, s, weir_schema_rowtype(s), false, errstr, sizeof(errstr));
    weir_record_t back;
    weir_record_init(&back, weir_schema_rowtype(s));
    cr_assert_eq(weir_decode(d, out.p, out.len, &back, reason, sizeof(reason)), WEIR_OK, "%s", reason);
    cr_assert(str_is(&back.v[0], "s1"));
    cr_assert_eq(back.v[1].u.i, 5);
    cr_assert_eq(back.v[2].u.d, 37.0);
    cr_assert_eq(back.v[3].type, WEIR_DOUBLE);
    cr_assert_eq(back.v[3].u.d, 40.0);
    cr_assert_eq(back.v[4].type, WEIR_NULL);
    cr_assert(str_is(&back.v[5], "lab"));
    cr_assert_eq(back.v[6].u.d, 98.6);
    cr_assert_eq(back.v[7].u.b, true);

    /* null in a non-nullable field is a run-time error naming the field */
    r.v[7] = weir_v_null();
    weir_buf_reset(&out);
    cr_assert_eq(weir_encode(e, &r, NULL, NULL, &out, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'sensor_id'") != NULL, "%s", reason);
    cr_assert_eq(out.len, 0);

    weir_record_free(&back);
    weir_record_free(&r);
    weir_buf_free(&out);
    weir_decoder_destroy(d);
    weir_encoder_destroy(e);
    weir_rowtype_destroy(rt);
    weir_schema_destroy(s);
}

Test(avro, encoder_runtime_errors) {
    weir_schema_t *s =
        load_text(REC("{\"name\":\"i\",\"type\":\"int\"},"
                      "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]}},"
                      "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}}"));
    cr_assert_not_null(s, "%s", errstr);
    fixture_t fx;
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    fx.in.v[0] = weir_v_long(7);
    fx.in.v[1] = weir_v_str("B", 1);
    fx.in.v[2] = (weir_value_t){.type = WEIR_BYTES, .u.s = {"\x00\x01", 2}};
    fx_roundtrip(&fx);

    fx.in.v[0] = weir_v_long(3000000000LL);
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'i'") != NULL && strstr(reason, "range") != NULL, "%s", reason);
    fx.in.v[0] = weir_v_long(-2147483648LL);
    fx.in.v[1] = weir_v_str("C", 1);
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'e'") != NULL && strstr(reason, "'C'") != NULL, "%s", reason);
    fx.in.v[1] = weir_v_str("A", 1);
    fx.in.v[2] = (weir_value_t){.type = WEIR_BYTES, .u.s = {"abc", 3}};
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'fx'") != NULL, "%s", reason);
    fx.in.v[2] = (weir_value_t){.type = WEIR_BYTES, .u.s = {"ab", 2}};
    fx.in.v[0] = weir_v_double(1.0); /* dynamic type differs from the static one */
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'i'") != NULL, "%s", reason);
    fx_close(&fx);
}

Test(avro, decoder_needs_matching_schema) {
    weir_schema_t *a = load_repo_schema("sensor_reading.avsc");
    weir_schema_t *b = load_repo_schema("sensor_enriched.avsc");
    cr_assert_null(weir_decoder_new(WEIR_FMT_AVRO, a, weir_schema_rowtype(b), false, errstr, sizeof(errstr)));
    cr_assert_null(weir_decoder_new(WEIR_FMT_AVRO, NULL, weir_schema_rowtype(b), false, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "schema") != NULL, "%s", errstr);
    /* a clone of the row type is fine */
    weir_rowtype_t *rt = weir_rowtype_clone(weir_schema_rowtype(a));
    weir_decoder_t *d = weir_decoder_new(WEIR_FMT_AVRO, a, rt, false, errstr, sizeof(errstr));
    cr_assert_not_null(d, "%s", errstr);
    weir_decoder_destroy(d);
    weir_rowtype_destroy(rt);
    weir_schema_destroy(a);
    weir_schema_destroy(b);
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

static void json_encode_str(fixture_t *fx, const char *key, const char *val) {
    weir_buf_reset(&fx->buf);
    cr_assert_eq(weir_encode(fx->enc, &fx->in, key, val, &fx->buf, reason, sizeof(reason)), WEIR_OK, "%s", reason);
}

Test(json, roundtrip_every_type) {
    fixture_t fx;
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s, "%s", errstr);
    fx_open(&fx, s, WEIR_FMT_JSON, false);
    fill_all(&fx.in);
    fx_roundtrip(&fx);
    fill_nulls(&fx.in);
    fx_roundtrip(&fx);
    /* doubles that need 17 digits, tiny and huge ones, -0.0 */
    static const double ds[] = {0.1,
                                1.0 / 3,
                                2.0 / 3,
                                1e-300,
                                5e-324,
                                1.7976931348623157e308,
                                -0.0,
                                123456789012345678.0,
                                20.0,
                                1e21,
                                0.30000000000000004};
    for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
        fill_all(&fx.in);
        fx.in.v[4] = weir_v_double(ds[k]);
        fx.in.v[12] = weir_v_double(-ds[k]);
        fx_roundtrip(&fx);
    }
    fx_close(&fx);
}

Test(json, encoder_exact_output) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_JSON, false);
    fill_reading(&fx.in, false);
    fx.in.v[2] = weir_v_double(20.0);
    json_encode_str(&fx, "node", "enrich");
    cr_assert_str_eq(buf_str(&fx.buf), "{\"node\":\"enrich\",\"sensor_id\":\"s-0042\",\"ts\":1700000000000,"
                                       "\"temperature\":20.0,\"humidity\":45.25,\"pressure\":null,\"site\":\"lab\"}");
    fill_reading(&fx.in, true);
    json_encode_str(&fx, NULL, NULL);
    cr_assert_str_eq(buf_str(&fx.buf), "{\"sensor_id\":\"s-0042\",\"ts\":1700000000000,\"temperature\":21.5,"
                                       "\"humidity\":45.25,\"pressure\":1013.2,\"site\":\"lab\"}");
    /* appends; NaN and Inf are written as null */
    fx.in.v[2] = weir_v_double(NAN);
    fx.in.v[3] = weir_v_double(-INFINITY);
    fx.in.v[4] = weir_v_double(INFINITY);
    fx.in.v[1] = weir_v_long(-5);
    weir_buf_reset(&fx.buf);
    weir_buf_puts(&fx.buf, "> ");
    cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK);
    cr_assert_str_eq(buf_str(&fx.buf), "> {\"sensor_id\":\"s-0042\",\"ts\":-5,\"temperature\":null,"
                                       "\"humidity\":null,\"pressure\":null,\"site\":\"lab\"}");
    fx_close(&fx);
}

static const char *json_of(const weir_value_t *v) {
    static weir_buf_t b;
    weir_buf_reset(&b);
    weir_json_append_value(&b, v);
    return buf_str(&b);
}

Test(json, value_formatting) {
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_NULL}), "null");
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_BOOL, .u.b = true}), "true");
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_BOOL, .u.b = false}), "false");
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_LONG, .u.i = 0}), "0");
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_LONG, .u.i = INT64_MIN}), "-9223372036854775808");
    cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_LONG, .u.i = INT64_MAX}), "9223372036854775807");
    static const struct {
        double d;
        const char *s;
    } dv[] = {
        {20.0, "20.0"}, /* JavaScript's String(x) (node), with ".0" after an integral value */
        {-3.0, "-3.0"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {0.1, "0.1"},
        {1.5, "1.5"},
        {1013.2, "1013.2"},
        {1.0 / 3, "0.3333333333333333"},
        {1e300, "1e+300"},
        {1e21, "1e+21"},
        {123456789012345.0, "123456789012345.0"},
        {1234567890123456789.0, "1234567890123456800.0"},
        {5e-324, "5e-324"},
        {0.30000000000000004, "0.30000000000000004"}, /* the closest 17th digit, as JavaScript (was ...07) */
        {77.76859999999999, "77.76859999999999"},
        {1.0 / 7, "0.14285714285714285"},
        {2.0 / 3 * 1e-300, "6.666666666666667e-301"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    for (size_t k = 0; k < sizeof(dv) / sizeof(dv[0]); k++)
        cr_assert_str_eq(json_of(&(weir_value_t){.type = WEIR_DOUBLE, .u.d = dv[k].d}), dv[k].s, "double %zu", k);
    weir_value_t s = weir_v_str("a\"b\\c\n\t\r\x01\x1f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 20);
    cr_assert_str_eq(json_of(&s), "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* invalid UTF-8 becomes U+FFFD; NUL is escaped */
    weir_value_t bad = weir_v_str("x\xff"
                                  "y\xc3"
                                  "\x00z\xed\xa0\x80",
                                  9);
    cr_assert_str_eq(json_of(&bad), "\"x\\ufffdy\\ufffd\\u0000z\\ufffd\\ufffd\\ufffd\"");
    weir_value_t by = {.type = WEIR_BYTES,
                       .u.s = {"\x00"
                               "A\xff\x80\"\\",
                               6}};
    cr_assert_str_eq(json_of(&by), "\"\\u0000A\\u00ff\\u0080\\\"\\\\\"");
    weir_buf_t b = {0};
    weir_json_append_str(&b, "", 0);
    weir_json_append_str(&b, "k\"", 2);
    cr_assert_eq(b.len, 7);
    cr_assert(memcmp(b.p, "\"\"\"k\\\"\"", 7) == 0);
    weir_buf_free(&b);
}

Test(json, decode_values_and_leniency) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_JSON, false);
    const char *m = "{\"site\":\"lab\",\"unknown\":[1,{\"x\":2}],\"ts\":1700000000000.0,"
                    "\"sensor_id\":\"s-\\u00e9\\u0000x\",\"temperature\":21,\"humidity\":45.25}";
    cr_assert_eq(decode(&fx, m, strlen(m)), WEIR_OK, "%s", reason);
    cr_assert_eq(fx.out.v[0].type, WEIR_STRING);
    cr_assert_eq(fx.out.v[0].u.s.n, 6);
    cr_assert(memcmp(fx.out.v[0].u.s.p, "s-\xc3\xa9\0x", 6) == 0);
    cr_assert_eq(fx.out.v[1].type, WEIR_LONG);
    cr_assert_eq(fx.out.v[1].u.i, 1700000000000LL); /* integral real accepted for long */
    cr_assert_eq(fx.out.v[2].type, WEIR_DOUBLE);
    cr_assert_eq(fx.out.v[2].u.d, 21.0);       /* integer accepted for double */
    cr_assert_eq(fx.out.v[4].type, WEIR_NULL); /* missing nullable */
    cr_assert(str_is(&fx.out.v[5], "lab"));
    /* explicit null for a nullable field; whitespace around */
    m = " {\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1.5,\"humidity\":2,\"pressure\":null,\"site\":\"b\"}\n";
    cr_assert_eq(decode(&fx, m, strlen(m)), WEIR_OK, "%s", reason);
    cr_assert_eq(fx.out.v[4].type, WEIR_NULL);
    /* not NUL-terminated input: only len bytes are read */
    char buf[256];
    m = "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1.5,\"humidity\":2,\"pressure\":3,\"site\":\"b\"}";
    memset(buf, '}', sizeof(buf));
    memcpy(buf, m, strlen(m));
    cr_assert_eq(decode(&fx, buf, strlen(m)), WEIR_OK, "%s", reason);
    cr_assert_eq(fx.out.v[4].u.d, 3.0);
    fx_close(&fx);
}

static void expect_json_error(fixture_t *fx, const char *m, const char *want) {
    cr_assert_eq(decode(fx, m, strlen(m)), WEIR_ERR, "decoded: %s", m);
    cr_assert(strstr(reason, want) != NULL, "for %s: got '%s', want '%s'", m, reason, want);
}

Test(json, decode_errors) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_JSON, false);
    expect_json_error(&fx, "{\"sensor_id\":\"a\",", "invalid JSON at line 1 column ");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\n \"ts\": x}", "invalid JSON at line 2 column ");
    expect_json_error(&fx, "", "invalid JSON at line ");
    expect_json_error(&fx, "{} {}", "invalid JSON");
    expect_json_error(&fx, "[1,2]", "expected a JSON object");
    expect_json_error(&fx, "\"s\"", "expected a JSON object");
    expect_json_error(&fx, "42", "expected a JSON object");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":\"hot\",\"humidity\":2,\"site\":\"b\"}",
                      "field 'temperature': expected double, got string");
    expect_json_error(&fx, "{\"sensor_id\":7,\"ts\":1,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "field 'sensor_id': expected string, got long");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":1.5,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "field 'ts': expected long, got double 1.5");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":1e30,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "field 'ts': expected long, got double 1e+30 (out of range)");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":true,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "field 'ts': expected long, got bool");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1,\"humidity\":{},\"site\":\"b\"}",
                      "field 'humidity': expected double, got object");
    expect_json_error(
        &fx, "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1,\"humidity\":2,\"pressure\":\"x\",\"site\":\"b\"}",
        "field 'pressure': expected double, got string");
    expect_json_error(&fx, "{\"ts\":1,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "missing required field 'sensor_id'");
    expect_json_error(&fx, "{\"sensor_id\":null,\"ts\":1,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}",
                      "missing required field 'sensor_id'");
    expect_json_error(&fx, "{}", "missing required field 'sensor_id'");
    expect_json_error(&fx, "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1,\"humidity\":2}",
                      "missing required field 'site'");
    /* a decoder keeps working after errors */
    const char *m = "{\"sensor_id\":\"a\",\"ts\":1,\"temperature\":1,\"humidity\":2,\"site\":\"b\"}";
    cr_assert_eq(decode(&fx, m, strlen(m)), WEIR_OK, "%s", reason);
    fx_close(&fx);
}

Test(json, decode_bool_and_bytes) {
    weir_rowtype_t *rt = weir_rowtype_new();
    weir_rowtype_add(rt, "flag", WEIR_BOOL, false);
    weir_rowtype_add(rt, "raw", WEIR_BYTES, true);
    weir_decoder_t *d = weir_decoder_new(WEIR_FMT_JSON, NULL, rt, false, errstr, sizeof(errstr));
    cr_assert_not_null(d, "%s", errstr);
    weir_record_t r;
    weir_record_init(&r, rt);
    const char *m = "{\"flag\":true,\"raw\":\"\\u0000A\\u00ff\xc2\x80\"}";
    cr_assert_eq(weir_decode(d, m, strlen(m), &r, reason, sizeof(reason)), WEIR_OK, "%s", reason);
    cr_assert_eq(r.v[0].u.b, true);
    cr_assert(bytes_is(&r.v[1],
                       "\x00"
                       "A\xff\x80",
                       4));
    m = "{\"flag\":false,\"raw\":\"\\u20ac\"}";
    cr_assert_eq(weir_decode(d, m, strlen(m), &r, reason, sizeof(reason)), WEIR_ERR);
    cr_assert(strstr(reason, "field 'raw'") != NULL, "%s", reason);
    m = "{\"flag\":1}";
    cr_assert_eq(weir_decode(d, m, strlen(m), &r, reason, sizeof(reason)), WEIR_ERR);
    cr_assert_str_eq(reason, "field 'flag': expected bool, got long");
    weir_record_free(&r);
    weir_decoder_destroy(d);
    weir_rowtype_destroy(rt);
}

Test(json, many_fields_hash_lookup) {
    /* enough fields to exercise collisions in the name table */
    weir_rowtype_t *rt = weir_rowtype_new();
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        weir_rowtype_add(rt, name, WEIR_LONG, false);
    }
    weir_decoder_t *d = weir_decoder_new(WEIR_FMT_JSON, NULL, rt, false, errstr, sizeof(errstr));
    weir_encoder_t *e = weir_encoder_new(WEIR_FMT_JSON, NULL, rt, false, 0, errstr, sizeof(errstr));
    weir_record_t r, back;
    weir_record_init(&r, rt);
    weir_record_init(&back, rt);
    for (int i = 0; i < 100; i++)
        r.v[i] = weir_v_long(i * 1000 - 7);
    weir_buf_t b = {0};
    cr_assert_eq(weir_encode(e, &r, NULL, NULL, &b, reason, sizeof(reason)), WEIR_OK);
    cr_assert_eq(weir_decode(d, b.p, b.len, &back, reason, sizeof(reason)), WEIR_OK, "%s", reason);
    assert_records_equal(&r, &back);
    weir_buf_free(&b);
    weir_record_free(&r);
    weir_record_free(&back);
    weir_encoder_destroy(e);
    weir_decoder_destroy(d);
    weir_rowtype_destroy(rt);
}

Test(json, random_bytes_never_crash) {
    fixture_t fx;
    fx_open(&fx, load_repo_schema("sensor_reading.avsc"), WEIR_FMT_JSON, false);
    static const char alphabet[] = "{}[]\":,0123456789.-eE truefalsnul\\u\x80\xff";
    char m[96];
    for (int k = 0; k < 50000; k++) {
        size_t n = rnd() % sizeof(m);
        for (size_t j = 0; j < n; j++)
            m[j] = (k & 1) ? (char)rnd() : alphabet[rnd() % (sizeof(alphabet) - 1)];
        int rc = decode(&fx, m, n);
        cr_assert(rc == WEIR_OK || rc == WEIR_ERR);
    }
    fx_close(&fx);
}

/*
 * The JSON decoder has a fast path for flat objects and falls back to a
 * jansson tree for everything else. Decode generated objects twice: as
 * they are, and with an extra unknown member holding an array, which the
 * fast path never takes, so the second decode always goes through jansson.
 * Both must agree on success, values and (non-syntax) error messages.
 */
Test(json, fast_path_agrees_with_jansson) {
    weir_rowtype_t *rt = weir_rowtype_new();
    weir_rowtype_add(rt, "s", WEIR_STRING, false);
    weir_rowtype_add(rt, "l", WEIR_LONG, false);
    weir_rowtype_add(rt, "d", WEIR_DOUBLE, true);
    weir_rowtype_add(rt, "b", WEIR_BOOL, true);
    weir_rowtype_add(rt, "by", WEIR_BYTES, true);
    weir_rowtype_add(rt, "ns", WEIR_STRING, true);
    weir_decoder_t *dec = weir_decoder_new(WEIR_FMT_JSON, NULL, rt, false, errstr, sizeof(errstr));
    cr_assert_not_null(dec);
    static const char *keys[] = {"s", "l", "d", "b", "by", "ns", "zz", "\\u0073", "l"};
    static const char *vals[] = {
        "\"abc\"",
        "\"\"",
        "\"h\\u00e9\"",
        "\"\\u0000\"",
        "\"\xc3\xa9\"",
        "\"\xff\"",
        "\"\xc3\"",
        "\"\xed\xa0\x80\"",
        "\"a\x01\"",
        "\"\\u00ff\"",
        "\"\\u0100\"",
        "\"\\ud83d\\ude00\"",
        "0",
        "-0",
        "17",
        "-17",
        "123456789012345678",
        "-123456789012345678",
        "1234567890123456789",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "1.0",
        "1.5",
        "-0.0",
        "1e3",
        "1E+3",
        "2.5e-3",
        "1e400",
        "1e-400",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "+1",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "nullx",
        "[]",
        "{}",
        "[1,{\"a\":2}]",
        "1.7976931348623157e308",
        "4.9e-324",
        "9007199254740993.0",
        "1e18",
        "-1e19",
    };
    static const char *ws[] = {"", "", " ", "\n\t ", "\r\n"};
    weir_record_t r1, r2;
    weir_record_init(&r1, rt);
    weir_record_init(&r2, rt);
    weir_buf_t plain = {0}, forced = {0};
    char reason2[WEIR_ERRSTR_SIZE];
    int agreed_ok = 0;
    for (int k = 0; k < 100000; k++) {
        weir_buf_reset(&plain);
        weir_buf_reset(&forced);
        weir_buf_puts(&plain, ws[rnd() % 5]);
        weir_buf_putc(&plain, '{');
        weir_buf_puts(&forced, "{\"zz_tree\":[0],");
        int nm = (int)(rnd() % 9);
        if (k % 2) /* half of them: all the required fields, good values */
            nm = 0;
        weir_buf_t members = {0};
        if (k % 2) {
            weir_buf_puts(&members, "\"s\":\"x\",\"l\":5");
            if (rnd() % 2)
                weir_buf_puts(&members, ",\"d\":2.5");
        }
        for (int m = 0; m < nm; m++) {
            if (m || members.len)
                weir_buf_puts(&members, rnd() % 8 ? "," : " , ");
            weir_buf_puts(&members, ws[rnd() % 5]);
            weir_buf_printf(&members, "\"%s\"", keys[rnd() % (sizeof(keys) / sizeof(keys[0]))]);
            weir_buf_puts(&members, ws[rnd() % 5]);
            weir_buf_putc(&members, ':');
            weir_buf_puts(&members, ws[rnd() % 5]);
            weir_buf_puts(&members, vals[rnd() % (sizeof(vals) / sizeof(vals[0]))]);
        }
        if (k % 2) { /* then overwrite-free extra members with random values */
            static const char *opt[] = {"d", "b", "by", "ns", "zz"};
            int no = (int)(rnd() % 3);
            for (int m = 0; m < no; m++)
                weir_buf_printf(&members, ",\"%s\":%s", opt[rnd() % 5], vals[rnd() % (sizeof(vals) / sizeof(vals[0]))]);
        }
        weir_buf_append(&plain, members.p, members.len);
        if (members.len)
            weir_buf_append(&forced, members.p, members.len);
        else
            forced.len--; /* drop the comma */
        weir_buf_puts(&plain, ws[rnd() % 5]);
        weir_buf_putc(&plain, '}');
        weir_buf_putc(&forced, '}');
        weir_buf_puts(&plain, ws[rnd() % 5]);
        weir_buf_free(&members);

        /* exact-size copies: a sanitizer build catches reads past the end */
        char *c1 = malloc(plain.len), *c2 = malloc(forced.len);
        memcpy(c1, plain.p, plain.len);
        memcpy(c2, forced.p, forced.len);
        int rc1 = weir_decode(dec, c1, plain.len, &r1, reason, sizeof(reason));
        int rc2 = weir_decode(dec, c2, forced.len, &r2, reason2, sizeof(reason2));
        free(c1);
        free(c2);
        cr_assert_eq(rc1, rc2, "disagree on %s: '%s' vs '%s'", buf_str(&plain), rc1 ? reason : "ok",
                     rc2 ? reason2 : "ok");
        if (rc1 == WEIR_OK) {
            assert_records_equal(&r1, &r2);
            agreed_ok++;
        } else if (strncmp(reason, "invalid JSON", 12) != 0) {
            cr_assert_str_eq(reason, reason2, "on %s", buf_str(&plain));
        }
    }
    cr_assert_gt(agreed_ok, 10000, "only %d successful decodes", agreed_ok);
    weir_buf_free(&plain);
    weir_buf_free(&forced);
    weir_record_free(&r1);
    weir_record_free(&r2);
    weir_decoder_destroy(dec);
    weir_rowtype_destroy(rt);
}

/* ------------------------------------------------------------------------ */
/* Avro: weir's own binary encoder/decoder against avro-c's generic writer   */
/* ------------------------------------------------------------------------ */

/* A random value of field i of ALL_TYPES (null for the nullable ones now and then). */
static void random_all(weir_record_t *r, char strbuf[][40]) {
    static const char *colors[] = {"RED", "GREEN", "BLUE"};
    static const int64_t edges[] = {0, -1, 1, 63, -64, 64, INT64_MAX, INT64_MIN, 1LL << 35};
    for (int i = 0; i < 16; i++) {
        if (i >= 10 && rnd() % 3 == 0) {
            r->v[i] = (weir_value_t){.type = WEIR_NULL};
            continue;
        }
        size_t n = (size_t)(rnd() % 40);
        for (size_t k = 0; k < n; k++)
            strbuf[i][k] = (char)(i == 5 || i == 13 ? 'a' + rnd() % 26 : rnd() % 256);
        int64_t big = rnd() % 2 ? edges[rnd() % 9] : (int64_t)rnd() >> (rnd() % 64);
        double d;
        uint64_t bits = rnd();
        memcpy(&d, &bits, sizeof(d));
        if (isnan(d))
            d = 0.25;
        switch (i) {
        case 0:
        case 10: r->v[i] = weir_v_bool(rnd() % 2); break;
        case 1: r->v[i] = weir_v_long((int32_t)rnd()); break;
        case 2:
        case 11: r->v[i] = weir_v_long(big); break;
        case 3: r->v[i] = weir_v_double((float)(d > 1e30 || d < -1e30 ? 1.0 / 3 : d)); break;
        case 4:
        case 12: r->v[i] = weir_v_double(d); break;
        case 5:
        case 13: r->v[i] = weir_v_str(strbuf[i], n); break;
        case 6:
        case 14: r->v[i] = (weir_value_t){.type = WEIR_BYTES, .u.s = {strbuf[i], n}}; break;
        case 7: r->v[i] = (weir_value_t){.type = WEIR_BYTES, .u.s = {strbuf[i], 4}}; break;
        default:
            r->v[i] = weir_v_str(colors[rnd() % 3], 0);
            r->v[i].u.s.n = strlen(r->v[i].u.s.p);
            break;
        }
    }
}

/* Set avro-c's generic value from r (the same mapping as ALL_TYPES). */
static void avro_c_set(avro_value_t *rec, const weir_record_t *r, const int *null_branch) {
    for (int i = 0; i < 16; i++) {
        avro_value_t fv, bv, *dst = &fv;
        cr_assert_eq(avro_value_get_by_index(rec, (size_t)i, &fv, NULL), 0);
        const weir_value_t *v = &r->v[i];
        if (i >= 10) {
            int nb = null_branch[i];
            if (v->type == WEIR_NULL) {
                cr_assert_eq(avro_value_set_branch(&fv, nb, &bv), 0);
                cr_assert_eq(avro_value_set_null(&bv), 0);
                continue;
            }
            cr_assert_eq(avro_value_set_branch(&fv, 1 - nb, &bv), 0);
            dst = &bv;
        }
        char tmp[64];
        switch (i) {
        case 0:
        case 10: avro_value_set_boolean(dst, v->u.b); break;
        case 1: avro_value_set_int(dst, (int32_t)v->u.i); break;
        case 2:
        case 11: avro_value_set_long(dst, v->u.i); break;
        case 3: avro_value_set_float(dst, (float)v->u.d); break;
        case 4:
        case 12: avro_value_set_double(dst, v->u.d); break;
        case 5:
        case 13:
            memcpy(tmp, v->u.s.p, v->u.s.n);
            tmp[v->u.s.n] = '\0';
            avro_value_set_string_len(dst, tmp, v->u.s.n + 1);
            break;
        case 6:
        case 14: avro_value_set_bytes(dst, (void *)v->u.s.p, v->u.s.n); break;
        case 7: avro_value_set_fixed(dst, (void *)v->u.s.p, 4); break;
        default: {
            int sym = !strcmp(v->u.s.p, "RED") ? 0 : !strcmp(v->u.s.p, "GREEN") ? 1 : 2;
            avro_value_set_enum(dst, sym);
        }
        }
    }
}

Test(avro, bytes_identical_to_avro_c_on_random_records) {
    fixture_t fx;
    weir_schema_t *s = load_text(ALL_TYPES);
    cr_assert_not_null(s, "%s", errstr);
    fx_open(&fx, s, WEIR_FMT_AVRO, false);
    avro_schema_t as = NULL;
    cr_assert_eq(avro_schema_from_json_length(ALL_TYPES, strlen(ALL_TYPES), &as), 0, "%s", avro_strerror());
    avro_value_iface_t *iface = avro_generic_class_from_schema(as);
    avro_value_t val;
    cr_assert_eq(avro_generic_value_new(iface, &val), 0);
    /* null's branch per union field of ALL_TYPES (index 10..15) */
    static const int null_branch[16] = {[10] = 0, [11] = 1, [12] = 0, [13] = 1, [14] = 0, [15] = 0};
    static char want[4096];
    char strbuf[16][40];
    for (int iter = 0; iter < 20000; iter++) {
        random_all(&fx.in, strbuf);
        avro_c_set(&val, &fx.in, null_branch);
        avro_writer_t w = avro_writer_memory(want, sizeof(want));
        cr_assert_eq(avro_value_write(w, &val), 0, "%s", avro_strerror());
        size_t wn = (size_t)avro_writer_tell(w);
        avro_writer_free(w);
        weir_buf_reset(&fx.buf);
        cr_assert_eq(weir_encode(fx.enc, &fx.in, NULL, NULL, &fx.buf, reason, sizeof(reason)), WEIR_OK, "record %d: %s",
                     iter, reason);
        cr_assert_eq(fx.buf.len, wn, "record %d: %zu bytes, avro-c wrote %zu", iter, fx.buf.len, wn);
        cr_assert(memcmp(fx.buf.p, want, wn) == 0, "record %d: bytes differ from avro-c's", iter);
        /* avro-c's bytes decode to the record (weir's decoder never reads past wn: exact copy) */
        cr_assert_eq(decode(&fx, want, wn), WEIR_OK, "record %d: %s", iter, reason);
        assert_records_equal(&fx.in, &fx.out);
    }
    avro_value_decref(&val);
    avro_value_iface_decref(iface);
    avro_schema_decref(as);
    fx_close(&fx);
}
