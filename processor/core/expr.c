/**
 * @file expr.c
 * @brief The expression language: parser, type checker, constant folder and
 *        evaluator (semantics in expr.h and docs/expressions.md).
 *
 * Compilation is a recursive-descent parser that builds the tree bottom-up.
 * Each node is built by a `mk_*` function that type-checks its operands,
 * inserts long -> double conversions, picks a node kind specialised for the
 * static types (D_ADD for double +, L_ADD for long +, LT_D for a double <, ...)
 * and folds the node into a constant when all its operands are constants.
 * Field names become slot indices; nothing is looked up by name afterwards.
 *
 * Evaluation is closure-threaded: every node holds a pointer to a small C
 * function for its kind (d_add, lt_dfc, b_and, ...), which calls its
 * operands' functions in turn. The function's signature follows the node's
 * static result type:
 *
 *   double  bool f(node, rec, arena, double *out)     long  ... int64_t *out
 *   string  bool f(node, rec, arena, str_t *out)      bool  int f(node, rec, arena)
 *
 * Each returns whether the value is non-null (the bool ones return TF, TT or
 * TN), so no weir_value_t is built and no run-time type is tested on the way:
 * the static types of the operands are known from the kind. On a filter
 * like `t > -40 and t < 125` this is about 1.5 times as fast as one switch
 * per result type, because each function is small and its call predictable.
 * Nothing is allocated except the result of lower()/upper() (in the arena);
 * the tree is never written after compilation, so one compiled expression
 * can be evaluated by any number of threads at once.
 */
#include "expr.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/** Deepest tree accepted: bounds the C stack used by eval, print and free. */
#define EXPR_MAX_DEPTH 2000
/** Deepest nesting of parentheses, calls, `not` and unary minus while parsing. */
#define EXPR_MAX_NEST 200

#define LIKELY(x) __builtin_expect(!!(x), 1)

/* ------------------------------------------------------------------------ */
/* Node kinds                                                               */
/* ------------------------------------------------------------------------ */

/** How a kind prints (weir_expr_print) and where its operands are. */
enum form {
    F_CONST,   /**< literal: c, cnull */
    F_FIELD,   /**< slot */
    F_CONV,    /**< a: printed as the operand alone */
    F_PREFIX,  /**< (sym a) */
    F_INFIX,   /**< (a sym b) */
    F_POSTFIX, /**< (a sym) */
    F_CALL1,   /**< sym(a) or sym(a, b) */
    F_CALLN,   /**< sym(args...) */
};

/* X(kind, printed symbol, form, evaluator). The first letter of a kind names
 * its static result type: N null, D double, L long, B bool, S string, X bytes;
 * comparisons (bool) end in the type they compare: _B, _L, _D, _S. The
 * *_LFC, *_DFC and *_SFC kinds compare a field with a constant (the most
 * common filter): they keep the field's slot and the constant in the node
 * itself, so evaluating them touches no child (a and b are kept for print).
 * Likewise the arithmetic *C kinds (D_ADDC, ...) have a constant right
 * operand, kept in c; for DIVC and MODC it is never zero. */
#define EXPR_KINDS(X)                                                                                                  \
    X(N_CONST, "null", F_CONST, d, NULL)                                                                               \
    X(D_CONST, "", F_CONST, d, d_const)                                                                                \
    X(D_FIELD, "", F_FIELD, d, d_field)                                                                                \
    X(D_FROM_L, "", F_CONV, d, d_from_l)                                                                               \
    X(D_NEG, "-", F_PREFIX, d, d_neg)                                                                                  \
    X(D_ADD, "+", F_INFIX, d, d_add)                                                                                   \
    X(D_SUB, "-", F_INFIX, d, d_sub)                                                                                   \
    X(D_MUL, "*", F_INFIX, d, d_mul)                                                                                   \
    X(D_DIV, "/", F_INFIX, d, d_div)                                                                                   \
    X(D_MOD, "%", F_INFIX, d, d_mod)                                                                                   \
    X(D_ADDC, "+", F_INFIX, d, d_addc)                                                                                 \
    X(D_SUBC, "-", F_INFIX, d, d_subc)                                                                                 \
    X(D_MULC, "*", F_INFIX, d, d_mulc)                                                                                 \
    X(D_DIVC, "/", F_INFIX, d, d_divc)                                                                                 \
    X(D_MODC, "%", F_INFIX, d, d_modc)                                                                                 \
    X(D_ABS, "abs", F_CALL1, d, d_abs)                                                                                 \
    X(D_SQRT, "sqrt", F_CALL1, d, d_sqrt)                                                                              \
    X(D_LN, "ln", F_CALL1, d, d_ln)                                                                                    \
    X(D_EXP, "exp", F_CALL1, d, d_exp)                                                                                 \
    X(D_POW, "pow", F_CALL1, d, d_pow)                                                                                 \
    X(D_MIN, "min", F_CALLN, d, d_min)                                                                                 \
    X(D_MAX, "max", F_CALLN, d, d_max)                                                                                 \
    X(D_COAL, "coalesce", F_CALLN, d, d_coal)                                                                          \
    X(L_CONST, "", F_CONST, l, l_const)                                                                                \
    X(L_FIELD, "", F_FIELD, l, l_field)                                                                                \
    X(L_NEG, "-", F_PREFIX, l, l_neg)                                                                                  \
    X(L_ADD, "+", F_INFIX, l, l_add)                                                                                   \
    X(L_SUB, "-", F_INFIX, l, l_sub)                                                                                   \
    X(L_MUL, "*", F_INFIX, l, l_mul)                                                                                   \
    X(L_MOD, "%", F_INFIX, l, l_mod)                                                                                   \
    X(L_ADDC, "+", F_INFIX, l, l_addc)                                                                                 \
    X(L_SUBC, "-", F_INFIX, l, l_subc)                                                                                 \
    X(L_MULC, "*", F_INFIX, l, l_mulc)                                                                                 \
    X(L_MODC, "%", F_INFIX, l, l_modc)                                                                                 \
    X(L_ABS, "abs", F_CALL1, l, l_abs)                                                                                 \
    X(L_MIN, "min", F_CALLN, l, l_min)                                                                                 \
    X(L_MAX, "max", F_CALLN, l, l_max)                                                                                 \
    X(L_COAL, "coalesce", F_CALLN, l, l_coal)                                                                          \
    X(B_CONST, "", F_CONST, b, b_const)                                                                                \
    X(B_FIELD, "", F_FIELD, b, b_field)                                                                                \
    X(B_NOT, "not ", F_PREFIX, b, b_not)                                                                               \
    X(B_AND, "and", F_INFIX, b, b_and)                                                                                 \
    X(B_OR, "or", F_INFIX, b, b_or)                                                                                    \
    X(B_ISNULL, "is null", F_POSTFIX, b, b_isnull)                                                                     \
    X(B_ISNOTNULL, "is not null", F_POSTFIX, b, b_isnotnull)                                                           \
    X(B_COAL, "coalesce", F_CALLN, b, b_coal)                                                                          \
    X(EQ_B, "=", F_INFIX, b, eq_b)                                                                                     \
    X(NE_B, "!=", F_INFIX, b, ne_b)                                                                                    \
    X(EQ_L, "=", F_INFIX, b, eq_l)                                                                                     \
    X(NE_L, "!=", F_INFIX, b, ne_l)                                                                                    \
    X(LT_L, "<", F_INFIX, b, lt_l)                                                                                     \
    X(LE_L, "<=", F_INFIX, b, le_l)                                                                                    \
    X(GT_L, ">", F_INFIX, b, gt_l)                                                                                     \
    X(GE_L, ">=", F_INFIX, b, ge_l)                                                                                    \
    X(EQ_D, "=", F_INFIX, b, eq_d)                                                                                     \
    X(NE_D, "!=", F_INFIX, b, ne_d)                                                                                    \
    X(LT_D, "<", F_INFIX, b, lt_d)                                                                                     \
    X(LE_D, "<=", F_INFIX, b, le_d)                                                                                    \
    X(GT_D, ">", F_INFIX, b, gt_d)                                                                                     \
    X(GE_D, ">=", F_INFIX, b, ge_d)                                                                                    \
    X(EQ_S, "=", F_INFIX, b, eq_s)                                                                                     \
    X(NE_S, "!=", F_INFIX, b, ne_s)                                                                                    \
    X(LT_S, "<", F_INFIX, b, lt_s)                                                                                     \
    X(LE_S, "<=", F_INFIX, b, le_s)                                                                                    \
    X(GT_S, ">", F_INFIX, b, gt_s)                                                                                     \
    X(GE_S, ">=", F_INFIX, b, ge_s)                                                                                    \
    X(EQ_LFC, "=", F_INFIX, b, eq_lfc)                                                                                 \
    X(NE_LFC, "!=", F_INFIX, b, ne_lfc)                                                                                \
    X(LT_LFC, "<", F_INFIX, b, lt_lfc)                                                                                 \
    X(LE_LFC, "<=", F_INFIX, b, le_lfc)                                                                                \
    X(GT_LFC, ">", F_INFIX, b, gt_lfc)                                                                                 \
    X(GE_LFC, ">=", F_INFIX, b, ge_lfc)                                                                                \
    X(EQ_DFC, "=", F_INFIX, b, eq_dfc)                                                                                 \
    X(NE_DFC, "!=", F_INFIX, b, ne_dfc)                                                                                \
    X(LT_DFC, "<", F_INFIX, b, lt_dfc)                                                                                 \
    X(LE_DFC, "<=", F_INFIX, b, le_dfc)                                                                                \
    X(GT_DFC, ">", F_INFIX, b, gt_dfc)                                                                                 \
    X(GE_DFC, ">=", F_INFIX, b, ge_dfc)                                                                                \
    X(EQ_SFC, "=", F_INFIX, b, eq_sfc)                                                                                 \
    X(NE_SFC, "!=", F_INFIX, b, ne_sfc)                                                                                \
    X(LT_SFC, "<", F_INFIX, b, lt_sfc)                                                                                 \
    X(LE_SFC, "<=", F_INFIX, b, le_sfc)                                                                                \
    X(GT_SFC, ">", F_INFIX, b, gt_sfc)                                                                                 \
    X(GE_SFC, ">=", F_INFIX, b, ge_sfc)                                                                                \
    X(S_CONST, "", F_CONST, s, s_const)                                                                                \
    X(S_FIELD, "", F_FIELD, s, s_field)                                                                                \
    X(S_LOWER, "lower", F_CALL1, s, s_lower)                                                                           \
    X(S_UPPER, "upper", F_CALL1, s, s_upper)                                                                           \
    X(S_MIN, "min", F_CALLN, s, s_min)                                                                                 \
    X(S_MAX, "max", F_CALLN, s, s_max)                                                                                 \
    X(S_COAL, "coalesce", F_CALLN, s, s_coal)                                                                          \
    X(X_CONST, "", F_CONST, s, s_const)                                                                                \
    X(X_FIELD, "", F_FIELD, s, s_field)                                                                                \
    X(X_COAL, "coalesce", F_CALLN, s, s_coal)

typedef enum kind {
#define X(k, sym, form, ret, fn) K_##k,
    EXPR_KINDS(X)
#undef X
} kind_t;

static const struct {
    const char *sym;
    enum form form;
} kinfo[] = {
#define X(k, sym, form, ret, fn) {sym, form},
    EXPR_KINDS(X)
#undef X
};

/** Comparison operators, in the order of the comparison kinds above. */
enum cmp { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

/** Three-valued logic: what a bool evaluator returns. TF and TT equal C's 0 and 1. */
enum { TF = 0, TT = 1, TN = 2 };

typedef struct node node_t;
typedef struct weir_record rec_t;

typedef struct str {
    const char *p;
    size_t n;
} str_t;

/* The evaluator of a node, by static result type. Each returns whether the
 * value is non-null (the bool one returns TF, TT or TN). */
typedef bool (*ev_d_fn)(const node_t *n, const rec_t *r, weir_arena_t *ar, double *out);
typedef bool (*ev_l_fn)(const node_t *n, const rec_t *r, weir_arena_t *ar, int64_t *out);
typedef int (*ev_b_fn)(const node_t *n, const rec_t *r, weir_arena_t *ar);
typedef bool (*ev_s_fn)(const node_t *n, const rec_t *r, weir_arena_t *ar, str_t *out);

typedef union evfn {
    ev_d_fn d;
    ev_l_fn l;
    ev_b_fn b;
    ev_s_fn s; /**< strings and bytes */
} evfn_t;

struct node {
    evfn_t ev;     /**< evaluator of `kind` (set by bind_tree) */
    uint8_t kind;  /**< kind_t */
    uint8_t type;  /**< static result type (weir_type_t) */
    bool nullable; /**< may evaluate to null */
    bool cnull;    /**< F_CONST: the constant is null */
    bool int_lit;  /**< D_CONST converted from a long: printed without ".0" */
    int slot;      /**< F_FIELD and *FC kinds: slot index */
    int col;       /**< 1-based column where the sub-expression starts */
    int depth;     /**< height of the subtree (1 for a leaf) */
    int nargs;     /**< F_CALLN: number of args */
    node_t *a, *b; /**< operands (unary, binary and 1- or 2-argument calls) */
    node_t **args; /**< F_CALLN operands (owned array) */
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *p; /**< owned by S_CONST/X_CONST, NUL-terminated; borrowed by *_SFC */
            size_t n;
        } s;
    } c; /**< F_CONST and *FC kinds: the constant */
};

struct weir_expr {
    node_t *root; /**< owned */
};

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

/* Calling an operand's evaluator (inside an evaluator, where r and ar exist). */
#define EV_D(m, o) ((m)->ev.d((m), r, ar, (o)))
#define EV_L(m, o) ((m)->ev.l((m), r, ar, (o)))
#define EV_B(m) ((m)->ev.b((m), r, ar))
#define EV_S(m, o) ((m)->ev.s((m), r, ar, (o)))

#define EV_PARAMS const node_t *n, const rec_t *r WEIR_UNUSED, weir_arena_t *ar WEIR_UNUSED
#define DFN(name) static bool name(EV_PARAMS, double *out)
#define LFN(name) static bool name(EV_PARAMS, int64_t *out)
#define BFN(name) static int name(EV_PARAMS)
#define SFN(name) static bool name(EV_PARAMS, str_t *out)

/* Field reads accept the value types a codec may reasonably put in a slot of
 * the static type (a long in a double slot); anything else reads as null. */
static inline bool read_d(const weir_value_t *v, double *out) {
    if (LIKELY(v->type == WEIR_DOUBLE)) {
        *out = v->u.d;
        return true;
    }
    if (v->type == WEIR_LONG) {
        *out = (double)v->u.i;
        return true;
    }
    return false;
}

static inline bool read_l(const weir_value_t *v, int64_t *out) {
    if (LIKELY(v->type == WEIR_LONG)) {
        *out = v->u.i;
        return true;
    }
    return false;
}

static inline bool read_s(const weir_value_t *v, str_t *out) {
    if (LIKELY(v->type == WEIR_STRING || v->type == WEIR_BYTES)) {
        out->p = v->u.s.p;
        out->n = v->u.s.n;
        return true;
    }
    return false;
}

/** Bytewise comparison: memcmp over the common prefix, then the shorter first. */
static inline int str_cmp(str_t x, str_t y) {
    size_t n = x.n < y.n ? x.n : y.n;
    int c = n ? memcmp(x.p, y.p, n) : 0;
    if (c)
        return c;
    return (x.n > y.n) - (x.n < y.n);
}

static inline bool str_eq(str_t x, str_t y) { return x.n == y.n && (x.n == 0 || memcmp(x.p, y.p, x.n) == 0); }

/* Long arithmetic wraps: compute in uint64_t (defined overflow) and convert
 * back (GCC and Clang define the conversion as modulo 2^64). */
static inline int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static inline int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static inline int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }
static inline int64_t wrap_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

/* double ---------------------------------------------------------------- */

DFN(d_const) {
    *out = n->c.d;
    return !n->cnull;
}
DFN(d_field) { return read_d(&r->v[n->slot], out); }
DFN(d_from_l) {
    int64_t i;
    if (!EV_L(n->a, &i))
        return false;
    *out = (double)i;
    return true;
}

/* name: unary double function; null unless OK(x) holds */
#define D_UNARY(name, OK, EXPR)                                                                                        \
    DFN(name) {                                                                                                        \
        double x;                                                                                                      \
        if (!EV_D(n->a, &x) || !(OK))                                                                                  \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
D_UNARY(d_neg, true, -x)
D_UNARY(d_abs, true, fabs(x))
D_UNARY(d_sqrt, !(x < 0.0), sqrt(x))
D_UNARY(d_ln, !(x <= 0.0), log(x))
D_UNARY(d_exp, true, exp(x))

/* name: binary double operator; null unless OK(x, y) holds */
#define D_BINARY(name, OK, EXPR)                                                                                       \
    DFN(name) {                                                                                                        \
        double x, y;                                                                                                   \
        if (!EV_D(n->a, &x) || !EV_D(n->b, &y) || !(OK))                                                               \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
D_BINARY(d_add, true, x + y)
D_BINARY(d_sub, true, x - y)
D_BINARY(d_mul, true, x *y)
D_BINARY(d_div, y != 0.0, x / y)
D_BINARY(d_mod, y != 0.0, fmod(x, y))

/* name: double operator with the constant n->c.d (never 0 for / and %) on the right */
#define D_BINARY_C(name, EXPR)                                                                                         \
    DFN(name) {                                                                                                        \
        double x;                                                                                                      \
        if (!EV_D(n->a, &x))                                                                                           \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
D_BINARY_C(d_addc, x + n->c.d)
D_BINARY_C(d_subc, x - n->c.d)
D_BINARY_C(d_mulc, x * n->c.d)
D_BINARY_C(d_divc, x / n->c.d)
D_BINARY_C(d_modc, fmod(x, n->c.d))

DFN(d_pow) {
    double x, y;
    if (!EV_D(n->a, &x) || !EV_D(n->b, &y))
        return false;
    *out = pow(x, y);
    return !isnan(*out);
}

/* name: min or max over n->args; null if any argument is null */
#define MINMAX(name, T, EVAL, BETTER)                                                                                  \
    static bool name(EV_PARAMS, T *out) {                                                                              \
        T m, x;                                                                                                        \
        if (!EVAL(n->args[0], &m))                                                                                     \
            return false;                                                                                              \
        for (int k = 1; k < n->nargs; k++) {                                                                           \
            if (!EVAL(n->args[k], &x))                                                                                 \
                return false;                                                                                          \
            if (BETTER)                                                                                                \
                m = x;                                                                                                 \
        }                                                                                                              \
        *out = m;                                                                                                      \
        return true;                                                                                                   \
    }
/* name: the first non-null argument */
#define COALESCE(name, T, EVAL)                                                                                        \
    static bool name(EV_PARAMS, T *out) {                                                                              \
        for (int k = 0; k < n->nargs; k++)                                                                             \
            if (EVAL(n->args[k], out))                                                                                 \
                return true;                                                                                           \
        return false;                                                                                                  \
    }
MINMAX(d_min, double, EV_D, x < m)
MINMAX(d_max, double, EV_D, x > m)
COALESCE(d_coal, double, EV_D)

/* long ------------------------------------------------------------------ */

LFN(l_const) {
    *out = n->c.i;
    return !n->cnull;
}
LFN(l_field) { return read_l(&r->v[n->slot], out); }

#define L_UNARY(name, EXPR)                                                                                            \
    LFN(name) {                                                                                                        \
        int64_t x;                                                                                                     \
        if (!EV_L(n->a, &x))                                                                                           \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
L_UNARY(l_neg, wrap_neg(x))
L_UNARY(l_abs, x < 0 ? wrap_neg(x) : x) /* abs(INT64_MIN) wraps to INT64_MIN */

#define L_BINARY(name, OK, EXPR)                                                                                       \
    LFN(name) {                                                                                                        \
        int64_t x, y;                                                                                                  \
        if (!EV_L(n->a, &x) || !EV_L(n->b, &y) || !(OK))                                                               \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
L_BINARY(l_add, true, wrap_add(x, y))
L_BINARY(l_sub, true, wrap_sub(x, y))
L_BINARY(l_mul, true, wrap_mul(x, y))
L_BINARY(l_mod, y != 0, y == -1 ? 0 : x % y) /* INT64_MIN % -1 traps on x86 */

#define L_BINARY_C(name, EXPR)                                                                                         \
    LFN(name) {                                                                                                        \
        int64_t x;                                                                                                     \
        if (!EV_L(n->a, &x))                                                                                           \
            return false;                                                                                              \
        *out = EXPR;                                                                                                   \
        return true;                                                                                                   \
    }
L_BINARY_C(l_addc, wrap_add(x, n->c.i))
L_BINARY_C(l_subc, wrap_sub(x, n->c.i))
L_BINARY_C(l_mulc, wrap_mul(x, n->c.i))
L_BINARY_C(l_modc, n->c.i == -1 ? 0 : x % n->c.i)

MINMAX(l_min, int64_t, EV_L, x < m)
MINMAX(l_max, int64_t, EV_L, x > m)
COALESCE(l_coal, int64_t, EV_L)

/* string and bytes ------------------------------------------------------ */

SFN(s_const) {
    out->p = n->c.s.p;
    out->n = n->c.s.n;
    return !n->cnull;
}
SFN(s_field) { return read_s(&r->v[n->slot], out); }

static inline bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static inline bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }

/**
 * @brief ASCII case mapping of in. When nothing changes the input itself is
 *        the result (no allocation); otherwise the bytes go into dst if given,
 *        else into the arena.
 * @returns false (null) only when memory is needed and there is no arena.
 */
static bool case_map(str_t in, bool upper, weir_arena_t *ar, char *dst, str_t *out) {
    size_t i = 0;
    while (i < in.n && !(upper ? is_lower((unsigned char)in.p[i]) : is_upper((unsigned char)in.p[i])))
        i++;
    if (i == in.n) {
        *out = in;
        return true;
    }
    if (!dst) {
        if (!ar)
            return false;
        dst = weir_arena_alloc(ar, in.n);
    }
    memcpy(dst, in.p, i);
    for (; i < in.n; i++) {
        unsigned char c = (unsigned char)in.p[i];
        dst[i] = (char)((upper ? is_lower(c) : is_upper(c)) ? c ^ 0x20 : c);
    }
    out->p = dst;
    out->n = in.n;
    return true;
}

SFN(s_lower) {
    str_t x;
    return EV_S(n->a, &x) && case_map(x, false, ar, NULL, out);
}
SFN(s_upper) {
    str_t x;
    return EV_S(n->a, &x) && case_map(x, true, ar, NULL, out);
}
MINMAX(s_min, str_t, EV_S, str_cmp(x, m) < 0)
MINMAX(s_max, str_t, EV_S, str_cmp(x, m) > 0)
COALESCE(s_coal, str_t, EV_S)

/* bool ------------------------------------------------------------------ */

BFN(b_const) { return n->cnull ? TN : (int)n->c.b; }
BFN(b_field) {
    const weir_value_t *v = &r->v[n->slot];
    return v->type == WEIR_BOOL ? (int)v->u.b : TN;
}
BFN(b_not) {
    int x = EV_B(n->a);
    return x == TN ? TN : !x;
}
BFN(b_and) {
    int x, y;
    if ((x = EV_B(n->a)) == TF || (y = EV_B(n->b)) == TF)
        return TF;
    return (x == TN || y == TN) ? TN : TT;
}
BFN(b_or) {
    int x, y;
    if ((x = EV_B(n->a)) == TT || (y = EV_B(n->b)) == TT)
        return TT;
    return (x == TN || y == TN) ? TN : TF;
}
BFN(b_coal) {
    for (int k = 0; k < n->nargs; k++) {
        int x = EV_B(n->args[k]);
        if (x != TN)
            return x;
    }
    return TN;
}

/** @returns true if m evaluates to null (any static type). */
static bool is_null_value(const node_t *m, const rec_t *r, weir_arena_t *ar) {
    switch ((weir_type_t)m->type) {
    case WEIR_DOUBLE: {
        double d;
        return !EV_D(m, &d);
    }
    case WEIR_LONG: {
        int64_t i;
        return !EV_L(m, &i);
    }
    case WEIR_BOOL: return EV_B(m) == TN;
    case WEIR_STRING:
    case WEIR_BYTES: {
        str_t s;
        return !EV_S(m, &s);
    }
    default: return true;
    }
}
BFN(b_isnull) { return is_null_value(n->a, r, ar) ? TT : TF; }
BFN(b_isnotnull) { return is_null_value(n->a, r, ar) ? TF : TT; }

BFN(eq_b) {
    int x = EV_B(n->a), y = EV_B(n->b);
    return (x == TN || y == TN) ? TN : x == y;
}
BFN(ne_b) {
    int x = EV_B(n->a), y = EV_B(n->b);
    return (x == TN || y == TN) ? TN : x != y;
}

/* name: comparison of two operands of type T */
#define CMP(name, T, EVAL, EXPR)                                                                                       \
    BFN(name) {                                                                                                        \
        T x, y;                                                                                                        \
        if (!EVAL(n->a, &x) || !EVAL(n->b, &y))                                                                        \
            return TN;                                                                                                 \
        return EXPR;                                                                                                   \
    }
CMP(eq_l, int64_t, EV_L, x == y)
CMP(ne_l, int64_t, EV_L, x != y)
CMP(lt_l, int64_t, EV_L, x < y)
CMP(le_l, int64_t, EV_L, x <= y)
CMP(gt_l, int64_t, EV_L, x > y)
CMP(ge_l, int64_t, EV_L, x >= y)
CMP(eq_d, double, EV_D, x == y)
CMP(ne_d, double, EV_D, x != y)
CMP(lt_d, double, EV_D, x < y)
CMP(le_d, double, EV_D, x <= y)
CMP(gt_d, double, EV_D, x > y)
CMP(ge_d, double, EV_D, x >= y)
CMP(eq_s, str_t, EV_S, str_eq(x, y))
CMP(ne_s, str_t, EV_S, !str_eq(x, y))
CMP(lt_s, str_t, EV_S, str_cmp(x, y) < 0)
CMP(le_s, str_t, EV_S, str_cmp(x, y) <= 0)
CMP(gt_s, str_t, EV_S, str_cmp(x, y) > 0)
CMP(ge_s, str_t, EV_S, str_cmp(x, y) >= 0)

/* name: comparison of field n->slot with the constant n->c */
#define CMP_FC(name, T, READ, EXPR)                                                                                    \
    BFN(name) {                                                                                                        \
        T x;                                                                                                           \
        if (!READ(&r->v[n->slot], &x))                                                                                 \
            return TN;                                                                                                 \
        return EXPR;                                                                                                   \
    }
CMP_FC(eq_lfc, int64_t, read_l, x == n->c.i)
CMP_FC(ne_lfc, int64_t, read_l, x != n->c.i)
CMP_FC(lt_lfc, int64_t, read_l, x < n->c.i)
CMP_FC(le_lfc, int64_t, read_l, x <= n->c.i)
CMP_FC(gt_lfc, int64_t, read_l, x > n->c.i)
CMP_FC(ge_lfc, int64_t, read_l, x >= n->c.i)
CMP_FC(eq_dfc, double, read_d, x == n->c.d)
CMP_FC(ne_dfc, double, read_d, x != n->c.d)
CMP_FC(lt_dfc, double, read_d, x < n->c.d)
CMP_FC(le_dfc, double, read_d, x <= n->c.d)
CMP_FC(gt_dfc, double, read_d, x > n->c.d)
CMP_FC(ge_dfc, double, read_d, x >= n->c.d)
#define C_STR ((str_t){n->c.s.p, n->c.s.n})
CMP_FC(eq_sfc, str_t, read_s, str_eq(x, C_STR))
CMP_FC(ne_sfc, str_t, read_s, !str_eq(x, C_STR))
CMP_FC(lt_sfc, str_t, read_s, str_cmp(x, C_STR) < 0)
CMP_FC(le_sfc, str_t, read_s, str_cmp(x, C_STR) <= 0)
CMP_FC(gt_sfc, str_t, read_s, str_cmp(x, C_STR) > 0)
CMP_FC(ge_sfc, str_t, read_s, str_cmp(x, C_STR) >= 0)

/* dispatch ---------------------------------------------------------------- */

static const evfn_t evtab[] = {
#define X(k, sym, form, ret, fn) {.ret = fn},
    EXPR_KINDS(X)
#undef X
};

/** @brief Set the evaluator of every node from its (final) kind. */
static void bind_tree(node_t *n) {
    n->ev = evtab[n->kind];
    if (n->a)
        bind_tree(n->a);
    if (n->b)
        bind_tree(n->b);
    for (int k = 0; k < n->nargs; k++)
        bind_tree(n->args[k]);
}

static void ev_any(const node_t *n, const rec_t *r, weir_arena_t *ar, weir_value_t *out) {
    switch ((weir_type_t)n->type) {
    case WEIR_DOUBLE:
        if (EV_D(n, &out->u.d)) {
            out->type = WEIR_DOUBLE;
            return;
        }
        break;
    case WEIR_LONG:
        if (EV_L(n, &out->u.i)) {
            out->type = WEIR_LONG;
            return;
        }
        break;
    case WEIR_BOOL: {
        int b = EV_B(n);
        if (b != TN) {
            /* field by field: building a weir_value_t on the stack and copying
             * it costs a store-forwarding stall (byte store, 8-byte load) */
            out->type = WEIR_BOOL;
            out->u.b = b == TT;
            return;
        }
        break;
    }
    case WEIR_STRING:
    case WEIR_BYTES: {
        str_t s;
        if (EV_S(n, &s)) {
            out->type = (weir_type_t)n->type;
            out->u.s.p = s.p;
            out->u.s.n = s.n;
            return;
        }
        break;
    }
    default: break;
    }
    out->type = WEIR_NULL;
}

void weir_expr_eval(const weir_expr_t *e, const weir_record_t *rec, weir_arena_t *arena, weir_value_t *out) {
    ev_any(e->root, rec, arena, out);
}

weir_type_t weir_expr_type(const weir_expr_t *e) { return (weir_type_t)e->root->type; }

bool weir_expr_nullable(const weir_expr_t *e) { return e->root->nullable; }

/* ------------------------------------------------------------------------ */
/* Nodes                                                                    */
/* ------------------------------------------------------------------------ */

static node_t *node_new(kind_t k, weir_type_t t, int col) {
    node_t *n = weir_calloc(1, sizeof(*n));
    n->kind = (uint8_t)k;
    n->type = (uint8_t)t;
    n->col = col;
    n->depth = 1;
    return n;
}

static void node_free(node_t *n) {
    if (!n)
        return;
    node_free(n->a);
    node_free(n->b);
    for (int k = 0; k < n->nargs; k++)
        node_free(n->args[k]);
    free(n->args);
    if (n->kind == K_S_CONST || n->kind == K_X_CONST)
        free(n->c.s.p);
    free(n);
}

static bool is_const(const node_t *n) { return kinfo[n->kind].form == F_CONST; }
static bool is_null_const(const node_t *n) { return is_const(n) && n->cnull; }
static bool is_num(weir_type_t t) { return t == WEIR_LONG || t == WEIR_DOUBLE; }

static kind_t const_kind(weir_type_t t) {
    switch (t) {
    case WEIR_BOOL: return K_B_CONST;
    case WEIR_LONG: return K_L_CONST;
    case WEIR_DOUBLE: return K_D_CONST;
    case WEIR_STRING: return K_S_CONST;
    case WEIR_BYTES: return K_X_CONST;
    default: return K_N_CONST;
    }
}

/** A null constant of static type t. */
static node_t *mk_null(weir_type_t t, int col) {
    node_t *n = node_new(const_kind(t), t, col);
    n->cnull = true;
    n->nullable = true;
    return n;
}

static node_t *mk_str_const(weir_type_t t, const char *p, size_t len, int col) {
    node_t *n = node_new(const_kind(t), t, col);
    n->c.s.p = weir_malloc(len + 1);
    if (len)
        memcpy(n->c.s.p, p, len);
    n->c.s.p[len] = '\0';
    n->c.s.n = len;
    return n;
}

/** @brief A constant of static type t holding v (v's strings are copied). */
static node_t *mk_const(weir_type_t t, const weir_value_t *v, int col) {
    if (v->type == WEIR_NULL)
        return mk_null(t, col);
    if (t == WEIR_STRING || t == WEIR_BYTES)
        return mk_str_const(t, v->u.s.p, v->u.s.n, col);
    node_t *n = node_new(const_kind(t), t, col);
    if (t == WEIR_BOOL)
        n->c.b = v->u.b;
    else if (t == WEIR_LONG)
        n->c.i = v->u.i;
    else if (t == WEIR_DOUBLE)
        n->c.d = v->u.d;
    return n;
}

/** @brief Convert a long operand to double: in place for a constant. */
static node_t *to_double(node_t *n) {
    if (n->type != WEIR_LONG)
        return n;
    if (n->kind == K_L_CONST) {
        n->kind = K_D_CONST;
        n->type = WEIR_DOUBLE;
        n->c.d = (double)n->c.i;
        n->int_lit = true;
        return n;
    }
    node_t *c = node_new(K_D_FROM_L, WEIR_DOUBLE, n->col);
    c->a = n;
    c->nullable = n->nullable;
    c->depth = n->depth + 1;
    return c;
}

/** @brief Replace n, whose operands are all constants, by its value. */
static node_t *fold(node_t *n) {
    weir_value_t v;
    node_t *c;
    if (n->kind == K_S_LOWER || n->kind == K_S_UPPER) {
        /* the one kind that needs memory: map straight into the new constant */
        str_t in = {n->a->c.s.p, n->a->c.s.n}, res;
        c = mk_str_const(WEIR_STRING, in.p, in.n, n->col);
        case_map(in, n->kind == K_S_UPPER, NULL, c->c.s.p, &res);
    } else {
        weir_record_t none;
        memset(&none, 0, sizeof(none));
        bind_tree(n);
        ev_any(n, &none, NULL, &v);
        c = mk_const((weir_type_t)n->type, &v, n->col); /* copies before n is freed */
    }
    node_free(n);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Lexer                                                                    */
/* ------------------------------------------------------------------------ */

typedef enum tok_kind {
    T_END,
    T_ERR,
    T_INT,
    T_DBL,
    T_STR,
    T_ID,
    T_QID,
    T_LP,
    T_RP,
    T_COMMA,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PCT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_AND,
    T_OR,
    T_NOT,
    T_IS,
    T_NULL,
    T_TRUE,
    T_FALSE,
} tok_kind_t;

typedef struct tok {
    tok_kind_t k;
    size_t off; /**< byte offset of the first character */
    size_t len; /**< bytes of source text */
    uint64_t u; /**< T_INT value (valid up to 2^63 unless ovf) */
    bool ovf;   /**< T_INT larger than 2^64 - 1 */
    double d;   /**< T_DBL value */
} tok_t;

typedef struct parser {
    const char *src;
    size_t len;
    size_t pos; /**< next byte to lex */
    const weir_rowtype_t *rt;
    tok_t tok; /**< current token */
    char *sb;  /**< decoded T_STR / T_QID text of the current token */
    size_t sb_len, sb_cap;
    int nest;       /**< current nesting (EXPR_MAX_NEST) */
    size_t col_off; /**< col_at() cache: a byte offset ... */
    int col_val;    /**< ... and its column */
    bool failed;    /**< an error has been reported */
    char *errstr;
    size_t errstr_size;
} parser_t;

/** @returns the 1-based column of byte offset off (counting UTF-8 characters). */
static int col_at(parser_t *p, size_t off) {
    size_t i = 0;
    int col = 1;
    if (p->col_val > 0 && p->col_off <= off) { /* tokens come in order: resume */
        i = p->col_off;
        col = p->col_val;
    }
    for (; i < off && i < p->len; i++)
        if (((unsigned char)p->src[i] & 0xC0) != 0x80)
            col++;
    p->col_off = i;
    p->col_val = col;
    return col;
}

static void perr(parser_t *p, int col, const char *fmt, ...) WEIR_PRINTF(3, 4);
static void perr(parser_t *p, int col, const char *fmt, ...) {
    if (p->failed)
        return; /* the first error is the one reported */
    p->failed = true;
    if (!p->errstr || p->errstr_size == 0)
        return;
    int n = snprintf(p->errstr, p->errstr_size, "column %d: ", col);
    if (n < 0 || (size_t)n >= p->errstr_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errstr + n, p->errstr_size - (size_t)n, fmt, ap);
    va_end(ap);
}

static void sb_putc(parser_t *p, char c) {
    if (p->sb_len + 1 >= p->sb_cap) {
        p->sb_cap = p->sb_cap ? p->sb_cap * 2 : 64;
        p->sb = weir_realloc(p->sb, p->sb_cap);
    }
    p->sb[p->sb_len++] = c;
    p->sb[p->sb_len] = '\0';
}

/** Empty p->sb, allocating it the first time so that '' has a buffer too. */
static void sb_reset(parser_t *p) {
    if (!p->sb) {
        p->sb_cap = 64;
        p->sb = weir_malloc(p->sb_cap);
    }
    p->sb_len = 0;
    p->sb[0] = '\0';
}

static void sb_put_utf8(parser_t *p, uint32_t cp) {
    if (cp < 0x80) {
        sb_putc(p, (char)cp);
    } else if (cp < 0x800) {
        sb_putc(p, (char)(0xC0 | (cp >> 6)));
        sb_putc(p, (char)(0x80 | (cp & 0x3F)));
    } else {
        sb_putc(p, (char)(0xE0 | (cp >> 12)));
        sb_putc(p, (char)(0x80 | ((cp >> 6) & 0x3F)));
        sb_putc(p, (char)(0x80 | (cp & 0x3F)));
    }
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_id_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_id_char(char c) { return is_id_start(c) || is_digit(c) || c == '.'; }

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const struct {
    const char *word;
    tok_kind_t k;
} keywords[] = {
    {"and", T_AND}, {"or", T_OR}, {"not", T_NOT}, {"is", T_IS}, {"null", T_NULL}, {"true", T_TRUE}, {"false", T_FALSE},
};

static bool word_eq(const char *s, size_t n, const char *word) {
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static bool lex_error(parser_t *p, size_t off, const char *what) {
    perr(p, col_at(p, off), "%s", what);
    p->tok.k = T_ERR;
    return false;
}

/** Lex a quoted string or `name` starting at the quote; decoded into p->sb. */
static bool lex_quoted(parser_t *p, char q) {
    size_t start = p->pos, i = p->pos + 1;
    sb_reset(p);
    for (;;) {
        if (i >= p->len)
            return lex_error(p, start, q == '`' ? "unterminated quoted name" : "unterminated string");
        char c = p->src[i];
        if (c == q) {
            if (q == '`' && i + 1 < p->len && p->src[i + 1] == '`') { /* `` is a backquote */
                sb_putc(p, '`');
                i += 2;
                continue;
            }
            i++;
            break;
        }
        if (c != '\\' || q == '`') {
            sb_putc(p, c);
            i++;
            continue;
        }
        /* escape */
        size_t esc = i;
        if (i + 1 >= p->len)
            return lex_error(p, start, "unterminated string");
        c = p->src[i + 1];
        i += 2;
        switch (c) {
        case 'n': sb_putc(p, '\n'); break;
        case 't': sb_putc(p, '\t'); break;
        case 'r': sb_putc(p, '\r'); break;
        case '0': sb_putc(p, '\0'); break;
        case '\\':
        case '\'':
        case '"': sb_putc(p, c); break;
        case 'x':
        case 'u': {
            int digits = c == 'x' ? 2 : 4;
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < p->len ? hexval(p->src[i]) : -1;
                if (h < 0)
                    return lex_error(p, esc, c == 'x' ? "\\x needs 2 hex digits" : "\\u needs 4 hex digits");
                v = v * 16 + (uint32_t)h;
                i++;
            }
            if (c == 'x')
                sb_putc(p, (char)v);
            else
                sb_put_utf8(p, v);
            break;
        }
        default:
            perr(p, col_at(p, esc), "unknown escape '\\%c' in string", c);
            p->tok.k = T_ERR;
            return false;
        }
    }
    p->tok.k = q == '`' ? T_QID : T_STR;
    p->pos = i;
    return true;
}

static bool lex_number(parser_t *p) {
    size_t i = p->pos;
    bool dbl = false;
    while (i < p->len && is_digit(p->src[i]))
        i++;
    if (i < p->len && p->src[i] == '.') {
        dbl = true;
        i++;
        while (i < p->len && is_digit(p->src[i]))
            i++;
    }
    if (i < p->len && (p->src[i] == 'e' || p->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (p->src[j] == '+' || p->src[j] == '-'))
            j++;
        if (j < p->len && is_digit(p->src[j])) {
            dbl = true;
            i = j;
            while (i < p->len && is_digit(p->src[i]))
                i++;
        } else {
            i = j; /* report the whole thing as malformed below */
            while (i < p->len && is_id_char(p->src[i]))
                i++;
            perr(p, col_at(p, p->pos), "malformed number '%.*s'", (int)(i - p->pos), p->src + p->pos);
            p->tok.k = T_ERR;
            return false;
        }
    }
    if (i < p->len && is_id_char(p->src[i])) {
        while (i < p->len && is_id_char(p->src[i]))
            i++;
        perr(p, col_at(p, p->pos), "malformed number '%.*s'", (int)(i - p->pos), p->src + p->pos);
        p->tok.k = T_ERR;
        return false;
    }
    size_t n = i - p->pos;
    if (dbl) {
        char buf[128];
        char *text = n < sizeof(buf) ? buf : weir_malloc(n + 1);
        memcpy(text, p->src + p->pos, n);
        text[n] = '\0';
        errno = 0;
        p->tok.d = strtod(text, NULL);
        bool range = errno == ERANGE && isinf(p->tok.d);
        if (text != buf)
            free(text);
        if (range) {
            perr(p, col_at(p, p->pos), "number out of range");
            p->tok.k = T_ERR;
            return false;
        }
        p->tok.k = T_DBL;
    } else {
        uint64_t u = 0;
        bool ovf = false;
        for (size_t k = p->pos; k < i; k++) {
            unsigned dgt = (unsigned)(p->src[k] - '0');
            if (u > (UINT64_MAX - dgt) / 10)
                ovf = true;
            u = u * 10 + dgt;
        }
        p->tok.k = T_INT;
        p->tok.u = u;
        p->tok.ovf = ovf;
    }
    p->pos = i;
    return true;
}

/** @brief Lex the next token into p->tok (T_ERR after an error). */
static void advance(parser_t *p) {
    if (p->tok.k == T_ERR)
        return;
    while (p->pos < p->len && is_space(p->src[p->pos]))
        p->pos++;
    tok_t *t = &p->tok;
    t->off = p->pos;
    t->ovf = false;
    if (p->pos >= p->len) {
        t->k = T_END;
        t->len = 0;
        return;
    }
    const char *s = p->src + p->pos;
    size_t rest = p->len - p->pos;
    char c = s[0], c1 = rest > 1 ? s[1] : '\0';
    size_t n = 1;
    switch (c) {
    case '(': t->k = T_LP; break;
    case ')': t->k = T_RP; break;
    case ',': t->k = T_COMMA; break;
    case '+': t->k = T_PLUS; break;
    case '-': t->k = T_MINUS; break;
    case '*': t->k = T_STAR; break;
    case '/': t->k = T_SLASH; break;
    case '%': t->k = T_PCT; break;
    case '=':
        t->k = T_EQ;
        n = c1 == '=' ? 2 : 1;
        break;
    case '!':
        if (c1 != '=') {
            lex_error(p, p->pos, "unexpected character '!' (did you mean '!=' or 'not'?)");
            return;
        }
        t->k = T_NE;
        n = 2;
        break;
    case '<':
        if (c1 == '=') {
            t->k = T_LE;
            n = 2;
        } else if (c1 == '>') {
            t->k = T_NE;
            n = 2;
        } else {
            t->k = T_LT;
        }
        break;
    case '>':
        if (c1 == '=') {
            t->k = T_GE;
            n = 2;
        } else {
            t->k = T_GT;
        }
        break;
    case '\'':
    case '"':
    case '`':
        if (lex_quoted(p, c))
            t->len = p->pos - t->off;
        return;
    default:
        if (is_digit(c) || (c == '.' && is_digit(c1))) {
            if (lex_number(p))
                t->len = p->pos - t->off;
            return;
        }
        if (is_id_start(c)) {
            while (n < rest && is_id_char(s[n]))
                n++;
            t->k = T_ID;
            for (size_t k = 0; k < WEIR_ARRAY_SIZE(keywords); k++)
                if (word_eq(s, n, keywords[k].word))
                    t->k = keywords[k].k;
            break;
        }
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F)
            perr(p, col_at(p, p->pos), "unexpected character '%c'", c);
        else
            perr(p, col_at(p, p->pos), "unexpected character 0x%02x", (unsigned char)c);
        t->k = T_ERR;
        return;
    }
    t->len = n;
    p->pos += n;
}

static int tok_col(parser_t *p) { return col_at(p, p->tok.off); }

/** Report the current token as unexpected (no-op after a lexer error). */
static node_t *unexpected(parser_t *p) {
    if (p->tok.k == T_END)
        perr(p, tok_col(p), "unexpected end of expression");
    else
        perr(p, tok_col(p), "unexpected '%.*s'", (int)(p->tok.len > 40 ? 40 : p->tok.len), p->src + p->tok.off);
    return NULL;
}

/** Report "expected X" at the current token. */
static node_t *expected(parser_t *p, const char *what) {
    perr(p, tok_col(p), "expected %s", what);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Type checking and node construction                                      */
/* ------------------------------------------------------------------------ */

static const char *tname(uint8_t t) { return weir_type_name((weir_type_t)t); }

/** @brief Finish a node: check its depth and fold it if every operand is constant. */
static node_t *seal(parser_t *p, node_t *n) {
    int depth = 0, nkids = 0;
    bool all_const = true;
    node_t *two[2] = {n->a, n->b};
    for (int k = 0; k < 2; k++) {
        if (!two[k])
            continue;
        nkids++;
        depth = two[k]->depth > depth ? two[k]->depth : depth;
        all_const = all_const && is_const(two[k]);
    }
    for (int k = 0; k < n->nargs; k++) {
        nkids++;
        depth = n->args[k]->depth > depth ? n->args[k]->depth : depth;
        all_const = all_const && is_const(n->args[k]);
    }
    n->depth = depth + 1;
    if (n->depth > EXPR_MAX_DEPTH) {
        perr(p, n->col, "expression too deeply nested");
        node_free(n);
        return NULL;
    }
    if (nkids > 0 && all_const)
        return fold(n);
    return n;
}

static node_t *mk_binary(kind_t k, weir_type_t t, node_t *l, node_t *r, int col) {
    node_t *n = node_new(k, t, col);
    n->a = l;
    n->b = r;
    n->nullable = l->nullable || r->nullable;
    return n;
}

/** A constant that is not zero (so dividing by it never gives null). */
static bool is_nonzero_const(const node_t *n) {
    if (n->cnull)
        return false;
    return (n->kind == K_L_CONST && n->c.i != 0) || (n->kind == K_D_CONST && n->c.d != 0.0);
}

/** + - * / % */
static node_t *mk_arith(parser_t *p, char op, node_t *l, node_t *r, int opcol, int col) {
    weir_type_t lt = l->type, rt = r->type, t;
    if (!(is_num(lt) || lt == WEIR_NULL) || !(is_num(rt) || rt == WEIR_NULL)) {
        perr(p, opcol, "cannot apply '%c' to %s and %s", op, tname(lt), tname(rt));
        goto fail;
    }
    if (op == '/' || lt == WEIR_DOUBLE || rt == WEIR_DOUBLE)
        t = WEIR_DOUBLE;
    else if (lt == WEIR_LONG || rt == WEIR_LONG)
        t = WEIR_LONG;
    else
        t = WEIR_NULL;
    if (is_null_const(l) || is_null_const(r)) {
        node_free(l);
        node_free(r);
        return mk_null(t, col);
    }
    kind_t k;
    if (t == WEIR_DOUBLE) {
        l = to_double(l);
        r = to_double(r);
        k = op == '+' ? K_D_ADD : op == '-' ? K_D_SUB : op == '*' ? K_D_MUL : op == '/' ? K_D_DIV : K_D_MOD;
    } else {
        k = op == '+' ? K_L_ADD : op == '-' ? K_L_SUB : op == '*' ? K_L_MUL : K_L_MOD;
    }
    node_t *n = mk_binary(k, t, l, r, col);
    if ((op == '/' || op == '%') && !is_nonzero_const(r))
        n->nullable = true;
    if (is_const(r) && (is_nonzero_const(r) || (op != '/' && op != '%'))) {
        /* x OP constant: the constant goes into the node (when x is constant
         * too, seal folds the whole node anyway) */
        if (t == WEIR_DOUBLE)
            k = op == '+' ? K_D_ADDC : op == '-' ? K_D_SUBC : op == '*' ? K_D_MULC : op == '/' ? K_D_DIVC : K_D_MODC;
        else
            k = op == '+' ? K_L_ADDC : op == '-' ? K_L_SUBC : op == '*' ? K_L_MULC : K_L_MODC;
        n->kind = (uint8_t)k;
        n->c = r->c;
    }
    return seal(p, n);
fail:
    node_free(l);
    node_free(r);
    return NULL;
}

static node_t *mk_neg(parser_t *p, node_t *a, int col) {
    if (!(is_num(a->type) || a->type == WEIR_NULL)) {
        perr(p, col, "cannot apply '-' to %s", tname(a->type));
        node_free(a);
        return NULL;
    }
    if (is_null_const(a)) {
        weir_type_t t = a->type;
        node_free(a);
        return mk_null(t, col);
    }
    node_t *n = node_new(a->type == WEIR_LONG ? K_L_NEG : K_D_NEG, a->type, col);
    n->a = a;
    n->nullable = a->nullable;
    return seal(p, n);
}

/** @brief Turn `field OP const` (or `const OP field`) into a *FC kind. */
static node_t *specialise_fc(node_t *n, weir_type_t t, enum cmp op) {
    static const enum cmp mirror[] = {C_EQ, C_NE, C_GT, C_GE, C_LT, C_LE};
    kind_t fk = t == WEIR_LONG ? K_L_FIELD : t == WEIR_DOUBLE ? K_D_FIELD : K_S_FIELD;
    kind_t ck = t == WEIR_LONG ? K_L_CONST : t == WEIR_DOUBLE ? K_D_CONST : K_S_CONST;
    kind_t base = t == WEIR_LONG ? K_EQ_LFC : t == WEIR_DOUBLE ? K_EQ_DFC : K_EQ_SFC;
    if (!is_num(t) && t != WEIR_STRING)
        return n;
    if (n->a->kind == ck && n->b->kind == fk) { /* 3 < x  ->  x > 3 */
        node_t *tmp = n->a;
        n->a = n->b;
        n->b = tmp;
        op = mirror[op];
    }
    if (n->a->kind != fk || n->b->kind != ck || n->b->cnull)
        return n;
    n->kind = (uint8_t)(base + op);
    n->slot = n->a->slot;
    n->c = n->b->c; /* strings stay owned by b: *FC kinds never free c.s.p */
    return n;
}

/** = != < <= > >= (sym is the operator as written, for messages) */
static node_t *mk_cmp(parser_t *p, enum cmp op, const char *sym, node_t *l, node_t *r, int opcol, int col) {
    weir_type_t lt = l->type, rt = r->type, t;
    if (lt == WEIR_NULL)
        t = rt;
    else if (rt == WEIR_NULL || lt == rt)
        t = lt;
    else if (is_num(lt) && is_num(rt))
        t = WEIR_DOUBLE;
    else
        t = WEIR_BYTES; /* incomparable */
    if (!(t == WEIR_NULL || is_num(t) || t == WEIR_STRING || (t == WEIR_BOOL && (op == C_EQ || op == C_NE)))) {
        perr(p, opcol, "cannot apply '%s' to %s and %s", sym, tname(lt), tname(rt));
        node_free(l);
        node_free(r);
        return NULL;
    }
    if (is_null_const(l) || is_null_const(r)) {
        node_free(l);
        node_free(r);
        return mk_null(WEIR_BOOL, col);
    }
    kind_t k;
    switch (t) {
    case WEIR_LONG: k = (kind_t)(K_EQ_L + op); break;
    case WEIR_DOUBLE:
        l = to_double(l);
        r = to_double(r);
        k = (kind_t)(K_EQ_D + op);
        break;
    case WEIR_STRING: k = (kind_t)(K_EQ_S + op); break;
    default: k = op == C_EQ ? K_EQ_B : K_NE_B; break;
    }
    node_t *n = mk_binary(k, WEIR_BOOL, l, r, col);
    return seal(p, specialise_fc(n, t, op));
}

/** A bool operand of and/or/not: a null literal becomes a null bool. */
static bool logic_operand_ok(node_t *n) {
    if (n->type == WEIR_NULL) {
        n->kind = K_B_CONST;
        n->type = WEIR_BOOL;
    }
    return n->type == WEIR_BOOL;
}

static bool is_bool_const(const node_t *n, bool v) { return n->kind == K_B_CONST && !n->cnull && n->c.b == v; }

static node_t *mk_andor(parser_t *p, bool is_and, node_t *l, node_t *r, int opcol, int col) {
    weir_type_t lt = l->type, rt = r->type;
    if (!logic_operand_ok(l) || !logic_operand_ok(r)) {
        perr(p, opcol, "cannot apply '%s' to %s and %s", is_and ? "and" : "or", tname(lt), tname(rt));
        node_free(l);
        node_free(r);
        return NULL;
    }
    /* false and x = false, true and x = x; true or x = true, false or x = x */
    if (is_bool_const(l, !is_and) || is_bool_const(r, !is_and)) {
        node_free(l);
        node_free(r);
        node_t *c = node_new(K_B_CONST, WEIR_BOOL, col);
        c->c.b = !is_and;
        return c;
    }
    if (is_bool_const(l, is_and)) {
        node_free(l);
        return r;
    }
    if (is_bool_const(r, is_and)) {
        node_free(r);
        return l;
    }
    return seal(p, mk_binary(is_and ? K_B_AND : K_B_OR, WEIR_BOOL, l, r, col));
}

static node_t *mk_not(parser_t *p, node_t *a, int col) {
    weir_type_t t = a->type;
    if (!logic_operand_ok(a)) {
        perr(p, col, "cannot apply 'not' to %s", tname(t));
        node_free(a);
        return NULL;
    }
    node_t *n = node_new(K_B_NOT, WEIR_BOOL, col);
    n->a = a;
    n->nullable = a->nullable;
    return seal(p, n);
}

static node_t *mk_isnull(parser_t *p, node_t *a, bool negate, int col) {
    node_t *n = node_new(negate ? K_B_ISNOTNULL : K_B_ISNULL, WEIR_BOOL, col);
    n->a = a; /* nullable stays false: `is null` is never null */
    return seal(p, n);
}

/* Functions ---------------------------------------------------------------- */

enum fn_id { FN_ABS, FN_SQRT, FN_LN, FN_EXP, FN_POW, FN_MIN, FN_MAX, FN_COALESCE, FN_LOWER, FN_UPPER };

static const struct fn {
    const char *name;
    enum fn_id id;
    int min_args;
    int max_args; /**< -1: any number */
} functions[] = {
    {"abs", FN_ABS, 1, 1},     {"sqrt", FN_SQRT, 1, 1},   {"ln", FN_LN, 1, 1},    {"exp", FN_EXP, 1, 1},
    {"pow", FN_POW, 2, 2},     {"min", FN_MIN, 2, -1},    {"max", FN_MAX, 2, -1}, {"coalesce", FN_COALESCE, 1, -1},
    {"lower", FN_LOWER, 1, 1}, {"upper", FN_UPPER, 1, 1},
};

static void free_args(node_t **args, int nargs) {
    for (int k = 0; k < nargs; k++)
        node_free(args[k]);
    free(args);
}

/**
 * @brief The common type of variadic arguments (null literals match
 *        anything; long and double mix to double).
 * @returns false with an error reported when two arguments do not mix.
 */
static bool common_type(parser_t *p, const struct fn *f, node_t **args, int nargs, weir_type_t *out) {
    weir_type_t t = WEIR_NULL;
    for (int k = 0; k < nargs; k++) {
        weir_type_t at = args[k]->type;
        if (at == WEIR_NULL)
            continue;
        if (f->id != FN_COALESCE && !is_num(at) && at != WEIR_STRING) {
            perr(p, args[k]->col, "function '%s' expects numbers or strings, got %s", f->name, tname(at));
            return false;
        }
        if (t == WEIR_NULL || t == at) {
            t = at;
        } else if (is_num(t) && is_num(at)) {
            t = WEIR_DOUBLE;
        } else {
            perr(p, args[k]->col, "function '%s' cannot mix %s and %s", f->name, tname(t), tname(at));
            return false;
        }
    }
    *out = t;
    return true;
}

static node_t *mk_call(parser_t *p, const struct fn *f, node_t **args, int nargs, int col) {
    node_t *n = NULL;
    weir_type_t t;
    kind_t k;

    switch (f->id) {
    case FN_ABS:
    case FN_SQRT:
    case FN_LN:
    case FN_EXP:
    case FN_POW:
        for (int i = 0; i < nargs; i++) {
            if (!is_num(args[i]->type) && args[i]->type != WEIR_NULL) {
                perr(p, args[i]->col, "function '%s' expects a number, got %s", f->name, tname(args[i]->type));
                goto fail;
            }
        }
        t = f->id == FN_ABS ? (weir_type_t)args[0]->type : WEIR_DOUBLE;
        for (int i = 0; i < nargs; i++) {
            if (is_null_const(args[i])) {
                free_args(args, nargs);
                return mk_null(t, col);
            }
        }
        if (f->id == FN_ABS) {
            k = t == WEIR_LONG ? K_L_ABS : K_D_ABS;
        } else {
            for (int i = 0; i < nargs; i++)
                args[i] = to_double(args[i]);
            k = f->id == FN_SQRT ? K_D_SQRT : f->id == FN_LN ? K_D_LN : f->id == FN_EXP ? K_D_EXP : K_D_POW;
        }
        n = node_new(k, t, col);
        n->a = args[0];
        n->b = nargs > 1 ? args[1] : NULL;
        n->nullable =
            args[0]->nullable || (n->b && n->b->nullable) || f->id == FN_SQRT || f->id == FN_LN || f->id == FN_POW;
        free(args);
        return seal(p, n);

    case FN_LOWER:
    case FN_UPPER:
        if (args[0]->type != WEIR_STRING && args[0]->type != WEIR_NULL) {
            perr(p, args[0]->col, "function '%s' expects a string, got %s", f->name, tname(args[0]->type));
            goto fail;
        }
        if (is_null_const(args[0])) {
            free_args(args, nargs);
            return mk_null(WEIR_STRING, col);
        }
        n = node_new(f->id == FN_LOWER ? K_S_LOWER : K_S_UPPER, WEIR_STRING, col);
        n->a = args[0];
        n->nullable = args[0]->nullable;
        free(args);
        return seal(p, n);

    case FN_MIN:
    case FN_MAX:
        if (!common_type(p, f, args, nargs, &t))
            goto fail;
        for (int i = 0; i < nargs; i++) {
            if (is_null_const(args[i])) {
                free_args(args, nargs);
                return mk_null(t, col);
            }
        }
        if (t == WEIR_DOUBLE)
            k = f->id == FN_MIN ? K_D_MIN : K_D_MAX;
        else if (t == WEIR_LONG)
            k = f->id == FN_MIN ? K_L_MIN : K_L_MAX;
        else
            k = f->id == FN_MIN ? K_S_MIN : K_S_MAX;
        n = node_new(k, t, col);
        break;

    case FN_COALESCE: {
        if (!common_type(p, f, args, nargs, &t))
            goto fail;
        /* drop null constants and everything after the first non-null constant */
        int m = 0;
        bool done = false;
        for (int i = 0; i < nargs; i++) {
            if (done || is_null_const(args[i])) {
                node_free(args[i]);
                continue;
            }
            done = is_const(args[i]);
            args[m++] = args[i];
        }
        nargs = m;
        if (nargs == 0) {
            free(args);
            return mk_null(t, col);
        }
        if (t == WEIR_DOUBLE)
            for (int i = 0; i < nargs; i++)
                args[i] = to_double(args[i]);
        if (nargs == 1) {
            node_t *only = args[0];
            free(args);
            return only;
        }
        k = t == WEIR_DOUBLE   ? K_D_COAL
            : t == WEIR_LONG   ? K_L_COAL
            : t == WEIR_BOOL   ? K_B_COAL
            : t == WEIR_STRING ? K_S_COAL
                               : K_X_COAL;
        n = node_new(k, t, col);
        n->args = args;
        n->nargs = nargs;
        n->nullable = true;
        for (int i = 0; i < nargs; i++)
            n->nullable = n->nullable && args[i]->nullable;
        return seal(p, n);
    }
    }

    /* min, max */
    if (t == WEIR_DOUBLE)
        for (int i = 0; i < nargs; i++)
            args[i] = to_double(args[i]);
    n->args = args;
    n->nargs = nargs;
    for (int i = 0; i < nargs; i++)
        n->nullable = n->nullable || args[i]->nullable;
    return seal(p, n);
fail:
    free_args(args, nargs);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

static node_t *parse_or(parser_t *p);

static bool nest_enter(parser_t *p) {
    if (++p->nest > EXPR_MAX_NEST) {
        perr(p, tok_col(p), "expression too deeply nested");
        return false;
    }
    return true;
}

static node_t *parse_call(parser_t *p, const char *name, size_t name_len, int col) {
    const struct fn *f = NULL;
    for (size_t k = 0; k < WEIR_ARRAY_SIZE(functions); k++)
        if (word_eq(name, name_len, functions[k].name))
            f = &functions[k];
    if (!f) {
        perr(p, col, "unknown function '%.*s'", (int)(name_len > 64 ? 64 : name_len), name);
        return NULL;
    }
    advance(p); /* '(' */
    node_t **args = NULL;
    int nargs = 0, cap = 0;
    if (p->tok.k != T_RP) {
        for (;;) {
            node_t *a = parse_or(p);
            if (!a)
                goto fail;
            if (nargs == cap) {
                cap = cap ? cap * 2 : 4;
                args = weir_realloc(args, (size_t)cap * sizeof(*args));
            }
            args[nargs++] = a;
            if (p->tok.k == T_COMMA) {
                advance(p);
                continue;
            }
            if (p->tok.k != T_RP) {
                expected(p, "',' or ')'");
                goto fail;
            }
            break;
        }
    }
    advance(p); /* ')' */
    if (nargs < f->min_args || (f->max_args >= 0 && nargs > f->max_args)) {
        if (f->max_args == f->min_args)
            perr(p, col, "function '%s' takes %d argument%s, got %d", f->name, f->min_args, f->min_args == 1 ? "" : "s",
                 nargs);
        else
            perr(p, col, "function '%s' takes at least %d argument%s, got %d", f->name, f->min_args,
                 f->min_args == 1 ? "" : "s", nargs);
        goto fail;
    }
    return mk_call(p, f, args, nargs, col);
fail:
    free_args(args, nargs);
    return NULL;
}

static node_t *parse_field(parser_t *p, const char *name, size_t len, int col) {
    char *z = weir_strndup(name, len);
    int slot = p->rt ? weir_rowtype_find(p->rt, z) : -1;
    free(z);
    if (slot < 0) {
        perr(p, col, "unknown field '%.*s'", (int)(len > 64 ? 64 : len), name);
        return NULL;
    }
    const weir_field_t *f = &p->rt->fields[slot];
    kind_t k;
    switch (f->type) {
    case WEIR_BOOL: k = K_B_FIELD; break;
    case WEIR_LONG: k = K_L_FIELD; break;
    case WEIR_DOUBLE: k = K_D_FIELD; break;
    case WEIR_STRING: k = K_S_FIELD; break;
    case WEIR_BYTES: k = K_X_FIELD; break;
    default: return mk_null(WEIR_NULL, col); /* a column that is always null */
    }
    node_t *n = node_new(k, f->type, col);
    n->slot = slot;
    n->nullable = f->nullable;
    return n;
}

/* primary: literal | field | f(args) | ( expr ) */
static node_t *parse_primary(parser_t *p) {
    tok_t t = p->tok;
    int col = tok_col(p);
    node_t *n;
    switch (t.k) {
    case T_INT:
        if (t.ovf || t.u > (uint64_t)INT64_MAX) {
            perr(p, col, "integer literal out of range");
            return NULL;
        }
        n = node_new(K_L_CONST, WEIR_LONG, col);
        n->c.i = (int64_t)t.u;
        advance(p);
        return n;
    case T_DBL:
        n = node_new(K_D_CONST, WEIR_DOUBLE, col);
        n->c.d = t.d;
        advance(p);
        return n;
    case T_STR:
        n = mk_str_const(WEIR_STRING, p->sb, p->sb_len, col);
        advance(p);
        return n;
    case T_TRUE:
    case T_FALSE:
        n = node_new(K_B_CONST, WEIR_BOOL, col);
        n->c.b = t.k == T_TRUE;
        advance(p);
        return n;
    case T_NULL: advance(p); return mk_null(WEIR_NULL, col);
    case T_ID: {
        /* a call when '(' follows */
        size_t i = p->pos;
        while (i < p->len && is_space(p->src[i]))
            i++;
        if (i < p->len && p->src[i] == '(') {
            advance(p); /* now at '(' */
            if (!nest_enter(p))
                return NULL;
            n = parse_call(p, p->src + t.off, t.len, col);
            p->nest--;
            return n;
        }
        n = parse_field(p, p->src + t.off, t.len, col);
        if (n)
            advance(p);
        return n;
    }
    case T_QID:
        n = parse_field(p, p->sb, p->sb_len, col);
        if (n)
            advance(p);
        return n;
    case T_LP:
        advance(p);
        if (!nest_enter(p))
            return NULL;
        n = parse_or(p);
        p->nest--;
        if (!n)
            return NULL;
        if (p->tok.k != T_RP) {
            node_free(n);
            return expected(p, "')'");
        }
        advance(p);
        return n;
    default: return unexpected(p);
    }
}

/* unary: '-' unary | primary */
static node_t *parse_unary(parser_t *p) {
    if (p->tok.k != T_MINUS)
        return parse_primary(p);
    int col = tok_col(p);
    advance(p);
    if (p->tok.k == T_INT && !p->tok.ovf && p->tok.u == (uint64_t)INT64_MAX + 1) {
        /* -9223372036854775808: the one literal only valid negated */
        node_t *n = node_new(K_L_CONST, WEIR_LONG, col);
        n->c.i = INT64_MIN;
        advance(p);
        return n;
    }
    if (!nest_enter(p))
        return NULL;
    node_t *a = parse_unary(p);
    p->nest--;
    return a ? mk_neg(p, a, col) : NULL;
}

/* mul: unary (('*' | '/' | '%') unary)* */
static node_t *parse_mul(parser_t *p) {
    int col = tok_col(p);
    node_t *l = parse_unary(p);
    while (l && (p->tok.k == T_STAR || p->tok.k == T_SLASH || p->tok.k == T_PCT)) {
        char op = p->src[p->tok.off];
        int opcol = tok_col(p);
        advance(p);
        node_t *r = parse_unary(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = mk_arith(p, op, l, r, opcol, col);
    }
    return l;
}

/* add: mul (('+' | '-') mul)* */
static node_t *parse_add(parser_t *p) {
    int col = tok_col(p);
    node_t *l = parse_mul(p);
    while (l && (p->tok.k == T_PLUS || p->tok.k == T_MINUS)) {
        char op = p->src[p->tok.off];
        int opcol = tok_col(p);
        advance(p);
        node_t *r = parse_mul(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = mk_arith(p, op, l, r, opcol, col);
    }
    return l;
}

/* cmp: add ((cmp-op add) | is [not] null)* */
static node_t *parse_cmp(parser_t *p) {
    int col = tok_col(p);
    node_t *l = parse_add(p);
    while (l) {
        tok_kind_t k = p->tok.k;
        int opcol = tok_col(p);
        if (k == T_IS) {
            advance(p);
            bool negate = false;
            if (p->tok.k == T_NOT) {
                negate = true;
                advance(p);
            }
            if (p->tok.k != T_NULL) {
                node_free(l);
                return expected(p, "'null'");
            }
            advance(p);
            l = mk_isnull(p, l, negate, col);
            continue;
        }
        enum cmp op;
        switch (k) {
        case T_EQ: op = C_EQ; break;
        case T_NE: op = C_NE; break;
        case T_LT: op = C_LT; break;
        case T_LE: op = C_LE; break;
        case T_GT: op = C_GT; break;
        case T_GE: op = C_GE; break;
        default: return l;
        }
        char sym[3] = {0};
        memcpy(sym, p->src + p->tok.off, p->tok.len < 2 ? p->tok.len : 2);
        advance(p);
        node_t *r = parse_add(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = mk_cmp(p, op, sym, l, r, opcol, col);
    }
    return l;
}

/* not: 'not' not | cmp */
static node_t *parse_not(parser_t *p) {
    if (p->tok.k != T_NOT)
        return parse_cmp(p);
    int col = tok_col(p);
    advance(p);
    if (!nest_enter(p))
        return NULL;
    node_t *a = parse_not(p);
    p->nest--;
    return a ? mk_not(p, a, col) : NULL;
}

/* and: not ('and' not)* */
static node_t *parse_and(parser_t *p) {
    int col = tok_col(p);
    node_t *l = parse_not(p);
    while (l && p->tok.k == T_AND) {
        int opcol = tok_col(p);
        advance(p);
        node_t *r = parse_not(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = mk_andor(p, true, l, r, opcol, col);
    }
    return l;
}

/* or: and ('or' and)* */
static node_t *parse_or(parser_t *p) {
    int col = tok_col(p);
    node_t *l = parse_and(p);
    while (l && p->tok.k == T_OR) {
        int opcol = tok_col(p);
        advance(p);
        node_t *r = parse_and(p);
        if (!r) {
            node_free(l);
            return NULL;
        }
        l = mk_andor(p, false, l, r, opcol, col);
    }
    return l;
}

weir_expr_t *weir_expr_compile(const char *src, const weir_rowtype_t *rt, char *errstr, size_t errstr_size) {
    parser_t p;
    memset(&p, 0, sizeof(p));
    p.src = src ? src : "";
    p.len = strlen(p.src);
    p.rt = rt;
    p.errstr = errstr;
    p.errstr_size = errstr_size;
    if (errstr && errstr_size)
        errstr[0] = '\0';

    advance(&p);
    node_t *root = parse_or(&p);
    if (root && p.tok.k != T_END) {
        unexpected(&p);
        node_free(root);
        root = NULL;
    }
    free(p.sb);
    if (!root) {
        if (!p.failed) /* not reached: every NULL above reports */
            perr(&p, 1, "invalid expression");
        return NULL;
    }
    bind_tree(root);
    weir_expr_t *e = weir_calloc(1, sizeof(*e));
    e->root = root;
    return e;
}

void weir_expr_destroy(weir_expr_t *e) {
    if (!e)
        return;
    node_free(e->root);
    free(e);
}

/* ------------------------------------------------------------------------ */
/* Printing                                                                 */
/* ------------------------------------------------------------------------ */

static void print_double(double d, bool int_lit, FILE *fp) {
    if (isnan(d)) {
        fputs("nan", fp);
        return;
    }
    if (isinf(d)) {
        fputs(d > 0 ? "inf" : "-inf", fp);
        return;
    }
    char buf[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    fputs(buf, fp);
    if (!int_lit && !strpbrk(buf, ".e"))
        fputs(".0", fp); /* keep a double looking like one */
}

static void print_string(const char *s, size_t n, FILE *fp) {
    fputc('\'', fp);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\'': fputs("\\'", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\t': fputs("\\t", fp); break;
        case '\r': fputs("\\r", fp); break;
        default:
            if (c < 0x20 || c == 0x7F)
                fprintf(fp, "\\x%02x", c);
            else
                fputc(c, fp);
        }
    }
    fputc('\'', fp);
}

static void print_name(const char *name, FILE *fp) {
    size_t n = strlen(name);
    bool plain = n > 0 && is_id_start(name[0]);
    for (size_t i = 1; plain && i < n; i++)
        plain = is_id_char(name[i]);
    for (size_t k = 0; plain && k < WEIR_ARRAY_SIZE(keywords); k++)
        plain = !word_eq(name, n, keywords[k].word);
    if (plain) {
        fputs(name, fp);
        return;
    }
    fputc('`', fp);
    for (size_t i = 0; i < n; i++) {
        if (name[i] == '`')
            fputc('`', fp);
        fputc(name[i], fp);
    }
    fputc('`', fp);
}

static void print_node(const node_t *n, const weir_rowtype_t *rt, FILE *fp) {
    const char *sym = kinfo[n->kind].sym;
    switch (kinfo[n->kind].form) {
    case F_CONST:
        if (n->cnull)
            fputs("null", fp);
        else if (n->type == WEIR_BOOL)
            fputs(n->c.b ? "true" : "false", fp);
        else if (n->type == WEIR_LONG)
            fprintf(fp, "%" PRId64, n->c.i);
        else if (n->type == WEIR_DOUBLE)
            print_double(n->c.d, n->int_lit, fp);
        else
            print_string(n->c.s.p, n->c.s.n, fp);
        break;
    case F_FIELD:
        if (rt && n->slot < rt->nfields)
            print_name(rt->fields[n->slot].name, fp);
        else
            fputs("?", fp);
        fprintf(fp, "#%d:%s", n->slot, tname(n->type));
        break;
    case F_CONV: print_node(n->a, rt, fp); break;
    case F_PREFIX:
        fprintf(fp, "(%s", sym);
        print_node(n->a, rt, fp);
        fputc(')', fp);
        break;
    case F_INFIX:
        fputc('(', fp);
        print_node(n->a, rt, fp);
        fprintf(fp, " %s ", sym);
        print_node(n->b, rt, fp);
        fputc(')', fp);
        break;
    case F_POSTFIX:
        fputc('(', fp);
        print_node(n->a, rt, fp);
        fprintf(fp, " %s)", sym);
        break;
    case F_CALL1:
        fprintf(fp, "%s(", sym);
        print_node(n->a, rt, fp);
        if (n->b) {
            fputs(", ", fp);
            print_node(n->b, rt, fp);
        }
        fputc(')', fp);
        break;
    case F_CALLN:
        fprintf(fp, "%s(", sym);
        for (int k = 0; k < n->nargs; k++) {
            if (k)
                fputs(", ", fp);
            print_node(n->args[k], rt, fp);
        }
        fputc(')', fp);
        break;
    }
}

void weir_expr_print(const weir_expr_t *e, const weir_rowtype_t *rt, FILE *fp) {
    enum form f = kinfo[e->root->kind].form;
    bool wrap = f == F_CONST || f == F_FIELD || f == F_CONV;
    if (wrap)
        fputc('(', fp);
    print_node(e->root, rt, fp);
    if (wrap)
        fputc(')', fp);
    fprintf(fp, ":%s", tname(e->root->type));
}
