/*
 * window_agg.c: the aggregate functions of the window operator, in the
 * Fluent Bit manner: each is update (add one value) / merge (combine two
 * partial states, which is what panes and session merges need) / result.
 * Nulls are skipped; the window's row count minus a state's n is the number
 * of nulls skipped. Mean, variance and stddev use Welford's update and Chan's
 * pairwise merge, so they stay accurate for large values and long windows.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "window_int.h"

static const struct {
    const char *name;
    wagg_kind_t kind;
} wagg_names[] = {
    {"count", WAGG_COUNT}, {"sum", WAGG_SUM},   {"mean", WAGG_MEAN},     {"avg", WAGG_MEAN},
    {"min", WAGG_MIN},     {"max", WAGG_MAX},   {"stddev", WAGG_STDDEV}, {"variance", WAGG_VARIANCE},
    {"first", WAGG_FIRST}, {"last", WAGG_LAST},
};

const char *wagg_kind_name(wagg_kind_t k) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(wagg_names); i++)
        if (wagg_names[i].kind == k)
            return wagg_names[i].name;
    return "?";
}

int wagg_parse(const weir_plan_t *plan, const weir_cfg_t *at, const char *name, wagg_spec_t *a, char *errstr,
               size_t errstr_size) {
    const char *src;
    a->name = name;
    a->arg_slot = -1;
    a->nulls_slot = -1;
    if (weir_cfg_as_str(at, &src, errstr, errstr_size))
        return WEIR_ERR;
    const char *p = src;
    while (isspace((unsigned char)*p))
        p++;
    const char *fn = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t fnlen = (size_t)(p - fn);
    while (isspace((unsigned char)*p))
        p++;
    size_t len = strlen(src);
    while (len > 0 && isspace((unsigned char)src[len - 1]))
        len--;
    if (!fnlen || *p != '(' || len == 0 || src[len - 1] != ')' || (size_t)(p - src) >= len - 1)
        return weir_cfg_error(at, errstr, errstr_size,
                              "node '%s': aggregate.%s: expected FUNCTION(expression), e.g. mean(temperature); "
                              "functions: count sum mean min max stddev variance first last (got \"%s\")",
                              plan->name, name, src);
    int found = -1;
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(wagg_names); i++)
        if (strlen(wagg_names[i].name) == fnlen && !strncmp(wagg_names[i].name, fn, fnlen))
            found = (int)i;
    if (found < 0)
        return weir_cfg_error(at, errstr, errstr_size,
                              "node '%s': aggregate.%s: column %d: unknown function '%.*s' "
                              "(count sum mean min max stddev variance first last)",
                              plan->name, name, (int)(fn - src) + 1, (int)fnlen, fn);
    a->kind = wagg_names[found].kind;
    size_t arg_off = (size_t)(p - src) + 1;
    size_t arg_len = len - 1 - arg_off;
    const char *q = src + arg_off;
    bool empty = true;
    for (size_t i = 0; i < arg_len; i++)
        if (!isspace((unsigned char)q[i]))
            empty = false;
    if (empty) {
        if (a->kind == WAGG_COUNT)
            return WEIR_OK; /* count(): rows */
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': aggregate.%s: %s() needs an argument", plan->name,
                              name, wagg_kind_name(a->kind));
    }
    a->arg_src = weir_strndup(q, arg_len);
    char msg[WEIR_ERRSTR_SIZE];
    a->arg = weir_expr_compile(a->arg_src, plan->input, msg, sizeof(msg));
    if (!a->arg) {
        /* Re-base "column N" from the argument to the whole scalar. */
        int col;
        int used = 0;
        if (sscanf(msg, "column %d: %n", &col, &used) == 1 && used > 0)
            return weir_cfg_error(at, errstr, errstr_size, "node '%s': aggregate.%s: column %d: %s (in \"%s\")",
                                  plan->name, name, col + (int)arg_off, msg + used, src);
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': aggregate.%s: %s (in \"%s\")", plan->name, name, msg,
                              src);
    }
    weir_type_t t = weir_expr_type(a->arg);
    if (a->kind != WAGG_COUNT && t != WEIR_LONG && t != WEIR_DOUBLE)
        return weir_cfg_error(at, errstr, errstr_size,
                              "node '%s': aggregate.%s: %s() needs a numeric (long or double) argument, \"%s\" is %s",
                              plan->name, name, wagg_kind_name(a->kind), a->arg_src, weir_type_name(t));
    a->is_long = t == WEIR_LONG;
    /* A plain field is read straight from its slot, without the evaluator. */
    char field[256];
    size_t b = 0, e = arg_len;
    while (b < e && isspace((unsigned char)q[b]))
        b++;
    while (e > b && isspace((unsigned char)q[e - 1]))
        e--;
    bool ident = e > b && e - b < sizeof(field);
    for (size_t i = b; ident && i < e; i++)
        ident = isalnum((unsigned char)q[i]) || q[i] == '_';
    if (ident) {
        memcpy(field, q + b, e - b);
        field[e - b] = '\0';
        a->arg_slot = weir_rowtype_find(plan->input, field);
    }
    return WEIR_OK;
}

void wagg_out_type(const wagg_spec_t *a, weir_type_t *t, bool *nullable) {
    switch (a->kind) {
    case WAGG_COUNT:
        *t = WEIR_LONG;
        *nullable = false;
        break;
    case WAGG_SUM:
        *t = a->is_long ? WEIR_LONG : WEIR_DOUBLE;
        *nullable = false;
        break;
    case WAGG_MEAN:
    case WAGG_STDDEV:
    case WAGG_VARIANCE:
        *t = WEIR_DOUBLE;
        *nullable = true;
        break;
    case WAGG_MIN:
    case WAGG_MAX:
    case WAGG_FIRST:
    case WAGG_LAST:
        *t = a->is_long ? WEIR_LONG : WEIR_DOUBLE;
        *nullable = true;
        break;
    }
}

void wagg_update(const wagg_spec_t *a, wagg_state_t *s, const weir_value_t *x, int64_t ts) {
    if (!x) { /* count() */
        s->n++;
        return;
    }
    if (x->type == WEIR_NULL)
        return;
    switch (a->kind) {
    case WAGG_COUNT: s->n++; return;
    case WAGG_SUM:
        if (a->is_long)
            s->v.i = (int64_t)((uint64_t)s->v.i + (uint64_t)x->u.i); /* wraps like the expression language */
        else
            s->v.d += weir_v_num(x);
        s->n++;
        return;
    case WAGG_MEAN:
    case WAGG_STDDEV:
    case WAGG_VARIANCE: {
        double v = weir_v_num(x);
        s->n++;
        double d = v - s->v.d;
        s->v.d += d / (double)s->n;
        s->w.m2 += d * (v - s->v.d);
        return;
    }
    case WAGG_MIN:
        if (a->is_long) {
            if (!s->n || x->u.i < s->v.i)
                s->v.i = x->u.i;
        } else {
            double v = weir_v_num(x);
            if (!s->n || v < s->v.d)
                s->v.d = v;
        }
        s->n++;
        return;
    case WAGG_MAX:
        if (a->is_long) {
            if (!s->n || x->u.i > s->v.i)
                s->v.i = x->u.i;
        } else {
            double v = weir_v_num(x);
            if (!s->n || v > s->v.d)
                s->v.d = v;
        }
        s->n++;
        return;
    case WAGG_FIRST:
    case WAGG_LAST:
        /* first: the earliest event time wins (the earlier arrival on a tie);
         * last: the latest (the later arrival on a tie) */
        if (!s->n || (a->kind == WAGG_FIRST ? ts < s->w.ts : ts >= s->w.ts)) {
            if (a->is_long)
                s->v.i = x->u.i;
            else
                s->v.d = weir_v_num(x);
            s->w.ts = ts;
        }
        s->n++;
        return;
    }
}

void wagg_merge(const wagg_spec_t *a, wagg_state_t *dst, const wagg_state_t *src) {
    if (!src->n)
        return;
    if (!dst->n) {
        *dst = *src;
        return;
    }
    switch (a->kind) {
    case WAGG_COUNT: break;
    case WAGG_SUM:
        if (a->is_long)
            dst->v.i = (int64_t)((uint64_t)dst->v.i + (uint64_t)src->v.i);
        else
            dst->v.d += src->v.d;
        break;
    case WAGG_MEAN:
    case WAGG_STDDEV:
    case WAGG_VARIANCE: {
        double na = (double)dst->n, nb = (double)src->n, n = na + nb;
        double d = src->v.d - dst->v.d;
        dst->v.d += d * nb / n;
        dst->w.m2 += src->w.m2 + d * d * na * nb / n;
        break;
    }
    case WAGG_MIN:
        if (a->is_long ? src->v.i < dst->v.i : src->v.d < dst->v.d)
            dst->v = src->v;
        break;
    case WAGG_MAX:
        if (a->is_long ? src->v.i > dst->v.i : src->v.d > dst->v.d)
            dst->v = src->v;
        break;
    case WAGG_FIRST: /* merged states cover disjoint times; the earlier one wins */
        if (src->w.ts < dst->w.ts) {
            dst->v = src->v;
            dst->w.ts = src->w.ts;
        }
        break;
    case WAGG_LAST:
        if (src->w.ts >= dst->w.ts) {
            dst->v = src->v;
            dst->w.ts = src->w.ts;
        }
        break;
    }
    dst->n += src->n;
}

void wagg_result(const wagg_spec_t *a, const wagg_state_t *s, int64_t rows, weir_value_t *out) {
    switch (a->kind) {
    case WAGG_COUNT: *out = weir_v_long(a->arg ? s->n : rows); return;
    case WAGG_SUM: *out = a->is_long ? weir_v_long(s->n ? s->v.i : 0) : weir_v_double(s->n ? s->v.d : 0.0); return;
    case WAGG_MEAN: *out = s->n ? weir_v_double(s->v.d) : weir_v_null(); return;
    case WAGG_VARIANCE:
        *out = s->n > 1 ? weir_v_double(s->w.m2 > 0 ? s->w.m2 / (double)(s->n - 1) : 0.0) : weir_v_null();
        return;
    case WAGG_STDDEV:
        *out = s->n > 1 ? weir_v_double(s->w.m2 > 0 ? sqrt(s->w.m2 / (double)(s->n - 1)) : 0.0) : weir_v_null();
        return;
    case WAGG_MIN:
    case WAGG_MAX:
    case WAGG_FIRST:
    case WAGG_LAST: *out = !s->n ? weir_v_null() : a->is_long ? weir_v_long(s->v.i) : weir_v_double(s->v.d); return;
    }
}
