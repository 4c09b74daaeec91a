/**
 * filter: forwards the records for which `where` is true (null counts as
 * false). Stateless: it has no snapshot, restore or dump callbacks, and the
 * engine writes an empty frame for it so that every node has one.
 */
#include <stdlib.h>

#include "expr.h"
#include "operator.h"

typedef struct filter_conf {
    const char *where_src;
    weir_expr_t *where;
} filter_conf_t;

typedef struct filter_ctx {
    const weir_plan_t *plan;
    weir_arena_t scratch; /* for string temporaries of the predicate */
} filter_ctx_t;

static const weir_config_map_t filter_config_map[] = {
    {WEIR_CM_STR, "where", NULL, true, offsetof(filter_conf_t, where_src),
     "boolean expression; records for which it is true pass"},
    {0},
};

static int filter_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    filter_conf_t *conf = plan->conf; /* where_src set by the engine from filter_config_map */
    const weir_cfg_t *at = weir_cfg_get(plan->cfg, "where");
    conf->where = weir_plan_expr(plan, at, "where", plan->input, errstr, errstr_size);
    if (!conf->where)
        return WEIR_ERR;
    weir_type_t t = weir_expr_type(conf->where);
    if (t != WEIR_BOOL && t != WEIR_NULL)
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': where: must be a boolean expression, got %s",
                              plan->name, weir_type_name(t));
    plan->nports = 1;
    plan->ports[0].rt = weir_rowtype_clone(plan->input);
    return WEIR_OK;
}

static void filter_plan_destroy(void *p) {
    filter_conf_t *conf = p;
    if (!conf)
        return;
    weir_expr_destroy(conf->where);
}

static void filter_describe(const weir_plan_t *plan, FILE *fp) {
    const filter_conf_t *conf = plan->conf;
    fprintf(fp, "    where: ");
    weir_expr_print(conf->where, plan->input, fp);
    fprintf(fp, "\n");
}

static void *filter_init(const weir_plan_t *plan) {
    filter_ctx_t *ctx = weir_calloc(1, sizeof(*ctx));
    ctx->plan = plan;
    return ctx;
}

static int filter_process(void *vctx, const weir_record_t *in, weir_emitter_t *em) {
    filter_ctx_t *ctx = vctx;
    const filter_conf_t *conf = ctx->plan->conf;
    weir_value_t v;
    weir_expr_eval(conf->where, in, &ctx->scratch, &v);
    if (v.type == WEIR_BOOL && v.u.b)
        weir_emit(em, 0, in);
    if (ctx->scratch.head)
        weir_arena_reset(&ctx->scratch);
    return WEIR_OK;
}

static void filter_destroy(void *vctx) {
    filter_ctx_t *ctx = vctx;
    if (!ctx)
        return;
    weir_arena_free(&ctx->scratch);
    free(ctx);
}

const weir_operator_class_t weir_filter_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "filter",
    .description = "keep the records for which `where` is true",
    .config_map = filter_config_map,
    .conf_size = sizeof(filter_conf_t),
    .configure = filter_configure,
    .plan_destroy = filter_plan_destroy,
    .describe = filter_describe,
    .init = filter_init,
    .process = filter_process,
    .destroy = filter_destroy,
};
