/* The repartition wire pieces: Kafka's murmur2 and the compact record form (schemas/rowbin.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "murmur2.h"
#include "rowbin.h"

/* Apache Kafka's own vectors (clients/src/test/.../UtilsTest.java, testMurmur2). */
Test(murmur2, java_client_vectors) {
    static const struct {
        const char *s;
        int32_t h;
    } v[] = {{"21", -973932308},
             {"foobar", -790332482},
             {"a-little-bit-long-string", -985981536},
             {"a-little-bit-longer-string", -1486304829},
             {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
             {"abc", 479470107}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cr_assert_eq(weir_murmur2(v[i].s, strlen(v[i].s)), v[i].h, "murmur2(%s)", v[i].s);
    /* toPositive(-790332482) = 1357151166; % 10 = 6 (the Java partitioner's arithmetic) */
    cr_assert_eq(weir_murmur2_partition("foobar", 6, 10), 6);
}

static weir_rowtype_t *all_types(void) {
    weir_rowtype_t *rt = weir_rowtype_new();
    weir_rowtype_add(rt, "b", WEIR_BOOL, true);
    weir_rowtype_add(rt, "l", WEIR_LONG, false);
    weir_rowtype_add(rt, "d", WEIR_DOUBLE, true);
    weir_rowtype_add(rt, "s", WEIR_STRING, true);
    weir_rowtype_add(rt, "y", WEIR_BYTES, false);
    return rt;
}

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void assert_same(const weir_record_t *a, const weir_record_t *b) {
    cr_assert_eq(a->ts, b->ts);
    cr_assert_eq(!a->key, !b->key);
    if (a->key)
        cr_assert(a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len));
    cr_assert_eq(!a->topic, !b->topic);
    if (a->topic) {
        cr_assert_str_eq(a->topic, b->topic);
        cr_assert_eq(a->partition, b->partition);
        cr_assert_eq(a->offset, b->offset);
    }
    for (int i = 0; i < a->rt->nfields; i++) {
        const weir_value_t *x = &a->v[i], *y = &b->v[i];
        cr_assert_eq(x->type, y->type, "field %d", i);
        switch (x->type) {
        case WEIR_NULL: break;
        case WEIR_BOOL: cr_assert_eq(x->u.b, y->u.b); break;
        case WEIR_LONG: cr_assert_eq(x->u.i, y->u.i); break;
        case WEIR_DOUBLE: cr_assert(!memcmp(&x->u.d, &y->u.d, 8), "double bits of field %d", i); break;
        default: cr_assert(x->u.s.n == y->u.s.n && !memcmp(x->u.s.p, y->u.s.p, x->u.s.n));
        }
    }
}

/* Random records (every type, nulls, extreme values, NUL bytes, with and without
 * key, time and origin) come back value for value, bit for bit. */
Test(rowbin, round_trip_random_records) {
    weir_rowtype_t *rt = all_types();
    weir_record_t in, out;
    weir_record_init(&in, rt);
    weir_record_init(&out, rt);
    weir_buf_t b = {0};
    uint64_t st = 0x1234567887654321ULL;
    static const int64_t longs[] = {0, -1, 1, INT64_MIN, INT64_MAX, 63, -64, 64, 1700000000000};
    char str[64], key[16];
    for (int n = 0; n < 20000; n++) {
        weir_record_clear(&in);
        uint64_t r = xs(&st);
        if (r & 1)
            weir_set_bool(&in.v[0], (r >> 1) & 1);
        weir_set_long(&in.v[1], (r >> 2) & 1 ? longs[(r >> 3) % 9] : (int64_t)xs(&st));
        if (r & 64) {
            uint64_t u = xs(&st);
            double d;
            memcpy(&d, &u, 8); /* any bit pattern, NaNs included */
            weir_set_double(&in.v[2], d);
        }
        size_t sn = (size_t)(xs(&st) % sizeof(str));
        for (size_t k = 0; k < sn; k++)
            str[k] = (char)xs(&st);
        if (r & 128)
            weir_set_str(&in.v[3], WEIR_STRING, str, sn);
        weir_set_str(&in.v[4], WEIR_BYTES, str, sn / 2);
        in.ts = (r & 256) ? (int64_t)(xs(&st) >> 20) - (1LL << 43) : WEIR_TS_NONE;
        snprintf(key, sizeof(key), "k%d", n % 97);
        in.key = (r & 512) ? key : NULL;
        in.key_len = in.key ? strlen(key) : 0;
        in.topic = (r & 1024) ? "sensor.readings" : NULL;
        in.partition = in.topic ? (int32_t)(n % 16) : -1;
        in.offset = in.topic ? n * 3LL : -1;
        weir_buf_reset(&b);
        weir_rowbin_encode(&in, &b);
        char reason[256];
        cr_assert_eq(weir_rowbin_decode(b.p, b.len, &out, reason, sizeof(reason)), WEIR_OK, "%s", reason);
        assert_same(&in, &out);
    }
    weir_buf_free(&b);
    weir_record_free(&in);
    weir_record_free(&out);
    weir_rowtype_destroy(rt);
}

/* Every truncation and a wrong version, type or field count is refused with a reason, never misread. */
Test(rowbin, refuses_what_it_cannot_read) {
    weir_rowtype_t *rt = all_types();
    weir_record_t in, out;
    weir_record_init(&in, rt);
    weir_record_init(&out, rt);
    weir_set_bool(&in.v[0], true);
    weir_set_long(&in.v[1], 1LL << 40);
    weir_set_double(&in.v[2], 2.5);
    weir_set_str(&in.v[3], WEIR_STRING, "hello", 5);
    weir_set_str(&in.v[4], WEIR_BYTES, "\0\1", 2);
    in.ts = 1700000000000;
    in.key = "s1";
    in.key_len = 2;
    in.topic = "t";
    in.partition = 3;
    in.offset = 99;
    weir_buf_t b = {0};
    weir_rowbin_encode(&in, &b);
    char reason[256];
    for (size_t n = 0; n < b.len; n++)
        cr_assert_eq(weir_rowbin_decode(b.p, n, &out, reason, sizeof(reason)), WEIR_ERR, "prefix of %zu bytes", n);
    b.p[0] = 7;
    cr_assert_eq(weir_rowbin_decode(b.p, b.len, &out, reason, sizeof(reason)), WEIR_ERR);
    cr_assert_str_eq(reason, "rowbin: version 7, this weir reads 1");
    b.p[0] = WEIR_ROWBIN_VERSION;
    /* the same bytes read with a row type whose field 2 is a long */
    weir_rowtype_t *other = weir_rowtype_new();
    weir_rowtype_add(other, "b", WEIR_BOOL, true);
    weir_rowtype_add(other, "l", WEIR_LONG, false);
    weir_rowtype_add(other, "mean", WEIR_LONG, true);
    weir_rowtype_add(other, "s", WEIR_STRING, true);
    weir_rowtype_add(other, "y", WEIR_BYTES, false);
    weir_record_t o2;
    weir_record_init(&o2, other);
    cr_assert_eq(weir_rowbin_decode(b.p, b.len, &o2, reason, sizeof(reason)), WEIR_ERR);
    cr_assert_str_eq(reason, "rowbin: field 2 'mean': double where long expected");
    /* a null in a field that is not nullable */
    weir_record_clear(&in);
    weir_buf_reset(&b);
    weir_rowbin_encode(&in, &b);
    cr_assert_eq(weir_rowbin_decode(b.p, b.len, &out, reason, sizeof(reason)), WEIR_ERR);
    cr_assert_str_eq(reason, "rowbin: field 1 'l': null where long expected");
    weir_record_free(&o2);
    weir_rowtype_destroy(other);
    weir_buf_free(&b);
    weir_record_free(&in);
    weir_record_free(&out);
    weir_rowtype_destroy(rt);
}
