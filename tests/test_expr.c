/**
 * @file test_expr.c
 * @brief Table-driven tests of the expression language (processor/expr.c).
 *
 * Every row names an expression, the field values it runs on (a fixed
 * default record plus per-row overrides) and the expected static type and
 * value, or the exact compile error. Expected values are written out by hand
 * (or from IEEE 754 double arithmetic done elsewhere), never produced by the
 * code under test. Rows come in pairs where it matters: once on fields, so
 * the run-time evaluator is exercised, and once on literals, so the constant
 * folder is too.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expr.h"

/* Table rows leave the trailing `set` overrides out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* ---- values in tables ------------------------------------------------------------------------ */

#define NUL                                                                                                            \
    { .type = WEIR_NULL }
#define L(x)                                                                                                           \
    { .type = WEIR_LONG, .u.i = (x) }
#define D(x)                                                                                                           \
    { .type = WEIR_DOUBLE, .u.d = (x) }
#define B(x)                                                                                                           \
    { .type = WEIR_BOOL, .u.b = (x) }
#define S(x)                                                                                                           \
    {                                                                                                                  \
        .type = WEIR_STRING, .u.s = {(x), sizeof(x) - 1 }                                                              \
    }
#define X(x)                                                                                                           \
    {                                                                                                                  \
        .type = WEIR_BYTES, .u.s = {(x), sizeof(x) - 1 }                                                               \
    }

#define T_ WEIR_BOOL
#define L_ WEIR_LONG
#define D_ WEIR_DOUBLE
#define S_ WEIR_STRING
#define X_ WEIR_BYTES
#define N_ WEIR_NULL

typedef struct set {
    const char *field; /**< NULL ends the list */
    weir_value_t v;
} set_t;

typedef struct eval_case {
    const char *src;
    weir_type_t type;  /**< expected static type */
    weir_value_t want; /**< expected value (type WEIR_NULL for null) */
    set_t set[3];      /**< field values that differ from the default record */
} eval_case_t;

/* ---- the row type every test compiles against ------------------------------------------------ */

static const struct {
    const char *name;
    weir_type_t type;
    bool nullable;
    weir_value_t dflt;
} fields[] = {
    {"i", WEIR_LONG, false, L(7)},                /* 0 */
    {"j", WEIR_LONG, false, L(-3)},               /* 1 */
    {"n", WEIR_LONG, true, NUL},                  /* 2 */
    {"d", WEIR_DOUBLE, false, D(2.5)},            /* 3 */
    {"e", WEIR_DOUBLE, false, D(-0.5)},           /* 4 */
    {"dn", WEIR_DOUBLE, true, NUL},               /* 5 */
    {"s", WEIR_STRING, false, S("abc")},          /* 6 */
    {"t", WEIR_STRING, false, S("abd")},          /* 7 */
    {"sn", WEIR_STRING, true, NUL},               /* 8 */
    {"b", WEIR_BOOL, false, B(true)},             /* 9 */
    {"p", WEIR_BOOL, true, NUL},                  /* 10 */
    {"q", WEIR_BOOL, true, NUL},                  /* 11 */
    {"x", WEIR_BYTES, true, NUL},                 /* 12 */
    {"temperature", WEIR_DOUBLE, false, D(21.5)}, /* 13 */
    {"a.b", WEIR_LONG, false, L(42)},             /* 14 */
    {"weird name", WEIR_STRING, false, S("w")},   /* 15 */
    {"nil", WEIR_NULL, true, NUL},                /* 16: a column that is always null */
};

static weir_rowtype_t *rt;

static void setup(void) {
    rt = weir_rowtype_new();
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
        cr_assert_eq(weir_rowtype_add(rt, fields[k].name, fields[k].type, fields[k].nullable), (int)k);
}

static void teardown(void) { weir_rowtype_destroy(rt); }

/** @brief The default record with the row's overrides applied. */
static void make_record(weir_record_t *r, const set_t *set, size_t nset) {
    weir_record_init(r, rt);
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
        r->v[k] = fields[k].dflt;
    for (size_t k = 0; k < nset && set[k].field; k++) {
        int slot = weir_rowtype_find(rt, set[k].field);
        cr_assert_geq(slot, 0, "bad test row: no field %s", set[k].field);
        r->v[slot] = set[k].v;
    }
}

static bool same_double(double got, double want) {
    if (isnan(want))
        return isnan(got);
    if (isinf(want) || want == 0.0)
        return got == want && signbit(got) == signbit(want);
    return fabs(got - want) <= 1e-12 * fabs(want);
}

static bool same_value(const weir_value_t *got, const weir_value_t *want) {
    if (got->type != want->type)
        return false;
    switch (want->type) {
    case WEIR_NULL: return true;
    case WEIR_BOOL: return got->u.b == want->u.b;
    case WEIR_LONG: return got->u.i == want->u.i;
    case WEIR_DOUBLE: return same_double(got->u.d, want->u.d);
    default:
        return got->u.s.n == want->u.s.n && (want->u.s.n == 0 || memcmp(got->u.s.p, want->u.s.p, want->u.s.n) == 0);
    }
}

static void fmt_value(const weir_value_t *v, char *buf, size_t size) {
    switch (v->type) {
    case WEIR_NULL: snprintf(buf, size, "null"); break;
    case WEIR_BOOL: snprintf(buf, size, "%s", v->u.b ? "true" : "false"); break;
    case WEIR_LONG: snprintf(buf, size, "%" PRId64, v->u.i); break;
    case WEIR_DOUBLE: snprintf(buf, size, "%.17g", v->u.d); break;
    default: snprintf(buf, size, "%s'%.*s'", v->type == WEIR_BYTES ? "b" : "", (int)v->u.s.n, v->u.s.p); break;
    }
}

/**
 * @brief Compile, check the static type, evaluate, check the value.
 * @param honours_rowtype the records hold what the row type says, so a null
 *        result must have been announced by weir_expr_nullable()
 */
static void run_eval_cases(const eval_case_t *rows, size_t nrows, bool honours_rowtype) {
    for (size_t k = 0; k < nrows; k++) {
        const eval_case_t *c = &rows[k];
        char err[WEIR_ERRSTR_SIZE] = "";
        weir_expr_t *e = weir_expr_compile(c->src, rt, err, sizeof(err));
        cr_expect(e != NULL, "[%s] does not compile: %s", c->src, err);
        if (!e)
            continue;
        cr_expect_eq(weir_expr_type(e), c->type, "[%s] static type %s, want %s", c->src,
                     weir_type_name(weir_expr_type(e)), weir_type_name(c->type));
        weir_record_t r;
        make_record(&r, c->set, sizeof(c->set) / sizeof(c->set[0]));
        weir_arena_t arena = {0};
        weir_value_t got;
        memset(&got, 0xA5, sizeof(got));
        weir_expr_eval(e, &r, &arena, &got);
        char gs[128], ws[128];
        fmt_value(&got, gs, sizeof(gs));
        fmt_value(&c->want, ws, sizeof(ws));
        cr_expect(same_value(&got, &c->want), "[%s] = %s (%s), want %s (%s)", c->src, gs, weir_type_name(got.type), ws,
                  weir_type_name(c->want.type));
        /* a non-null result has the static type; a null one is allowed by nullable */
        if (got.type != WEIR_NULL)
            cr_expect_eq(got.type, weir_expr_type(e), "[%s] run-time type differs from static type", c->src);
        else if (honours_rowtype)
            cr_expect(weir_expr_nullable(e), "[%s] evaluated to null but nullable() is false", c->src);
        weir_arena_free(&arena);
        weir_record_free(&r);
        weir_expr_destroy(e);
    }
}

#define RUN(rows) run_eval_cases(rows, sizeof(rows) / sizeof(rows[0]), true)

/* ---- literals -------------------------------------------------------------------------------- */

static const eval_case_t literal_rows[] = {
    {"0", L_, L(0)},
    {"42", L_, L(42)},
    {"007", L_, L(7)},
    {"9223372036854775807", L_, L(INT64_MAX)},
    {"-9223372036854775808", L_, L(INT64_MIN)},
    {"1.5", D_, D(1.5)},
    {"1.", D_, D(1.0)},
    {".5", D_, D(0.5)},
    {"1e3", D_, D(1000.0)},
    {"1.5e2", D_, D(150.0)},
    {"2.5E-1", D_, D(0.25)},
    {"1e+2", D_, D(100.0)},
    {"1e-400", D_, D(0.0)}, /* underflow is fine: rounds to 0 */
    {"'abc'", S_, S("abc")},
    {"\"abc\"", S_, S("abc")},
    {"''", S_, S("")},
    {"'it\\'s'", S_, S("it's")},
    {"\"say \\\"hi\\\"\"", S_, S("say \"hi\"")},
    {"'a\"b'", S_, S("a\"b")},
    {"\"a'b\"", S_, S("a'b")},
    {"'back\\\\slash'", S_, S("back\\slash")},
    {"'\\n\\t\\r'", S_, S("\n\t\r")},
    {"'\\x41\\x7a'", S_, S("Az")},
    {"'\\u00e9\\u20AC'", S_, S("\xc3\xa9\xe2\x82\xac")},
    {"'a\\0b'", S_, S("a\0b")},
    {"'caf\xc3\xa9'", S_, S("caf\xc3\xa9")},
    {"true", T_, B(true)},
    {"false", T_, B(false)},
    {"TRUE", T_, B(true)},
    {"False", T_, B(false)},
    {"null", N_, NUL},
    {"NULL", N_, NUL},
    {"  \t\n 1 \r\n", L_, L(1)},
    {"(((1)))", L_, L(1)},
};

Test(expr, literals, .init = setup, .fini = teardown) { RUN(literal_rows); }

/* ---- fields ---------------------------------------------------------------------------------- */

static const eval_case_t field_rows[] = {
    {"i", L_, L(7)},
    {"j", L_, L(-3)},
    {"n", L_, NUL},
    {"n", L_, L(5), {{"n", L(5)}}},
    {"d", D_, D(2.5)},
    {"dn", D_, NUL},
    {"s", S_, S("abc")},
    {"sn", S_, NUL},
    {"b", T_, B(true)},
    {"p", T_, NUL},
    {"x", X_, NUL},
    {"x", X_, X("\x01\x02"), {{"x", X("\x01\x02")}}},
    {"a.b", L_, L(42)},
    {"`a.b`", L_, L(42)},
    {"`weird name`", S_, S("w")},
    {"`i`", L_, L(7)},
    {"nil", N_, NUL},
};

/* Records that do not hold what their row type says (a codec bug). */
static const eval_case_t mistyped_rows[] = {
    /* a long in a double slot reads as a double */
    {"d * 2", D_, D(6.0), {{"d", L(3)}}},
    {"d", D_, D(3.0), {{"d", L(3)}}},
    {"d > 2.5", T_, B(true), {{"d", L(3)}}},
    /* a value of another type reads as null, never as garbage */
    {"i + 1", L_, NUL, {{"i", S("x")}}},
    {"d + 1", D_, NUL, {{"d", B(true)}}},
    {"b and true", T_, NUL, {{"b", L(1)}}},
    {"i > 3", T_, NUL, {{"i", D(4.0)}}},
    {"s = 'x'", T_, NUL, {{"s", L(1)}}},
    /* a null in a slot declared not nullable is still null */
    {"i + 1", L_, NUL, {{"i", NUL}}},
    {"i is null", T_, B(true), {{"i", NUL}}},
};

Test(expr, fields, .init = setup, .fini = teardown) { RUN(field_rows); }
Test(expr, mistyped_records, .init = setup, .fini = teardown) {
    run_eval_cases(mistyped_rows, sizeof(mistyped_rows) / sizeof(mistyped_rows[0]), false);
}

/* ---- arithmetic and promotion ---------------------------------------------------------------- */

static const eval_case_t arith_rows[] = {
    {"i + j", L_, L(4)},
    {"i - j", L_, L(10)},
    {"i * j", L_, L(-21)},
    {"i / j", D_, D(-2.3333333333333335)},
    {"i / 2", D_, D(3.5)},
    {"6 / 3", D_, D(2.0)},
    {"i % 3", L_, L(1)},
    {"i % j", L_, L(1)}, /* sign of the dividend, as C */
    {"-i % 3", L_, L(-1)},
    {"j % 2", L_, L(-1)},
    {"7 % -3", L_, L(1)},
    {"-7 % 3", L_, L(-1)},
    {"d + e", D_, D(2.0)},
    {"d - e", D_, D(3.0)},
    {"d * e", D_, D(-1.25)},
    {"d / e", D_, D(-5.0)},
    {"d % 1", D_, D(0.5)},
    {"-d % 2", D_, D(-0.5)},
    {"7.5 % 2", D_, D(1.5)},
    {"i % 2.5", D_, D(2.0)},
    {"i + d", D_, D(9.5)},
    {"d + i", D_, D(9.5)},
    {"i * d", D_, D(17.5)},
    {"d - i", D_, D(-4.5)},
    {"i - 0.5", D_, D(6.5)},
    {"1 + 0.5", D_, D(1.5)},
    {"-i", L_, L(-7)},
    {"-d", D_, D(-2.5)},
    {"- -i", L_, L(7)},
    {"-(-(-d))", D_, D(-2.5)},
    {"-j", L_, L(3)},
    {"1 + 2 * 3", L_, L(7)},
    {"(1 + 2) * 3", L_, L(9)},
    {"i - j - 1", L_, L(9)},
    {"i - (j - 1)", L_, L(11)},
    {"16 / 4 / 2", D_, D(2.0)},
    {"2 * -3", L_, L(-6)},
    {"-2 * 3", L_, L(-6)},
    {"i + j * 2", L_, L(1)},
    {"i * 2 % 5", L_, L(4)},
    {"i - -j", L_, L(4)},
    {"temperature * 9 / 5 + 32", D_, D(70.7)},
    {"a.b + 1", L_, L(43)},
    {"`a.b` * `a.b`", L_, L(1764)},
    {"0.1 + 0.2", D_, D(0.30000000000000004)},
    {"i+j*2-(i%4)", L_, L(-2)},
};

Test(expr, arithmetic, .init = setup, .fini = teardown) { RUN(arith_rows); }

/* ---- long overflow wraps; division and modulo by zero give null ------------------------------ */

static const eval_case_t overflow_rows[] = {
    {"i + 1", L_, L(INT64_MIN), {{"i", L(INT64_MAX)}}},
    {"i * 2", L_, L(-2), {{"i", L(INT64_MAX)}}},
    {"j - 1", L_, L(INT64_MAX), {{"j", L(INT64_MIN)}}},
    {"-j", L_, L(INT64_MIN), {{"j", L(INT64_MIN)}}},
    {"abs(j)", L_, L(INT64_MIN), {{"j", L(INT64_MIN)}}},
    {"j % -1", L_, L(0), {{"j", L(INT64_MIN)}}},
    {"i % j", L_, L(0), {{"i", L(INT64_MIN)}, {"j", L(-1)}}},
    {"j / -1", D_, D(9223372036854775808.0), {{"j", L(INT64_MIN)}}},
    {"i * i", L_, L(0), {{"i", L(4294967296)}}},                    /* 2^64 */
    {"i * i", L_, L(-9223372036709301616), {{"i", L(3037000500)}}}, /* 3037000500^2 - 2^64 */
    {"9223372036854775807 + 1", L_, L(INT64_MIN)},
    {"-9223372036854775808 - 1", L_, L(INT64_MAX)},
    {"-(-9223372036854775808)", L_, L(INT64_MIN)},
    {"9223372036854775807 * 9223372036854775807", L_, L(1)},
};

static const eval_case_t divzero_rows[] = {
    {"i / 0", D_, NUL},
    {"i % 0", L_, NUL},
    {"d / 0", D_, NUL},
    {"d % 0", D_, NUL},
    {"d / 0.0", D_, NUL},
    {"d / -0.0", D_, NUL},
    {"i / j", D_, NUL, {{"j", L(0)}}},
    {"i % j", L_, NUL, {{"j", L(0)}}},
    {"d / e", D_, NUL, {{"e", D(0.0)}}},
    {"d % e", D_, NUL, {{"e", D(-0.0)}}},
    {"i % e", D_, NUL, {{"e", D(0.0)}}},
    {"1 / 0", D_, NUL},
    {"0 / 0", D_, NUL},
    {"1 % 0", L_, NUL},
    {"1.0 % 0", D_, NUL},
    {"0 / i", D_, D(0.0)},
    {"(i / 0) + 1", D_, NUL},
};

Test(expr, overflow_wraps, .init = setup, .fini = teardown) { RUN(overflow_rows); }
Test(expr, division_by_zero_is_null, .init = setup, .fini = teardown) { RUN(divzero_rows); }

/* ---- infinities stay; NaN only becomes null where documented --------------------------------- */

static const eval_case_t inf_rows[] = {
    {"d * 1e308", D_, D(INFINITY)},        {"-d * 1e308", D_, D(-INFINITY)},   {"1e308 * 10", D_, D(INFINITY)},
    {"exp(1000)", D_, D(INFINITY)},        {"exp(d * 1000)", D_, D(INFINITY)}, {"exp(-d * 1000)", D_, D(0.0)},
    {"d * 1e308 - d * 1e308", D_, D(NAN)}, /* IEEE: inf - inf */
    {"d * 1e308 > 1e308", T_, B(true)},    {"pow(0, -1)", D_, D(INFINITY)},    {"pow(10, 400)", D_, D(INFINITY)},
    {"1 / (d * 1e308)", D_, D(0.0)},
};

Test(expr, infinity, .init = setup, .fini = teardown) { RUN(inf_rows); }

/* ---- functions ------------------------------------------------------------------------------- */

static const eval_case_t function_rows[] = {
    {"abs(j)", L_, L(3)},
    {"abs(i)", L_, L(7)},
    {"abs(e)", D_, D(0.5)},
    {"abs(-2.5)", D_, D(2.5)},
    {"abs(-3)", L_, L(3)},
    {"abs(n)", L_, NUL},
    {"abs(null)", N_, NUL},
    {"ABS(j)", L_, L(3)}, /* function names are case-insensitive */
    {"abs (j)", L_, L(3)},
    {"sqrt(16)", D_, D(4.0)},
    {"sqrt(d)", D_, D(2.5), {{"d", D(6.25)}}},
    {"sqrt(i)", D_, D(3.0), {{"i", L(9)}}},
    {"sqrt(2)", D_, D(1.4142135623730951)},
    {"sqrt(0)", D_, D(0.0)},
    {"sqrt(j)", D_, NUL},
    {"sqrt(-1)", D_, NUL},
    {"sqrt(e)", D_, NUL},
    {"sqrt(dn)", D_, NUL},
    {"ln(1)", D_, D(0.0)},
    {"ln(i)", D_, D(0.0), {{"i", L(1)}}},
    {"ln(10)", D_, D(2.302585092994046)},
    {"ln(d)", D_, D(1.0), {{"d", D(2.718281828459045)}}},
    {"ln(exp(2))", D_, D(2.0)},
    {"ln(0)", D_, NUL},
    {"ln(j)", D_, NUL},
    {"ln(e)", D_, NUL},
    {"ln(d)", D_, NUL, {{"d", D(0.0)}}},
    {"ln(dn)", D_, NUL},
    {"exp(0)", D_, D(1.0)},
    {"exp(1)", D_, D(2.718281828459045)},
    {"exp(j)", D_, D(0.049787068367863944)},
    {"exp(dn)", D_, NUL},
    {"pow(2, 10)", D_, D(1024.0)},
    {"pow(i, 2)", D_, D(49.0)},
    {"pow(d, 2)", D_, D(6.25)},
    {"pow(4, 0.5)", D_, D(2.0)},
    {"pow(2, -1)", D_, D(0.5)},
    {"pow(d, 0.5)", D_, NUL, {{"d", D(-4.0)}}}, /* NaN */
    {"pow(-8, 1.0 / 3)", D_, NUL},
    {"pow(-2, 3)", D_, D(-8.0)},
    {"pow(n, 2)", D_, NUL},
    {"pow(dn, 0)", D_, NUL},
    {"pow(2, n)", D_, NUL},
    {"min(i, j)", L_, L(-3)},
    {"max(i, j)", L_, L(7)},
    {"min(i, j, 0, 100, -50)", L_, L(-50)},
    {"max(1, 2, 3, 2, 1)", L_, L(3)},
    {"min(i, d)", D_, D(2.5)},
    {"max(i, d)", D_, D(7.0)},
    {"max(d, e)", D_, D(2.5)},
    {"min(s, t)", S_, S("abc")},
    {"max(s, t, 'ab')", S_, S("abd")},
    {"max('B', 'a')", S_, S("a")},
    {"min(s, 'abcd')", S_, S("abc")},
    {"min(i, n)", L_, NUL},
    {"max(n, i)", L_, NUL},
    {"min(i, null)", L_, NUL},
    {"min(null, null)", N_, NUL},
    {"max(s, sn)", S_, NUL},
    {"min(d, e, dn)", D_, NUL},
    {"coalesce(n, i)", L_, L(7)},
    {"coalesce(n, 5)", L_, L(5)},
    {"coalesce(n, 5)", L_, L(2), {{"n", L(2)}}},
    {"coalesce(i, 5)", L_, L(7)},
    {"coalesce(n, n, 3)", L_, L(3)},
    {"coalesce(n)", L_, NUL},
    {"coalesce(null, null)", N_, NUL},
    {"coalesce(null, i)", L_, L(7)},
    {"coalesce(n, d)", D_, D(2.5)},
    {"coalesce(n, 1.5)", D_, D(1.5)},
    {"coalesce(i, 1.5)", D_, D(7.0)},
    {"coalesce(i / 0, 9)", D_, D(9.0)},
    {"coalesce(sn, s)", S_, S("abc")},
    {"coalesce(sn, 'x')", S_, S("x")},
    {"coalesce(sn, sn)", S_, NUL},
    {"coalesce(p, false)", T_, B(false)},
    {"coalesce(p, q, true)", T_, B(true)},
    {"coalesce(p, q)", T_, NUL},
    {"coalesce(p, q)", T_, B(false), {{"q", B(false)}}},
    {"coalesce(x, x)", X_, NUL},
    {"coalesce(x, x)", X_, X("\x01\x02"), {{"x", X("\x01\x02")}}},
    {"coalesce(1, n)", L_, L(1)},
    {"lower(s)", S_, S("abc"), {{"s", S("AbC")}}},
    {"upper(s)", S_, S("ABC"), {{"s", S("AbC")}}},
    {"upper(s)", S_, S("ABC")},
    {"lower('MiXeD 123_Z')", S_, S("mixed 123_z")},
    {"upper(s)", S_, S("\xc3\xbcN\xc3\xaf"), {{"s", S("\xc3\xbcn\xc3\xaf")}}}, /* ASCII only */
    {"lower(s)", S_, S("\xc3\x9c"), {{"s", S("\xc3\x9c")}}},
    {"lower(sn)", S_, NUL},
    {"lower('')", S_, S("")},
    {"upper(s)", S_, S(""), {{"s", S("")}}},
    {"upper(lower(s))", S_, S("ABC"), {{"s", S("aBc")}}},
    {"lower(null)", S_, NUL},
};

Test(expr, functions, .init = setup, .fini = teardown) { RUN(function_rows); }

/* ---- comparisons ----------------------------------------------------------------------------- */

static const eval_case_t compare_rows[] = {
    /* long */
    {"i = 7", T_, B(true)},
    {"i == 7", T_, B(true)},
    {"i = 8", T_, B(false)},
    {"i != 7", T_, B(false)},
    {"i <> 8", T_, B(true)},
    {"i < 8", T_, B(true)},
    {"i < 7", T_, B(false)},
    {"i <= 7", T_, B(true)},
    {"i > 7", T_, B(false)},
    {"i >= 7", T_, B(true)},
    {"i > j", T_, B(true)},
    {"j >= i", T_, B(false)},
    {"i = j", T_, B(false)},
    {"7 = i", T_, B(true)},
    {"8 > i", T_, B(true)},
    {"8 <= i", T_, B(false)},
    {"6 < i", T_, B(true)},
    {"i - 7 = 0", T_, B(true)},
    {"i = 9007199254740993", T_, B(false), {{"i", L(9007199254740992)}}}, /* exact for longs */
    /* double */
    {"d = 2.5", T_, B(true)},
    {"d != 2.5", T_, B(false)},
    {"d < e", T_, B(false)},
    {"d > e", T_, B(true)},
    {"d <= 2.5", T_, B(true)},
    {"d >= 2.6", T_, B(false)},
    {"e < 0", T_, B(true)},
    {"-1 < e", T_, B(true)},
    {"temperature > -40 and temperature < 125", T_, B(true)},
    {"temperature > -40 and temperature < 125", T_, B(false), {{"temperature", D(125.0)}}},
    {"temperature > -40 and temperature < 125", T_, B(false), {{"temperature", D(-40.5)}}},
    {"0.1 + 0.2 = 0.3", T_, B(false)},
    /* mixed: compared as doubles */
    {"i = 7.0", T_, B(true)},
    {"i < d", T_, B(false)},
    {"d < i", T_, B(true)},
    {"i > 6.5", T_, B(true)},
    {"7.0 = i", T_, B(true)},
    {"i = d", T_, B(true), {{"d", D(7.0)}}},
    {"i = 9007199254740993.0", T_, B(true), {{"i", L(9007199254740992)}}}, /* 2^53 + 1 rounds */
    /* string: bytewise, then length */
    {"s = 'abc'", T_, B(true)},
    {"s = \"abc\"", T_, B(true)},
    {"s = t", T_, B(false)},
    {"s < t", T_, B(true)},
    {"t > s", T_, B(true)},
    {"s <= 'abc'", T_, B(true)},
    {"s >= 'abc'", T_, B(true)},
    {"s > 'ab'", T_, B(true)},
    {"'ab' < s", T_, B(true)},
    {"s >= 'abcd'", T_, B(false)},
    {"s != 'ABC'", T_, B(true)},
    {"s <> 'abc'", T_, B(false)},
    {"'B' < 'a'", T_, B(true)},
    {"s < 'B'", T_, B(false)},
    {"s < '\xc3\xa9'", T_, B(true)}, /* 0x61 < 0xc3 */
    {"'' < s", T_, B(true)},
    {"s = ''", T_, B(true), {{"s", S("")}}},
    {"s < t", T_, B(false), {{"s", S("")}, {"t", S("")}}},
    {"s = 'a\\0b'", T_, B(true), {{"s", S("a\0b")}}},
    {"s = 'a\\0c'", T_, B(false), {{"s", S("a\0b")}}},
    {"s < 'a\\0c'", T_, B(true), {{"s", S("a\0b")}}},
    {"lower(s) = 'abc'", T_, B(true), {{"s", S("ABC")}}},
    {"`weird name` = 'w'", T_, B(true)},
    /* bool: = and != only */
    {"b = true", T_, B(true)},
    {"b != false", T_, B(true)},
    {"b = false", T_, B(false)},
    {"b <> true", T_, B(false)},
    {"p = q", T_, B(true), {{"p", B(true)}, {"q", B(true)}}},
    {"p != q", T_, B(true), {{"p", B(true)}, {"q", B(false)}}},
    {"(i > 1) = (j > 1)", T_, B(false)},
    {"true = true", T_, B(true)},
    /* null operands */
    {"n = 1", T_, NUL},
    {"n < 1", T_, NUL},
    {"1 = n", T_, NUL},
    {"n = n", T_, NUL},
    {"dn > 0", T_, NUL},
    {"sn = 'a'", T_, NUL},
    {"s = sn", T_, NUL},
    {"b = p", T_, NUL},
    {"i = null", T_, NUL},
    {"null = null", T_, NUL},
    {"s < null", T_, NUL},
    {"null <> b", T_, NUL},
    {"nil = 1", T_, NUL},
};

Test(expr, comparisons, .init = setup, .fini = teardown) { RUN(compare_rows); }

/* ---- three-valued logic ---------------------------------------------------------------------- */

#define TV_T B(true)
#define TV_F B(false)
#define TV_N NUL

static const eval_case_t logic_rows[] = {
    /* and */
    {"p and q", T_, TV_T, {{"p", TV_T}, {"q", TV_T}}},
    {"p and q", T_, TV_F, {{"p", TV_T}, {"q", TV_F}}},
    {"p and q", T_, TV_N, {{"p", TV_T}, {"q", TV_N}}},
    {"p and q", T_, TV_F, {{"p", TV_F}, {"q", TV_T}}},
    {"p and q", T_, TV_F, {{"p", TV_F}, {"q", TV_F}}},
    {"p and q", T_, TV_F, {{"p", TV_F}, {"q", TV_N}}},
    {"p and q", T_, TV_N, {{"p", TV_N}, {"q", TV_T}}},
    {"p and q", T_, TV_F, {{"p", TV_N}, {"q", TV_F}}},
    {"p and q", T_, TV_N, {{"p", TV_N}, {"q", TV_N}}},
    /* or */
    {"p or q", T_, TV_T, {{"p", TV_T}, {"q", TV_T}}},
    {"p or q", T_, TV_T, {{"p", TV_T}, {"q", TV_F}}},
    {"p or q", T_, TV_T, {{"p", TV_T}, {"q", TV_N}}},
    {"p or q", T_, TV_T, {{"p", TV_F}, {"q", TV_T}}},
    {"p or q", T_, TV_F, {{"p", TV_F}, {"q", TV_F}}},
    {"p or q", T_, TV_N, {{"p", TV_F}, {"q", TV_N}}},
    {"p or q", T_, TV_T, {{"p", TV_N}, {"q", TV_T}}},
    {"p or q", T_, TV_N, {{"p", TV_N}, {"q", TV_F}}},
    {"p or q", T_, TV_N, {{"p", TV_N}, {"q", TV_N}}},
    /* not */
    {"not p", T_, TV_F, {{"p", TV_T}}},
    {"not p", T_, TV_T, {{"p", TV_F}}},
    {"not p", T_, TV_N, {{"p", TV_N}}},
    {"not not p", T_, TV_T, {{"p", TV_T}}},
    /* the same tables on literals (constant folding) */
    {"true and true", T_, TV_T},
    {"true and false", T_, TV_F},
    {"true and null", T_, TV_N},
    {"false and null", T_, TV_F},
    {"null and false", T_, TV_F},
    {"null and true", T_, TV_N},
    {"null and null", T_, TV_N},
    {"true or null", T_, TV_T},
    {"null or true", T_, TV_T},
    {"false or null", T_, TV_N},
    {"null or false", T_, TV_N},
    {"false or false", T_, TV_F},
    {"null or null", T_, TV_N},
    {"not true", T_, TV_F},
    {"not false", T_, TV_T},
    {"not null", T_, TV_N},
    /* one side constant, the other a field */
    {"p and true", T_, TV_N},
    {"p and false", T_, TV_F},
    {"p or true", T_, TV_T},
    {"p or false", T_, TV_N},
    {"p and null", T_, TV_F, {{"p", TV_F}}},
    {"p and null", T_, TV_N, {{"p", TV_T}}},
    {"null or p", T_, TV_T, {{"p", TV_T}}},
    {"null or p", T_, TV_N, {{"p", TV_F}}},
    /* precedence: not > and > or, comparisons above not */
    {"not p and q", T_, TV_T, {{"p", TV_F}, {"q", TV_T}}},
    {"not i = 7", T_, TV_F},
    {"b or p and false", T_, TV_T},
    {"p or q and false", T_, TV_F, {{"p", TV_F}, {"q", TV_T}}},
    {"(p or q) and false", T_, TV_F, {{"p", TV_T}}},
    {"i = 7 and s = 'abc' or false", T_, TV_T},
    {"i = 1 or i = 2 or i = 7", T_, TV_T},
    /* keywords are case-insensitive */
    {"p AND q", T_, TV_T, {{"p", TV_T}, {"q", TV_T}}},
    {"p Or q", T_, TV_T, {{"p", TV_F}, {"q", TV_T}}},
    {"NOT p", T_, TV_F, {{"p", TV_T}}},
    {"TRUE aNd FaLsE", T_, TV_F},
};

Test(expr, three_valued_logic, .init = setup, .fini = teardown) { RUN(logic_rows); }

/* ---- is [not] null --------------------------------------------------------------------------- */

static const eval_case_t isnull_rows[] = {
    {"n is null", T_, B(true)},
    {"n is null", T_, B(false), {{"n", L(0)}}},
    {"i is null", T_, B(false)},
    {"n is not null", T_, B(false)},
    {"i is not null", T_, B(true)},
    {"dn is null", T_, B(true)},
    {"d is null", T_, B(false)},
    {"sn is null", T_, B(true)},
    {"s is null", T_, B(false)},
    {"p is null", T_, B(true)},
    {"b is null", T_, B(false)},
    {"x is null", T_, B(true)},
    {"x is not null", T_, B(true), {{"x", X("z")}}},
    {"nil is null", T_, B(true)},
    {"i / 0 is null", T_, B(true)},
    {"i / 1 is null", T_, B(false)},
    {"null is null", T_, B(true)},
    {"null is not null", T_, B(false)},
    {"1 is null", T_, B(false)},
    {"'' is not null", T_, B(true)},
    {"(n + 1) is null", T_, B(true)},
    {"(i is null) is null", T_, B(false)},
    {"lower(sn) is null", T_, B(true)},
    {"coalesce(n, 1) is not null", T_, B(true)},
    {"(p and q) is null", T_, B(true)},
    {"(p and q) is null", T_, B(false), {{"p", B(false)}}},
    {"n is null = true", T_, B(true)},
    {"not n is null", T_, B(false)},
    {"n IS NULL", T_, B(true)},
    {"n Is Not Null", T_, B(false)},
    {"n is null and i > 3", T_, B(true)},
};

Test(expr, is_null, .init = setup, .fini = teardown) { RUN(isnull_rows); }

/* ---- null propagation ------------------------------------------------------------------------ */

static const eval_case_t null_rows[] = {
    {"n + 1", L_, NUL},        {"1 + n", L_, NUL},           {"n * 0", L_, NUL},
    {"n - n", L_, NUL},        {"n % 2", L_, NUL},           {"n / 2", D_, NUL},
    {"-n", L_, NUL},           {"dn + d", D_, NUL},          {"i + dn", D_, NUL},
    {"-dn", D_, NUL},          {"(n + 1) * 2 + i", L_, NUL}, {"1 + null", L_, NUL},
    {"null + 1.5", D_, NUL},   {"null / 1", D_, NUL},        {"null % 2", L_, NUL},
    {"null % 2.0", D_, NUL},   {"null + null", N_, NUL},     {"-null", N_, NUL},
    {"i + nil", L_, NUL},      {"sqrt(null)", D_, NUL},      {"pow(null, 2)", D_, NUL},
    {"max(null, s)", S_, NUL}, {"upper(sn) = 'A'", T_, NUL},
};

Test(expr, null_propagation, .init = setup, .fini = teardown) { RUN(null_rows); }

/* ---- compile errors -------------------------------------------------------------------------- */

typedef struct err_case {
    const char *src;
    const char *want; /**< the whole message */
} err_case_t;

static const err_case_t error_rows[] = {
    /* names */
    {"tempx", "column 1: unknown field 'tempx'"},
    {"i + tempx", "column 5: unknown field 'tempx'"},
    {"i + `nope`", "column 5: unknown field 'nope'"},
    {"weird name", "column 1: unknown field 'weird'"},
    {"I", "column 1: unknown field 'I'"}, /* field names are case-sensitive */
    {"foo(1)", "column 1: unknown function 'foo'"},
    {"1 + foo(2)", "column 5: unknown function 'foo'"},
    {"i(1)", "column 1: unknown function 'i'"},
    /* arity */
    {"i + pow(2)", "column 5: function 'pow' takes 2 arguments, got 1"},
    {"pow(1, 2, 3)", "column 1: function 'pow' takes 2 arguments, got 3"},
    {"abs()", "column 1: function 'abs' takes 1 argument, got 0"},
    {"sqrt(1, 2)", "column 1: function 'sqrt' takes 1 argument, got 2"},
    {"ln()", "column 1: function 'ln' takes 1 argument, got 0"},
    {"exp(1, 1)", "column 1: function 'exp' takes 1 argument, got 2"},
    {"lower('a', 'b')", "column 1: function 'lower' takes 1 argument, got 2"},
    {"upper()", "column 1: function 'upper' takes 1 argument, got 0"},
    {"min(1)", "column 1: function 'min' takes at least 2 arguments, got 1"},
    {"max()", "column 1: function 'max' takes at least 2 arguments, got 0"},
    {"coalesce()", "column 1: function 'coalesce' takes at least 1 argument, got 0"},
    /* types: operators */
    {"temperature + 's'", "column 13: cannot apply '+' to double and string"},
    {"s + 1", "column 3: cannot apply '+' to string and long"},
    {"1 - s", "column 3: cannot apply '-' to long and string"},
    {"b * 2", "column 3: cannot apply '*' to bool and long"},
    {"i / b", "column 3: cannot apply '/' to long and bool"},
    {"i % s", "column 3: cannot apply '%' to long and string"},
    {"x + 1", "column 3: cannot apply '+' to bytes and long"},
    {"s + null", "column 3: cannot apply '+' to string and null"},
    {"-s", "column 1: cannot apply '-' to string"},
    {"-b", "column 1: cannot apply '-' to bool"},
    {"i and b", "column 3: cannot apply 'and' to long and bool"},
    {"b or 1", "column 3: cannot apply 'or' to bool and long"},
    {"s AND b", "column 3: cannot apply 'and' to string and bool"},
    {"not i", "column 1: cannot apply 'not' to long"},
    {"not s", "column 1: cannot apply 'not' to string"},
    {"s = 1", "column 3: cannot apply '=' to string and long"},
    {"s == 1", "column 3: cannot apply '==' to string and long"},
    {"s <> 1", "column 3: cannot apply '<>' to string and long"},
    {"i != s", "column 3: cannot apply '!=' to long and string"},
    {"b < true", "column 3: cannot apply '<' to bool and bool"},
    {"b >= p", "column 3: cannot apply '>=' to bool and bool"},
    {"i = b", "column 3: cannot apply '=' to long and bool"},
    {"x = x", "column 3: cannot apply '=' to bytes and bytes"},
    {"null < true", "column 6: cannot apply '<' to null and bool"},
    {"x = null", "column 3: cannot apply '=' to bytes and null"},
    {"i > 1 > 0", "column 7: cannot apply '>' to bool and long"},
    /* types: functions */
    {"sqrt(s)", "column 6: function 'sqrt' expects a number, got string"},
    {"abs(b)", "column 5: function 'abs' expects a number, got bool"},
    {"pow(1, s)", "column 8: function 'pow' expects a number, got string"},
    {"ln(x)", "column 4: function 'ln' expects a number, got bytes"},
    {"exp('1')", "column 5: function 'exp' expects a number, got string"},
    {"lower(i)", "column 7: function 'lower' expects a string, got long"},
    {"upper(x)", "column 7: function 'upper' expects a string, got bytes"},
    {"min(i, s)", "column 8: function 'min' cannot mix long and string"},
    {"max(s, d)", "column 8: function 'max' cannot mix string and double"},
    {"max(b, b)", "column 5: function 'max' expects numbers or strings, got bool"},
    {"min(1, x)", "column 8: function 'min' expects numbers or strings, got bytes"},
    {"coalesce(i, s)", "column 13: function 'coalesce' cannot mix long and string"},
    {"coalesce(b, 1)", "column 13: function 'coalesce' cannot mix bool and long"},
    {"coalesce(x, s)", "column 13: function 'coalesce' cannot mix bytes and string"},
    {"coalesce(null, s, 1 + 1)", "column 19: function 'coalesce' cannot mix string and long"},
    /* syntax */
    {"", "column 1: unexpected end of expression"},
    {"   ", "column 4: unexpected end of expression"},
    {"1 +", "column 4: unexpected end of expression"},
    {"1+", "column 3: unexpected end of expression"},
    {"(1 + 2", "column 7: expected ')'"},
    {"((i)", "column 5: expected ')'"},
    {"(i j)", "column 4: expected ')'"},
    {"min(1, 2", "column 9: expected ',' or ')'"},
    {"min(1 2)", "column 7: expected ',' or ')'"},
    {"abs(1,)", "column 7: unexpected ')'"},
    {"abs(,1)", "column 5: unexpected ','"},
    {"()", "column 2: unexpected ')'"},
    {"i 1", "column 3: unexpected '1'"},
    {"1 2", "column 3: unexpected '2'"},
    {"i = = 1", "column 5: unexpected '='"},
    {"i +* 2", "column 4: unexpected '*'"},
    {"i)", "column 2: unexpected ')'"},
    {",", "column 1: unexpected ','"},
    {"not", "column 4: unexpected end of expression"},
    {"(((", "column 4: unexpected end of expression"},
    {"+1", "column 1: unexpected '+'"},
    {"i is 1", "column 6: expected 'null'"},
    {"i is not", "column 9: expected 'null'"},
    {"i is", "column 5: expected 'null'"},
    {"i = not b", "column 5: unexpected 'not'"},
    {"and", "column 1: unexpected 'and'"},
    {"s = 'abc", "column 5: unterminated string"},
    {"s = \"abc", "column 5: unterminated string"},
    {"s = 'abc\\'", "column 5: unterminated string"},
    {"s = 'abc\\", "column 5: unterminated string"},
    {"`abc", "column 1: unterminated quoted name"},
    {"'\\q'", "column 2: unknown escape '\\q' in string"},
    {"'\\x4'", "column 2: \\x needs 2 hex digits"},
    {"'ab\\u12g4'", "column 4: \\u needs 4 hex digits"},
    {"i @ 1", "column 3: unexpected character '@'"},
    {"i ! 1", "column 3: unexpected character '!' (did you mean '!=' or 'not'?)"},
    {"i # 1", "column 3: unexpected character '#'"},
    {"i = \x01", "column 5: unexpected character 0x01"},
    {"1e", "column 1: malformed number '1e'"},
    {"i + 1e+", "column 5: malformed number '1e+'"},
    {"12ab", "column 1: malformed number '12ab'"},
    {"1.5.2", "column 1: malformed number '1.5.2'"},
    {"9223372036854775808", "column 1: integer literal out of range"},
    {"99999999999999999999999", "column 1: integer literal out of range"},
    {"-9223372036854775809", "column 2: integer literal out of range"},
    {"1e999", "column 1: number out of range"},
    {"i * -1e999", "column 6: number out of range"},
    /* columns count characters, not bytes */
    {"'\xc3\xa9' = '\xc3\xa9' and tempx", "column 15: unknown field 'tempx'"},
    {"'\xe2\x82\xac\xe2\x82\xac' + 1", "column 6: cannot apply '+' to string and long"},
    {"\xc3\xa9", "column 1: unexpected character 0xc3"},
};

Test(expr, compile_errors, .init = setup, .fini = teardown) {
    for (size_t k = 0; k < sizeof(error_rows) / sizeof(error_rows[0]); k++) {
        const err_case_t *c = &error_rows[k];
        char err[WEIR_ERRSTR_SIZE] = "";
        weir_expr_t *e = weir_expr_compile(c->src, rt, err, sizeof(err));
        cr_expect(e == NULL, "[%s] compiled, want error \"%s\"", c->src, c->want);
        weir_expr_destroy(e);
        cr_expect_str_eq(err, c->want, "[%s]", c->src);
    }
}

Test(expr, nesting_limits, .init = setup, .fini = teardown) {
    char err[WEIR_ERRSTR_SIZE];
    /* 150 parentheses are fine, 300 are not */
    char src[8192];
    size_t n = 0;
    for (int k = 0; k < 150; k++)
        src[n++] = '(';
    src[n++] = 'i';
    for (int k = 0; k < 150; k++)
        src[n++] = ')';
    src[n] = '\0';
    weir_expr_t *e = weir_expr_compile(src, rt, err, sizeof(err));
    cr_assert(e != NULL, "%s", err);
    weir_expr_destroy(e);

    n = 0;
    for (int k = 0; k < 300; k++)
        src[n++] = '(';
    src[n++] = 'i';
    for (int k = 0; k < 300; k++)
        src[n++] = ')';
    src[n] = '\0';
    cr_assert_null(weir_expr_compile(src, rt, err, sizeof(err)));
    cr_expect(strstr(err, "expression too deeply nested") != NULL, "%s", err);

    n = 0;
    for (int k = 0; k < 300; k++)
        n += (size_t)snprintf(src + n, sizeof(src) - n, "-");
    snprintf(src + n, sizeof(src) - n, "i");
    cr_assert_null(weir_expr_compile(src, rt, err, sizeof(err)));
    cr_expect(strstr(err, "expression too deeply nested") != NULL, "%s", err);

    /* a long flat chain (`i = 1 or i = 2 or ...`) is fine up to the depth limit */
    weir_buf_t b = {0};
    for (int k = 1; k <= 1000; k++)
        weir_buf_printf(&b, "%si = %d", k > 1 ? " or " : "", k);
    weir_buf_putc(&b, '\0');
    e = weir_expr_compile((const char *)b.p, rt, err, sizeof(err));
    cr_assert(e != NULL, "%s", err);
    weir_record_t r;
    make_record(&r, NULL, 0);
    weir_value_t v;
    weir_expr_eval(e, &r, NULL, &v);
    cr_expect(v.type == WEIR_BOOL && v.u.b);
    weir_record_free(&r);
    weir_expr_destroy(e);

    weir_buf_reset(&b);
    for (int k = 1; k <= 3000; k++)
        weir_buf_printf(&b, "%si", k > 1 ? " + " : "");
    weir_buf_putc(&b, '\0');
    cr_assert_null(weir_expr_compile((const char *)b.p, rt, err, sizeof(err)));
    cr_expect(strstr(err, "expression too deeply nested") != NULL, "%s", err);
    weir_buf_free(&b);
}

Test(expr, errstr_buffers, .init = setup, .fini = teardown) {
    /* no buffer at all */
    cr_expect_null(weir_expr_compile("tempx", rt, NULL, 0));
    /* a short buffer is truncated, NUL-terminated */
    char small[12];
    memset(small, 'Z', sizeof(small));
    cr_expect_null(weir_expr_compile("tempx", rt, small, sizeof(small)));
    cr_expect_str_eq(small, "column 1: u");
    /* the message of a successful compile is empty */
    char err[64] = "junk";
    weir_expr_t *e = weir_expr_compile("i", rt, err, sizeof(err));
    cr_expect_str_eq(err, "");
    weir_expr_destroy(e);
    weir_expr_destroy(NULL);
    /* NULL source behaves as an empty one */
    cr_expect_null(weir_expr_compile(NULL, rt, err, sizeof(err)));
    cr_expect_str_eq(err, "column 1: unexpected end of expression");
}

/* ---- weir_expr_nullable ---------------------------------------------------------------------- */

typedef struct nullable_case {
    const char *src;
    bool nullable;
} nullable_case_t;

static const nullable_case_t nullable_rows[] = {
    {"i", false},
    {"n", true},
    {"i + 1", false},
    {"n + 1", true},
    {"i + dn", true},
    {"-i", false},
    {"i * d - 3", false},
    {"i / j", true},
    {"i / 2", false}, /* a non-zero constant divisor never gives null */
    {"d / 0.5", false},
    {"i / 0", true},
    {"i % j", true},
    {"i % 3", false},
    {"d % 0.5", false},
    {"d % e", true},
    {"1 / 2", false}, /* folded */
    {"sqrt(d)", true},
    {"ln(d)", true},
    {"pow(d, 2)", true},
    {"exp(d)", false},
    {"abs(i)", false},
    {"abs(n)", true},
    {"n is null", false},
    {"dn is not null", false},
    {"coalesce(n, 0)", false},
    {"coalesce(n, dn)", true},
    {"coalesce(n, i)", false},
    {"coalesce(i, n)", false},
    {"coalesce(n, null)", true},
    {"null", true},
    {"i + null", true},
    {"nil", true},
    {"p and b", true},
    {"b and b", false},
    {"b or p", true},
    {"not p", true},
    {"not b", false},
    {"lower(s)", false},
    {"lower(sn)", true},
    {"min(i, j)", false},
    {"min(i, n)", true},
    {"max(s, t)", false},
    {"s = t", false},
    {"s = sn", true},
    {"i < 3", false},
    {"temperature > -40 and temperature < 125", false},
    {"temperature * 9 / 5 + 32", false},
    {"exp(1000)", false}, /* inf is a value */
    {"sqrt(-1)", true},   /* folded to a null constant */
};

Test(expr, nullable, .init = setup, .fini = teardown) {
    for (size_t k = 0; k < sizeof(nullable_rows) / sizeof(nullable_rows[0]); k++) {
        const nullable_case_t *c = &nullable_rows[k];
        char err[WEIR_ERRSTR_SIZE];
        weir_expr_t *e = weir_expr_compile(c->src, rt, err, sizeof(err));
        cr_expect(e != NULL, "[%s] %s", c->src, err);
        if (!e)
            continue;
        cr_expect_eq(weir_expr_nullable(e), c->nullable, "[%s] nullable %d, want %d", c->src, weir_expr_nullable(e),
                     c->nullable);
        weir_expr_destroy(e);
    }
}

/* ---- weir_expr_print ------------------------------------------------------------------------- */

typedef struct print_case {
    const char *src;
    const char *want;
} print_case_t;

static const print_case_t print_rows[] = {
    {"temperature * 9 / 5", "((temperature#13:double * 9) / 5):double"},
    {"temperature > -40 and temperature < 125",
     "((temperature#13:double > -40) and (temperature#13:double < 125)):bool"},
    {"-40 < temperature", "(temperature#13:double > -40):bool"},
    {"1 + 2 * 3", "(7):long"},
    {"i", "(i#0:long):long"},
    {"d * 2.0", "(d#3:double * 2.0):double"},
    {"d * 2", "(d#3:double * 2):double"},
    {"i + d", "(i#0:long + d#3:double):double"},
    {"i == 1", "(i#0:long = 1):bool"},
    {"i <> 1", "(i#0:long != 1):bool"},
    {"s = 'a\\'b\\n'", "(s#6:string = 'a\\'b\\n'):bool"},
    {"s < t", "(s#6:string < t#7:string):bool"},
    {"n is not null", "(n#2:long is not null):bool"},
    {"n is null", "(n#2:long is null):bool"},
    {"not b", "(not b#9:bool):bool"},
    {"-i", "(-i#0:long):long"},
    {"p or q and b", "(p#10:bool or (q#11:bool and b#9:bool)):bool"},
    {"coalesce(n, 0)", "coalesce(n#2:long, 0):long"},
    {"coalesce(null, n, 1, j)", "coalesce(n#2:long, 1):long"},
    {"min(i, d, 3)", "min(i#0:long, d#3:double, 3):double"},
    {"pow(i, 2)", "pow(i#0:long, 2):double"},
    {"upper(s)", "upper(s#6:string):string"},
    {"lower('ABC')", "('abc'):string"},
    {"`weird name` = 'w'", "(`weird name`#15:string = 'w'):bool"},
    {"a.b + 1", "(a.b#14:long + 1):long"},
    {"null", "(null):null"},
    {"1 / 0", "(null):double"},
    {"i = 1 OR FALSE", "(i#0:long = 1):bool"},
    {"p AND TRUE", "(p#10:bool):bool"},
    {"p AND FALSE", "(false):bool"},
    {"i % 0", "(i#0:long % 0):long"},
    {"i % 3", "(i#0:long % 3):long"},
    {"d - 1", "(d#3:double - 1):double"},
    {"2 * i", "(2 * i#0:long):long"},
    {"(i + 1) * (d - 2)", "((i#0:long + 1) * (d#3:double - 2)):double"},
    {"1e3", "(1000.0):double"},
    {"0.1", "(0.1):double"},
    {"exp(1000)", "(inf):double"},
    {"-9223372036854775808", "(-9223372036854775808):long"},
    {"x is null", "(x#12:bytes is null):bool"},
};

Test(expr, print, .init = setup, .fini = teardown) {
    for (size_t k = 0; k < sizeof(print_rows) / sizeof(print_rows[0]); k++) {
        const print_case_t *c = &print_rows[k];
        char err[WEIR_ERRSTR_SIZE];
        weir_expr_t *e = weir_expr_compile(c->src, rt, err, sizeof(err));
        cr_expect(e != NULL, "[%s] %s", c->src, err);
        if (!e)
            continue;
        char *buf = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&buf, &len);
        weir_expr_print(e, rt, fp);
        fclose(fp);
        cr_expect_str_eq(buf, c->want, "[%s]", c->src);
        free(buf);
        weir_expr_destroy(e);
    }
}

/* The printed form of an expression compiles back to the same printed form
 * (fields printed as `name#slot:type` are not valid input, so this checks the
 * literals: strings, doubles and longs survive the round trip). */
Test(expr, print_literals_round_trip, .init = setup, .fini = teardown) {
    const char *srcs[] = {"'a\\'b\\\\c\\n\\t\\x01'",
                          "0.30000000000000004",
                          "1e-300",
                          "123456789012345678",
                          "2.5",
                          "1e300 * 10 - 1",
                          "'\\u00e9'"};
    for (size_t k = 0; k < sizeof(srcs) / sizeof(srcs[0]); k++) {
        char err[WEIR_ERRSTR_SIZE], *p1 = NULL, *p2 = NULL;
        size_t n1, n2;
        weir_expr_t *e = weir_expr_compile(srcs[k], rt, err, sizeof(err));
        cr_assert(e != NULL, "[%s] %s", srcs[k], err);
        FILE *fp = open_memstream(&p1, &n1);
        weir_expr_print(e, rt, fp);
        fclose(fp);
        weir_expr_destroy(e);
        /* strip "(" and "):type" */
        char *colon = strrchr(p1, ':');
        cr_assert(colon && p1[0] == '(' && colon[-1] == ')', "%s", p1);
        colon[-1] = '\0';
        if (strcmp(p1 + 1, "inf") == 0) { /* inf prints as a name, not a literal */
            free(p1);
            continue;
        }
        e = weir_expr_compile(p1 + 1, rt, err, sizeof(err));
        cr_assert(e != NULL, "[%s] printed as [%s]: %s", srcs[k], p1 + 1, err);
        fp = open_memstream(&p2, &n2);
        weir_expr_print(e, rt, fp);
        fclose(fp);
        colon[-1] = ')';
        cr_expect_str_eq(p2, p1, "[%s]", srcs[k]);
        weir_expr_destroy(e);
        free(p1);
        free(p2);
    }
}

/* ---- lower()/upper() and the arena ----------------------------------------------------------- */

Test(expr, case_mapping_uses_the_arena, .init = setup, .fini = teardown) {
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *lo = weir_expr_compile("lower(s)", rt, err, sizeof(err));
    weir_expr_t *up = weir_expr_compile("upper(s)", rt, err, sizeof(err));
    cr_assert(lo && up);
    weir_record_t r;
    make_record(&r, NULL, 0);
    char input[] = "MiXed";
    r.v[6] = weir_v_str(input, 5);

    weir_arena_t arena = {0};
    weir_value_t v;
    weir_expr_eval(lo, &r, &arena, &v);
    cr_assert_eq(v.type, WEIR_STRING);
    cr_expect_eq(v.u.s.n, 5);
    cr_expect(memcmp(v.u.s.p, "mixed", 5) == 0);
    cr_expect(v.u.s.p != input, "the result must not overwrite the input");
    cr_expect_not_null(arena.head, "the result lives in the arena");
    cr_expect_str_eq(input, "MiXed");

    /* a string with nothing to change is returned as is: no allocation */
    weir_arena_t empty = {0};
    char already[] = "MIXED";
    r.v[6] = weir_v_str(already, 5);
    weir_expr_eval(up, &r, &empty, &v);
    cr_expect(v.type == WEIR_STRING && v.u.s.n == 5 && memcmp(v.u.s.p, "MIXED", 5) == 0);
    cr_expect_null(empty.head);

    /* many evaluations into one arena each get their own bytes */
    const char *prev = NULL;
    r.v[6] = weir_v_str(input, 5);
    for (int k = 0; k < 1000; k++) {
        weir_expr_eval(up, &r, &arena, &v);
        cr_assert(v.type == WEIR_STRING && memcmp(v.u.s.p, "MIXED", 5) == 0);
        cr_expect(v.u.s.p != prev);
        prev = v.u.s.p;
    }

    /* without an arena a mapping that needs memory gives null (documented) */
    weir_expr_eval(lo, &r, NULL, &v);
    cr_expect_eq(v.type, WEIR_NULL);

    weir_arena_free(&arena);
    weir_record_free(&r);
    weir_expr_destroy(lo);
    weir_expr_destroy(up);
}

Test(expr, no_arena_use_without_case_mapping, .init = setup, .fini = teardown) {
    const char *srcs[] = {"temperature > -40 and temperature < 125",
                          "s < t",
                          "max(s, t)",
                          "coalesce(sn, s)",
                          "i * d + sqrt(d)",
                          "n is null or p"};
    weir_record_t r;
    make_record(&r, NULL, 0);
    for (size_t k = 0; k < sizeof(srcs) / sizeof(srcs[0]); k++) {
        char err[WEIR_ERRSTR_SIZE];
        weir_expr_t *e = weir_expr_compile(srcs[k], rt, err, sizeof(err));
        cr_assert(e != NULL, "%s", err);
        weir_arena_t arena = {0};
        weir_value_t v;
        weir_expr_eval(e, &r, &arena, &v);
        cr_expect_null(arena.head, "[%s] used the arena", srcs[k]);
        weir_expr_eval(e, &r, NULL, &v); /* and works without one */
        weir_expr_destroy(e);
    }
    weir_record_free(&r);
}

/* String results point into the record or the expression: nothing is copied. */
Test(expr, string_results_are_borrowed, .init = setup, .fini = teardown) {
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile("coalesce(sn, s)", rt, err, sizeof(err));
    cr_assert(e);
    weir_record_t r;
    make_record(&r, NULL, 0);
    char buf[] = "hello";
    r.v[6] = weir_v_str(buf, 5);
    weir_value_t v;
    weir_expr_eval(e, &r, NULL, &v);
    cr_expect(v.type == WEIR_STRING && v.u.s.p == buf && v.u.s.n == 5);
    weir_record_free(&r);
    weir_expr_destroy(e);
}

/* ---- evaluation does not allocate ------------------------------------------------------------ */

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define WEIR_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEIR_TEST_SANITIZED 1
#endif
#if defined(__GLIBC__) && !defined(WEIR_TEST_SANITIZED)
/* Count heap allocations by interposing malloc/calloc/realloc (glibc keeps
 * its own under __libc_*). Only counted while `counting` is set. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static volatile int counting;
static volatile long allocations;
void *malloc(size_t n) {
    if (counting)
        allocations++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
    if (counting)
        allocations++;
    return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
    if (counting)
        allocations++;
    return __libc_realloc(p, n);
}
#define CAN_COUNT_ALLOCATIONS 1
#endif

Test(expr, eval_does_not_allocate, .init = setup, .fini = teardown) {
#ifndef CAN_COUNT_ALLOCATIONS
    cr_skip_test("allocation counting needs glibc without sanitizers");
#else
    const char *srcs[] = {"temperature > -40 and temperature < 125",
                          "temperature * 9 / 5 + 32",
                          "coalesce(n, i) % 7 + abs(j)",
                          "s < t or lower(s) = 'abc'",
                          "upper(s)",
                          "min(s, t, 'x')",
                          "pow(d, 2) + sqrt(d) + ln(d) + exp(e)",
                          "n is null and not p"};
    weir_record_t r;
    make_record(&r, NULL, 0);
    r.v[6] = weir_v_str("ABC", 3);
    weir_arena_t arena = {0};
    weir_arena_alloc(&arena, 1); /* the first chunk, which reset keeps */
    for (size_t k = 0; k < sizeof(srcs) / sizeof(srcs[0]); k++) {
        char err[WEIR_ERRSTR_SIZE];
        weir_expr_t *e = weir_expr_compile(srcs[k], rt, err, sizeof(err));
        cr_assert(e != NULL, "%s", err);
        weir_value_t v;
        allocations = 0;
        counting = 1;
        for (int it = 0; it < 1000; it++) {
            weir_expr_eval(e, &r, &arena, &v);
            weir_arena_reset(&arena);
        }
        counting = 0;
        cr_expect_eq(allocations, 0, "[%s] allocated %ld times in 1000 evaluations", srcs[k], allocations);
        weir_expr_destroy(e);
    }
    weir_arena_free(&arena);
    weir_record_free(&r);
#endif
}

/* ---- one compiled expression, many threads --------------------------------------------------- */

typedef struct thread_arg {
    const weir_expr_t *e;
    int id;
    long wrong;
} thread_arg_t;

static void *eval_thread(void *p) {
    thread_arg_t *a = p;
    weir_record_t r;
    make_record(&r, NULL, 0);
    weir_arena_t arena = {0};
    char buf[32];
    for (int k = 0; k < 20000; k++) {
        r.v[0] = weir_v_long((int64_t)k * 4 + a->id);
        int len = snprintf(buf, sizeof(buf), "Id-%d", (a->id + k) % 4);
        r.v[6] = weir_v_str(buf, (size_t)len);
        weir_value_t v;
        weir_expr_eval(a->e, &r, &arena, &v);
        /* i % 4 is the thread id; lower(s) = 'id-2' every 4th record */
        bool want = a->id == 2 && (a->id + k) % 4 == 2;
        if (v.type != WEIR_BOOL || v.u.b != want)
            a->wrong++;
        weir_arena_reset(&arena);
    }
    weir_arena_free(&arena);
    weir_record_free(&r);
    return NULL;
}

Test(expr, shared_across_threads, .init = setup, .fini = teardown) {
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile("i % 4 = 2 and lower(s) = 'id-2'", rt, err, sizeof(err));
    cr_assert(e != NULL, "%s", err);
    pthread_t th[4];
    thread_arg_t args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (thread_arg_t){e, k, 0};
        cr_assert_eq(pthread_create(&th[k], NULL, eval_thread, &args[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        cr_expect_eq(args[k].wrong, 0, "thread %d: %ld wrong results", k, args[k].wrong);
    }
    weir_expr_destroy(e);
}

/* ---- robustness: garbage in, a placed error or an expression out ----------------------------- */

Test(expr, random_input_never_crashes, .init = setup, .fini = teardown) {
    static const char *atoms[] = {
        "i",
        "d",
        "s",
        "n",
        "p",
        "b",
        "x",
        "nil",
        "1",
        "2.5",
        "0",
        "'a'",
        "\"b\"",
        "null",
        "true",
        "+",
        "-",
        "*",
        "/",
        "%",
        "=",
        "<>",
        "<",
        ">=",
        "and",
        "or",
        "not",
        "is",
        "(",
        ")",
        ",",
        "abs(",
        "min(",
        "coalesce(",
        "lower(",
        "pow(",
        "'",
        "`",
        "\\",
        "@",
        "1e",
        " ",
        "9223372036854775808",
        "\xc3\xa9",
    };
    uint64_t seed = 88172645463325252ULL;
    int compiled = 0;
    for (int k = 0; k < 20000; k++) {
        char src[256];
        size_t len = 0;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        int natoms = 1 + (int)(seed % 12);
        for (int a = 0; a < natoms; a++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            const char *atom = atoms[seed % (sizeof(atoms) / sizeof(atoms[0]))];
            len += (size_t)snprintf(src + len, sizeof(src) - len, "%s%s", atom, (seed >> 32) & 1 ? " " : "");
        }
        char err[WEIR_ERRSTR_SIZE] = "";
        weir_expr_t *e = weir_expr_compile(src, rt, err, sizeof(err));
        if (e) {
            compiled++;
            weir_record_t r;
            make_record(&r, NULL, 0);
            weir_arena_t arena = {0};
            weir_value_t v;
            weir_expr_eval(e, &r, &arena, &v);
            cr_expect(v.type == WEIR_NULL || v.type == weir_expr_type(e), "[%s]", src);
            cr_expect(v.type != WEIR_NULL || weir_expr_nullable(e), "[%s]", src);
            char *out = NULL;
            size_t outlen;
            FILE *fp = open_memstream(&out, &outlen);
            weir_expr_print(e, rt, fp);
            fclose(fp);
            free(out);
            weir_arena_free(&arena);
            weir_record_free(&r);
            weir_expr_destroy(e);
        } else {
            int col = 0;
            cr_expect(sscanf(err, "column %d: ", &col) == 1, "[%s] -> [%s]", src, err);
            cr_expect(col >= 1 && (size_t)col <= strlen(src) + 1, "[%s] -> [%s]", src, err);
        }
    }
    cr_log_info("random expressions: %d of 20000 compiled", compiled);
    cr_expect_gt(compiled, 100);
}

/* ---- a filter over many records (its speed is measured in bench/expr, not asserted here) ---- */

Test(expr, filter_over_records, .init = setup, .fini = teardown) {
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile("temperature > -40 and temperature < 125", rt, err, sizeof(err));
    cr_assert(e != NULL, "%s", err);
    enum { NREC = 256 };
    static weir_record_t recs[NREC];
    for (int k = 0; k < NREC; k++) {
        make_record(&recs[k], NULL, 0);
        recs[k].v[13] = weir_v_double(-100.0 + k);
    }
    weir_arena_t arena = {0};
    long kept = 0, iters = 256 * 1000;
    weir_value_t v;
    for (long k = 0; k < iters; k++) {
        weir_expr_eval(e, &recs[k & (NREC - 1)], &arena, &v);
        kept += v.type == WEIR_BOOL && v.u.b;
    }
    /* records -100..155: kept when -40 < t < 125, i.e. -39..124 = 164 of 256 */
    cr_expect_eq(kept, iters / NREC * 164);
    for (int k = 0; k < NREC; k++)
        weir_record_free(&recs[k]);
    weir_expr_destroy(e);
}
