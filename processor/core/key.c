/* The one meaning of `key:` (key.h). */
#include "key.h"

#include "numfmt.h"

#include <stdlib.h>

static char *reason_printf(const char *fmt, const char *op, const char *node, const char *src) {
    int n = snprintf(NULL, 0, fmt, op, node, src);
    char *s = weir_malloc((size_t)n + 1);
    snprintf(s, (size_t)n + 1, fmt, op, node, src);
    return s;
}

int weir_key_spec_init(weir_key_spec_t *ks, const weir_plan_t *plan, char *errstr, size_t errstr_size) {
    memset(ks, 0, sizeof(*ks));
    ks->slot = -1;
    ks->type = WEIR_STRING;
    const char *op = plan->cls ? plan->cls->name : "key";
    const weir_cfg_t *at = weir_cfg_get(plan->cfg, "key");
    if (at) {
        if (!(ks->expr = weir_plan_expr(plan, at, "key", plan->input, errstr, errstr_size)))
            return WEIR_ERR;
        ks->src = weir_strdup(at->scalar);
        ks->type = weir_expr_type(ks->expr);
        if (ks->type == WEIR_NULL)
            return weir_cfg_error(at, errstr, errstr_size, "node '%s': key: the literal null cannot group records",
                                  plan->name);
        ks->slot = weir_rowtype_find(plan->input, ks->src);
    }
    ks->null_reason = reason_printf("%s: node '%s': key '%s' is null", op, plan->name, ks->src ? ks->src : "");
    char max[32];
    snprintf(max, sizeof(max), "%d", WEIR_KEYMAP_MAX_KEY);
    ks->toolong_reason = reason_printf("%s: node '%s': key longer than %s bytes", op, plan->name, max);
    return WEIR_OK;
}

void weir_key_spec_free(weir_key_spec_t *ks) {
    weir_expr_destroy(ks->expr);
    free(ks->src);
    free(ks->null_reason);
    free(ks->toolong_reason);
    memset(ks, 0, sizeof(*ks));
}

int weir_key_render(const weir_value_t *v, char buf[WEIR_KEY_BUF], const char **p, size_t *n) {
    switch (v->type) {
    case WEIR_STRING:
    case WEIR_BYTES:
        *p = v->u.s.p ? v->u.s.p : "";
        *n = v->u.s.n;
        return 0;
    case WEIR_LONG:
        *n = weir_fmt_long(v->u.i, buf);
        *p = buf;
        return 0;
    case WEIR_DOUBLE: /* the project's one formatter: shortest round trip */
        *n = weir_fmt_double(v->u.d, buf);
        *p = buf;
        return 0;
    case WEIR_BOOL:
        *p = v->u.b ? "true" : "false";
        *n = v->u.b ? 4 : 5;
        return 0;
    default: return -1;
    }
}

const char *weir_key_eval(const weir_key_spec_t *ks, const weir_record_t *rec, weir_arena_t *scratch,
                          char buf[WEIR_KEY_BUF], const char **p, size_t *n) {
    if (!ks->expr) {
        *p = rec->key ? rec->key : "";
        *n = rec->key ? rec->key_len : 0;
    } else {
        weir_value_t tmp;
        const weir_value_t *v = &tmp;
        if (ks->slot >= 0)
            v = &rec->v[ks->slot];
        else
            weir_expr_eval(ks->expr, rec, scratch, &tmp);
        if (weir_key_render(v, buf, p, n))
            return ks->null_reason;
    }
    return *n > WEIR_KEYMAP_MAX_KEY ? ks->toolong_reason : NULL;
}
