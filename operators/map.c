/**
 * map: computes new fields (`set: {name: expr}`), replacing a field of the
 * same name or appending it, and can `drop: [fields]`. Every expression sees
 * the *input* record (not the results of its siblings), so the order of the
 * keys in `set` does not matter. Stateless: no snapshot, restore or dump
 * callbacks (the engine writes an empty frame for it).
 */
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "operator.h"

typedef struct map_conf {
    int nout;      /* fields of the output row type */
    int *src_slot; /* per output slot: input slot to copy, or -1 */
    int *expr_idx; /* per output slot: index into exprs, or -1 */
    int nexprs;
    weir_expr_t **exprs;
} map_conf_t;

typedef struct map_ctx {
    const weir_plan_t *plan;
    weir_record_t out; /* reused for every record */
} map_ctx_t;

static const weir_config_map_t map_config_map[] = {
    {WEIR_CM_CUSTOM, "set", NULL, false, 0, "map of field name -> expression; replaces or appends fields"},
    {WEIR_CM_CUSTOM, "drop", NULL, false, 0, "list of input fields to leave out of the output"},
    {0},
};

static void map_plan_destroy(void *p) {
    map_conf_t *conf = p;
    if (!conf)
        return;
    for (int i = 0; i < conf->nexprs; i++)
        weir_expr_destroy(conf->exprs[i]);
    free(conf->exprs);
    free(conf->src_slot);
    free(conf->expr_idx);
}

static int map_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    map_conf_t *conf = plan->conf;
    const weir_cfg_t *set = weir_cfg_get(plan->cfg, "set");
    const weir_cfg_t *drop = weir_cfg_get(plan->cfg, "drop");
    if (!set && !drop)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': map needs 'set' or 'drop'", plan->name);
    if (set && set->kind != WEIR_CFG_MAP)
        return weir_cfg_error(set, errstr, errstr_size, "node '%s': set: expected a map of field: expression",
                              plan->name);
    if (drop && drop->kind != WEIR_CFG_SEQ)
        return weir_cfg_error(drop, errstr, errstr_size, "node '%s': drop: expected a list of field names", plan->name);
    const weir_rowtype_t *in = plan->input;
    bool *dropped = weir_calloc((size_t)in->nfields + 1, sizeof(bool));
    for (size_t i = 0; drop && i < drop->n; i++) {
        const weir_cfg_t *d = drop->items[i];
        int slot = d->kind == WEIR_CFG_SCALAR ? weir_rowtype_find(in, d->scalar) : -1;
        if (slot < 0) {
            free(dropped);
            return weir_cfg_error(d, errstr, errstr_size, "node '%s': drop: unknown field '%s'", plan->name,
                                  d->kind == WEIR_CFG_SCALAR ? d->scalar : "?");
        }
        dropped[slot] = true;
    }
    size_t nset = set ? set->n : 0;
    conf->exprs = weir_calloc(nset + 1, sizeof(*conf->exprs));
    weir_rowtype_t *out = weir_rowtype_new();
    plan->nports = 1;
    plan->ports[0].rt = out;
    int cap = in->nfields + (int)nset;
    conf->src_slot = weir_malloc((size_t)(cap + 1) * sizeof(int));
    conf->expr_idx = weir_malloc((size_t)(cap + 1) * sizeof(int));
    for (int i = 0; i < in->nfields; i++) {
        if (dropped[i])
            continue;
        int s = weir_rowtype_add(out, in->fields[i].name, in->fields[i].type, in->fields[i].nullable);
        conf->src_slot[s] = i;
        conf->expr_idx[s] = -1;
    }
    free(dropped);
    for (size_t i = 0; i < nset; i++) {
        const char *name = set->keys[i];
        const weir_cfg_t *at = set->items[i];
        set->used[i] = true;
        char key[256];
        snprintf(key, sizeof(key), "set.%s", name);
        weir_expr_t *e = weir_plan_expr(plan, at, key, in, errstr, errstr_size);
        if (!e)
            return WEIR_ERR;
        conf->exprs[conf->nexprs++] = e; /* owned by conf from here on, also when the checks below fail */
        weir_type_t t = weir_expr_type(e);
        if (t == WEIR_NULL)
            return weir_cfg_error(at, errstr, errstr_size,
                                  "node '%s': set.%s: the literal null has no type; use coalesce() or a typed field",
                                  plan->name, name);
        int s = weir_rowtype_find(out, name);
        if (s >= 0) {
            out->fields[s].type = t;
            out->fields[s].nullable = weir_expr_nullable(e);
        } else {
            s = weir_rowtype_add(out, name, t, weir_expr_nullable(e));
        }
        conf->src_slot[s] = -1;
        conf->expr_idx[s] = conf->nexprs - 1;
    }
    conf->nout = out->nfields;
    return WEIR_OK;
}

static void map_describe(const weir_plan_t *plan, FILE *fp) {
    const map_conf_t *conf = plan->conf;
    const weir_rowtype_t *out = plan->ports[0].rt;
    for (int s = 0; s < conf->nout; s++) {
        if (conf->expr_idx[s] < 0)
            continue;
        fprintf(fp, "    set %s#%d = ", out->fields[s].name, s);
        weir_expr_print(conf->exprs[conf->expr_idx[s]], plan->input, fp);
        fprintf(fp, "\n");
    }
}

static void *map_init(const weir_plan_t *plan) {
    map_ctx_t *ctx = weir_calloc(1, sizeof(*ctx));
    ctx->plan = plan;
    weir_record_init(&ctx->out, plan->ports[0].rt);
    return ctx;
}

static int map_process(void *vctx, const weir_record_t *in, weir_emitter_t *em) {
    map_ctx_t *ctx = vctx;
    const map_conf_t *conf = ctx->plan->conf;
    weir_record_t *out = &ctx->out;
    if (out->arena.head)
        weir_arena_reset(&out->arena);
    for (int s = 0; s < conf->nout; s++) {
        int src = conf->src_slot[s];
        if (src >= 0)
            out->v[s] = in->v[src];
        else
            weir_expr_eval(conf->exprs[conf->expr_idx[s]], in, &out->arena, &out->v[s]);
    }
    weir_record_copy_meta(out, in);
    weir_emit(em, 0, out);
    return WEIR_OK;
}

static void map_destroy(void *vctx) {
    map_ctx_t *ctx = vctx;
    if (!ctx)
        return;
    weir_record_free(&ctx->out);
    free(ctx);
}

const weir_operator_class_t weir_map_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "map",
    .description = "compute fields with `set: {name: expr}` and remove fields with `drop: [..]`",
    .config_map = map_config_map,
    .conf_size = sizeof(map_conf_t),
    .configure = map_configure,
    .plan_destroy = map_plan_destroy,
    .describe = map_describe,
    .init = map_init,
    .process = map_process,
    .destroy = map_destroy,
};
