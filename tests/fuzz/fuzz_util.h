/**
 * @file fuzz_util.h
 * @brief Small helpers shared by the libFuzzer harnesses in tests/fuzz/:
 *        records filled with awkward but legal values, a sink that discards,
 *        a stream that discards, and value comparison for round-trip checks.
 *
 * Header-only (static inline functions) so that each harness stays one .c file.
 * A harness reports a broken invariant with FUZZ_CHECK, which aborts: libFuzzer
 * then saves the input as a crash reproducer like any sanitizer report.
 */
#ifndef WEIR_FUZZ_UTIL_H
#define WEIR_FUZZ_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "record.h"
#include "task.h"

#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                             \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/** A stream that throws its output away (weir_*_print). Opened once. */
static inline FILE *fuzz_devnull(void) {
    static FILE *fp;
    if (fp == NULL)
        fp = fopen("/dev/null", "w");
    return fp;
}

/*
 * Fill rec (initialised for its row type) with row `variant` of a small
 * table of values every type can legally hold: zero and empty, ordinary
 * values, extremes (INT64_MIN/MAX, NaN, +-inf, -0.0, huge doubles), strings
 * that are not ASCII or not UTF-8, bytes with NULs, and -- for nullable
 * fields -- nulls. ts is set from `variant` too.
 */
static inline void fuzz_fill_record(weir_record_t *rec, int variant) {
    static const int64_t longs[] = {0, 1, -7, 1700000000000LL, INT64_MIN, INT64_MAX, INT64_MIN + 1, -1};
    static const double dbls[] = {0.0, 21.5, -0.0, NAN, INFINITY, -1e308, 1e-310, -40.0};
#define FUZZ_S(lit)                                                                                                    \
    { lit, sizeof(lit) - 1 }
    static const struct {
        const char *p;
        size_t n;
    } strs[] = {FUZZ_S(""),           FUZZ_S("s-1"),
                FUZZ_S("s-2"),        FUZZ_S("\xc3\x84rger \xff"),
                FUZZ_S("S-1"),        FUZZ_S("2024-01-02T03:04:05Z"),
                FUZZ_S("1970-01-01"), FUZZ_S("a\0b")};
#undef FUZZ_S
    const weir_rowtype_t *rt = rec->rt;
    int k = variant & 7;
    weir_record_clear(rec);
    for (int i = 0; i < rt->nfields; i++) {
        const weir_field_t *f = &rt->fields[i];
        weir_value_t *v = &rec->v[i];
        int j = (k + i) & 7;
        if ((f->nullable && j == 3) || f->type == WEIR_NULL) {
            *v = weir_v_null();
            continue;
        }
        switch (f->type) {
        case WEIR_BOOL: weir_set_bool(v, j & 1); break;
        case WEIR_LONG: weir_set_long(v, longs[j]); break;
        case WEIR_DOUBLE: weir_set_double(v, dbls[j]); break;
        case WEIR_STRING: weir_set_str(v, WEIR_STRING, strs[j].p, strs[j].n); break;
        case WEIR_BYTES: weir_set_str(v, WEIR_BYTES, strs[7 - j].p, strs[7 - j].n); break;
        case WEIR_NULL: break;
        }
    }
    rec->ts = 1700000000000LL + 1000 * (int64_t)variant;
    rec->partition = 0;
    rec->offset = variant;
}

/** Two values equal as the codecs must keep them: NaN equals NaN, -0.0 equals 0.0 only for JSON. */
static inline int fuzz_value_equal(const weir_value_t *a, const weir_value_t *b, int signed_zero) {
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case WEIR_NULL: return 1;
    case WEIR_BOOL: return a->u.b == b->u.b;
    case WEIR_LONG: return a->u.i == b->u.i;
    case WEIR_DOUBLE:
        if (isnan(a->u.d) || isnan(b->u.d))
            return isnan(a->u.d) && isnan(b->u.d);
        if (signed_zero && a->u.d == 0.0 && b->u.d == 0.0)
            return signbit(a->u.d) == signbit(b->u.d);
        return a->u.d == b->u.d;
    case WEIR_STRING:
    case WEIR_BYTES: return a->u.s.n == b->u.s.n && (a->u.s.n == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0);
    }
    return 0;
}

/** `weir state dump` of every node of a task's graph must be one valid JSON value (integers of any size:
 * counters are u64). */
static inline void fuzz_check_dumps(const weir_task_t *t) {
    weir_buf_t out = {0};
    const weir_pipeline_t *pl = weir_task_pipeline(t);
    for (int i = 0; i < pl->nnodes; i++) {
        const weir_plan_t *plan = &pl->nodes[i].plan;
        if (plan->cls->dump == NULL)
            continue;
        weir_buf_reset(&out);
        FUZZ_CHECK(plan->cls->dump(weir_task_node_state(t, i), &out) == WEIR_OK, "dump of node '%s' failed", plan->name);
        json_error_t jerr;
        json_t *j =
            json_loadb((const char *)out.p, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
        FUZZ_CHECK(j != NULL, "dump of node '%s' is not JSON (%s): %.*s", plan->name, jerr.text,
                   (int)(out.len > 300 ? 300 : out.len), (const char *)out.p);
        json_decref(j);
    }
    weir_buf_free(&out);
}

#endif
