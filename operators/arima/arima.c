/**
 * arima: per-key ARIMA(p,d,q) over a stream of values (typically one value
 * per key per window). See operators/arima/README.md and docs/arima.md.
 *
 * Per key the operator keeps a ring buffer of the last `history` values and,
 * once `min_points` exist, fits the model by exact maximum likelihood every
 * `refit_every` values (warm-started from the previous estimate). Between
 * refits the Kalman state of the last model absorbs each new value, so the
 * one-step forecast used for anomaly flags is always current.
 *
 * Port 0 (the node): one record per fit (parameters, criteria, forecasts).
 * Port 1 ("points", only with `emit: every_point`): one record per value.
 * Records have no array type yet, so the model and the forecast arrays are
 * strings holding JSON.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arima_model.h"
#include "json.h"
#include "numfmt.h"
#include "expr.h"
#include "key.h"
#include "keymap.h"
#include "operator.h"

#define ARIMA_SNAPSHOT_VERSION 1

typedef struct arima_conf {
    const char *key_src, *value_src, *ts_src, *trend_src, *emit_src;
    int64_t horizon, history, refit_every, min_points;
    int64_t max_keys;         /* series per task at most (0 = no limit) */
    double anomaly_threshold; /* coverage of the interval outside which a value is anomalous */
    weir_key_spec_t key;      /* key.h: an expression; absent: the record key */
    weir_expr_t *value, *ts;
    arima_spec_t spec;
    bool every_point;
    double z_anomaly; /* normal quantile for anomaly_threshold */
    double z80, z95;
    int s_key, s_ts, s_model, s_loglik, s_aic, s_aicc, s_bic, s_nobs, s_conv, s_iter, s_fc, s_lo80, s_hi80, s_lo95,
        s_hi95, s_error, s_id;                                                     /* port 0 slots */
    int p_key, p_ts, p_id, p_actual, p_fc, p_se, p_lo, p_hi, p_z, p_anom, p_error; /* port 1 slots */
} arima_conf_t;

/** Per-key series state: the value (a pointer) of its key in ctx->series. */
typedef struct series {
    uint32_t id;       /**< its id in ctx->series (the key bytes are there) */
    double *buf;       /**< ring buffer of `history` values (room for `cap`, grown by doubling while not full) */
    int cap;           /**< values buf has room for (<= history) */
    int head;          /**< index of the oldest value */
    int count;         /**< values held */
    uint64_t total;    /**< values seen */
    int since_fit;     /**< values since the last fit attempt */
    bool fitted_once;  /**< a fit was attempted */
    bool have_model;   /**< fit/ks hold a usable model */
    arima_fit_t fit;   /**< last successful fit */
    arima_kstate_t ks; /**< Kalman prediction for the next value */
} series_t;

typedef struct arima_ctx {
    const weir_plan_t *plan;
    weir_keymap_t series;  /* key bytes -> series_t * (owned), first-seen order (least recently updated first
                              when max_keys is set) */
    uint64_t keys_evicted; /* series evicted by max_keys (this task, since start) */
    char keybuf[WEIR_KEY_BUF];
    weir_record_t out, pts;
    weir_arena_t scratch;
    double *work; /* history values in order, for fitting */
    weir_buf_t json;
} arima_ctx_t;

static const weir_config_map_t arima_config_map[] = {
    {WEIR_CM_STR, "value", NULL, true, offsetof(arima_conf_t, value_src), "numeric expression: the series value"},
    {WEIR_CM_STR, "key", NULL, false, offsetof(arima_conf_t, key_src),
     "expression naming the series (default: the record key; no key = one series); null: dead-lettered"},
    {WEIR_CM_STR, "ts", NULL, false, offsetof(arima_conf_t, ts_src),
     "expression giving the time (epoch ms, long) of a value (default: the record's event time)"},
    {WEIR_CM_CUSTOM, "order", NULL, true, 0, "[p, d, q] with p, q <= 8 and d <= 2"},
    {WEIR_CM_STR, "trend", NULL, false, offsetof(arima_conf_t, trend_src),
     "n | c | t | ct as statsmodels means them (default c when d = 0, n otherwise; t with d = 1 is a drift)"},
    {WEIR_CM_LONG, "horizon", "10", false, offsetof(arima_conf_t, horizon), "forecast steps per fit"},
    {WEIR_CM_LONG, "history", "500", false, offsetof(arima_conf_t, history), "values kept per key (ring buffer)"},
    {WEIR_CM_LONG, "refit_every", "10", false, offsetof(arima_conf_t, refit_every), "refit after this many new values"},
    {WEIR_CM_LONG, "min_points", "30", false, offsetof(arima_conf_t, min_points), "values needed for the first fit"},
    {WEIR_CM_STR, "emit", "fits", false, offsetof(arima_conf_t, emit_src),
     "fits | every_point (also one record per value on port 'points')"},
    {WEIR_CM_DOUBLE, "anomaly_threshold", "0.95", false, offsetof(arima_conf_t, anomaly_threshold),
     "a value outside this central one-step prediction interval is an anomaly"},
    {WEIR_CM_LONG, "max_keys", "1000000", false, offsetof(arima_conf_t, max_keys),
     "series per task at most; a new key beyond it evicts the least recently updated series (with a model and "
     "values since its last fit: one last record, id + \"/evicted\") (0 = no limit)"},
    {0},
};

static void arima_plan_destroy(void *p) {
    arima_conf_t *conf = p;
    if (!conf)
        return;
    weir_key_spec_free(&conf->key);
    weir_expr_destroy(conf->value);
    weir_expr_destroy(conf->ts);
}

static int parse_order(const weir_plan_t *plan, arima_conf_t *conf, char *errstr, size_t errstr_size) {
    const weir_cfg_t *o = weir_cfg_get(plan->cfg, "order");
    if (!o)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': arima needs 'order: [p, d, q]'", plan->name);
    if (o->kind == WEIR_CFG_SCALAR && !strcmp(o->scalar, "auto"))
        return weir_cfg_error(o, errstr, errstr_size, "node '%s': order: 'auto' is not implemented yet", plan->name);
    if (o->kind != WEIR_CFG_SEQ || o->n != 3)
        return weir_cfg_error(o, errstr, errstr_size, "node '%s': order: expected [p, d, q]", plan->name);
    int64_t v[3];
    for (int i = 0; i < 3; i++)
        if (weir_cfg_as_long(o->items[i], &v[i], errstr, errstr_size))
            return WEIR_ERR;
    conf->spec.p = (int)v[0];
    conf->spec.d = (int)v[1];
    conf->spec.q = (int)v[2];
    if (v[0] < 0 || v[0] > ARIMA_MAX_P || v[2] < 0 || v[2] > ARIMA_MAX_Q || v[1] < 0 || v[1] > ARIMA_MAX_D)
        return weir_cfg_error(o, errstr, errstr_size, "node '%s': order: p and q must be 0..%d and d 0..%d", plan->name,
                              ARIMA_MAX_P, ARIMA_MAX_D);
    conf->spec.trend = conf->spec.d == 0 ? ARIMA_TREND_C : ARIMA_TREND_N;
    if (conf->trend_src) {
        static const char *names[] = {"n", "c", "t", "ct"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(conf->trend_src, names[i]))
                found = i;
        if (found < 0)
            return weir_cfg_error(weir_cfg_get(plan->cfg, "trend"), errstr, errstr_size,
                                  "node '%s': trend: expected n, c, t or ct", plan->name);
        conf->spec.trend = (arima_trend_t)found;
    }
    char why[160];
    if (arima_spec_check(&conf->spec, why, sizeof(why)))
        return weir_cfg_error(o, errstr, errstr_size, "node '%s': %s", plan->name, why);
    return WEIR_OK;
}

static int arima_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    arima_conf_t *conf = plan->conf; /* arima_config_map applied by the engine */
    if (parse_order(plan, conf, errstr, errstr_size))
        return WEIR_ERR;
    const weir_cfg_t *at = weir_cfg_get(plan->cfg, "value");
    if (!(conf->value = weir_plan_expr(plan, at, "value", plan->input, errstr, errstr_size)))
        return WEIR_ERR;
    weir_type_t t = weir_expr_type(conf->value);
    if (t != WEIR_LONG && t != WEIR_DOUBLE)
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': value: must be numeric, got %s", plan->name,
                              weir_type_name(t));
    if (weir_key_spec_init(&conf->key, plan, errstr, errstr_size))
        return WEIR_ERR;
    plan->partitioning = WEIR_PART_KEY; /* every record of a key in one task */
    plan->key = &conf->key;
    if (conf->ts_src) {
        at = weir_cfg_get(plan->cfg, "ts");
        if (!(conf->ts = weir_plan_expr(plan, at, "ts", plan->input, errstr, errstr_size)))
            return WEIR_ERR;
        t = weir_expr_type(conf->ts);
        if (t != WEIR_LONG && t != WEIR_DOUBLE)
            return weir_cfg_error(at, errstr, errstr_size, "node '%s': ts: must be epoch milliseconds, got %s",
                                  plan->name, weir_type_name(t));
    }
    int need = arima_nparams(&conf->spec) + 2 + conf->spec.d;
    if (conf->horizon < 1 || conf->horizon > 10000)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': horizon must be 1..10000", plan->name);
    if (conf->min_points < need)
        return weir_cfg_error(plan->cfg, errstr, errstr_size,
                              "node '%s': min_points must be at least %d for this order", plan->name, need);
    if (conf->history < conf->min_points || conf->history > 10000000)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': history must be >= min_points (and <= 1e7)",
                              plan->name);
    if (conf->refit_every < 1)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': refit_every must be >= 1", plan->name);
    if (conf->max_keys < 0 || conf->max_keys > UINT32_MAX / 2)
        return weir_cfg_error(weir_cfg_get(plan->cfg, "max_keys"), errstr, errstr_size,
                              "node '%s': max_keys must be between 0 (no limit) and %u", plan->name, UINT32_MAX / 2);
    if (!(conf->anomaly_threshold > 0 && conf->anomaly_threshold < 1))
        return weir_cfg_error(plan->cfg, errstr, errstr_size,
                              "node '%s': anomaly_threshold must be between 0 and 1 (e.g. 0.95)", plan->name);
    if (!strcmp(conf->emit_src, "every_point"))
        conf->every_point = true;
    else if (strcmp(conf->emit_src, "fits"))
        return weir_cfg_error(weir_cfg_get(plan->cfg, "emit"), errstr, errstr_size,
                              "node '%s': emit: expected fits or every_point", plan->name);
    conf->z_anomaly = arima_z_quantile(conf->anomaly_threshold);
    conf->z80 = arima_z_quantile(0.80);
    conf->z95 = arima_z_quantile(0.95);

    weir_rowtype_t *rt = weir_rowtype_new();
    conf->s_key = weir_rowtype_add(rt, "key", WEIR_STRING, false);
    conf->s_ts = weir_rowtype_add(rt, "ts", WEIR_LONG, true);
    conf->s_model = weir_rowtype_add(rt, "model", WEIR_STRING, true);
    conf->s_loglik = weir_rowtype_add(rt, "loglik", WEIR_DOUBLE, true);
    conf->s_aic = weir_rowtype_add(rt, "aic", WEIR_DOUBLE, true);
    conf->s_aicc = weir_rowtype_add(rt, "aicc", WEIR_DOUBLE, true);
    conf->s_bic = weir_rowtype_add(rt, "bic", WEIR_DOUBLE, true);
    conf->s_nobs = weir_rowtype_add(rt, "nobs", WEIR_LONG, false);
    conf->s_conv = weir_rowtype_add(rt, "converged", WEIR_BOOL, false);
    conf->s_iter = weir_rowtype_add(rt, "iterations", WEIR_LONG, false);
    conf->s_fc = weir_rowtype_add(rt, "forecast", WEIR_STRING, true);
    conf->s_lo80 = weir_rowtype_add(rt, "lower80", WEIR_STRING, true);
    conf->s_hi80 = weir_rowtype_add(rt, "upper80", WEIR_STRING, true);
    conf->s_lo95 = weir_rowtype_add(rt, "lower95", WEIR_STRING, true);
    conf->s_hi95 = weir_rowtype_add(rt, "upper95", WEIR_STRING, true);
    conf->s_error = weir_rowtype_add(rt, "error", WEIR_STRING, true);
    conf->s_id = weir_rowtype_add(rt, "id", WEIR_STRING, false);
    plan->nports = 1;
    plan->ports[0].rt = rt;
    if (conf->every_point) {
        weir_rowtype_t *pt = weir_rowtype_new();
        conf->p_key = weir_rowtype_add(pt, "key", WEIR_STRING, false);
        conf->p_ts = weir_rowtype_add(pt, "ts", WEIR_LONG, true);
        conf->p_id = weir_rowtype_add(pt, "id", WEIR_STRING, false);
        conf->p_actual = weir_rowtype_add(pt, "actual", WEIR_DOUBLE, false);
        conf->p_fc = weir_rowtype_add(pt, "forecast", WEIR_DOUBLE, true);
        conf->p_se = weir_rowtype_add(pt, "stderr", WEIR_DOUBLE, true);
        conf->p_lo = weir_rowtype_add(pt, "lower", WEIR_DOUBLE, true);
        conf->p_hi = weir_rowtype_add(pt, "upper", WEIR_DOUBLE, true);
        conf->p_z = weir_rowtype_add(pt, "residual", WEIR_DOUBLE, true);
        conf->p_anom = weir_rowtype_add(pt, "anomaly", WEIR_BOOL, false);
        conf->p_error = weir_rowtype_add(pt, "error", WEIR_STRING, true);
        plan->nports = 2;
        plan->ports[1].suffix = "points";
        plan->ports[1].rt = pt;
    }
    return WEIR_OK;
}

static void arima_describe(const weir_plan_t *plan, FILE *fp) {
    const arima_conf_t *conf = plan->conf;
    static const char *tn[] = {"n", "c", "t", "ct"};
    fprintf(fp,
            "    order: [%d, %d, %d]  trend: %s  horizon: %lld  history: %lld  refit_every: %lld"
            "  min_points: %lld  emit: %s\n",
            conf->spec.p, conf->spec.d, conf->spec.q, tn[conf->spec.trend], (long long)conf->horizon,
            (long long)conf->history, (long long)conf->refit_every, (long long)conf->min_points,
            conf->every_point ? "every_point" : "fits");
    fprintf(fp, "    value: ");
    weir_expr_print(conf->value, plan->input, fp);
    fprintf(fp, "\n");
}

/* ---- per-key series (a weir_keymap of series_t *) ---- */

static void series_free(series_t *s) {
    if (!s)
        return;
    free(s->buf);
    free(s);
}

static void series_free_val(void *val, void *arg) {
    (void)arg;
    series_free(*(series_t **)val);
}

/* Room for n values (n <= history) while the ring is not full (head 0): grown by doubling, so that a key
 * explosion of one-value series does not cost `history` values per key. */
static void series_reserve(series_t *s, const arima_conf_t *conf, int n) {
    if (n <= s->cap)
        return;
    int cap = s->cap ? 2 * s->cap : 8;
    while (cap < n)
        cap *= 2;
    s->cap = cap < conf->history ? cap : (int)conf->history;
    s->buf = weir_realloc(s->buf, (size_t)s->cap * sizeof(double));
}

/* A new series under key bytes that are not in map yet. */
static series_t *series_add(weir_keymap_t *map, const arima_conf_t *conf, const char *key, size_t n, uint64_t h) {
    series_t *s = weir_calloc(1, sizeof(*s));
    s->cap = conf->history < 8 ? (int)conf->history : 8;
    s->buf = weir_malloc((size_t)s->cap * sizeof(double));
    s->id = weir_keymap_add(map, key, n, h);
    *(series_t **)weir_keymap_val(map, s->id) = s;
    return s;
}

static void series_evict(arima_ctx_t *ctx, weir_emitter_t *em, const weir_record_t *in, uint32_t id);

/* The series of a key, created if new (max_keys: evicting the least recently updated ones first); with
 * max_keys, it becomes the most recently updated. */
static series_t *series_get(arima_ctx_t *ctx, const char *key, size_t n, weir_emitter_t *em, const weir_record_t *in) {
    const arima_conf_t *conf = ctx->plan->conf;
    uint64_t h = weir_keymap_hash(key, n);
    uint32_t id = weir_keymap_find(&ctx->series, key, n, h);
    if (id != WEIR_KEYMAP_NONE) {
        if (conf->max_keys)
            weir_keymap_touch(&ctx->series, id);
        return *(series_t **)weir_keymap_val(&ctx->series, id);
    }
    /* Eviction emits through ctx->out and ctx->json only: key (in ctx->scratch, keybuf or in) stays valid. */
    while (conf->max_keys && weir_keymap_count(&ctx->series) >= (uint64_t)conf->max_keys)
        series_evict(ctx, em, in, weir_keymap_first(&ctx->series));
    return series_add(&ctx->series, conf, key, n, h);
}

/* The key bytes of a series (NUL-terminated). */
static const char *series_key(const arima_ctx_t *ctx, const series_t *s, size_t *n) {
    return weir_keymap_key(&ctx->series, s->id, n);
}

/* ---- life cycle ---- */

static void *arima_init(const weir_plan_t *plan) {
    const arima_conf_t *conf = plan->conf;
    arima_ctx_t *ctx = weir_calloc(1, sizeof(*ctx));
    ctx->plan = plan;
    weir_keymap_init(&ctx->series, sizeof(series_t *));
    weir_record_init(&ctx->out, plan->ports[0].rt);
    if (conf->every_point)
        weir_record_init(&ctx->pts, plan->ports[1].rt);
    ctx->work = weir_calloc((size_t)conf->history, sizeof(double));
    return ctx;
}

static void arima_destroy(void *vctx) {
    arima_ctx_t *ctx = vctx;
    if (!ctx)
        return;
    weir_keymap_free(&ctx->series, series_free_val, NULL);
    const arima_conf_t *conf = ctx->plan->conf;
    weir_record_free(&ctx->out);
    if (conf->every_point)
        weir_record_free(&ctx->pts);
    weir_arena_free(&ctx->scratch);
    weir_buf_free(&ctx->json);
    free(ctx->work);
    free(ctx);
}

/* ---- output ---- */

static void json_num(weir_buf_t *b, double v) {
    char tmp[WEIR_FMT_DOUBLE_MAX];
    weir_buf_append(b, tmp, weir_fmt_double(v, tmp)); /* non-finite: null */
}

static weir_value_t arena_str(weir_record_t *r, const weir_buf_t *b) {
    return weir_v_str(weir_arena_strndup(&r->arena, (const char *)b->p, b->len), b->len);
}

static weir_value_t json_array(weir_record_t *r, weir_buf_t *b, const double *v, int n) {
    weir_buf_reset(b);
    weir_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i)
            weir_buf_putc(b, ',');
        json_num(b, v[i]);
    }
    weir_buf_putc(b, ']');
    return arena_str(r, b);
}

static weir_value_t make_id(arima_ctx_t *ctx, weir_record_t *r, const series_t *s, int64_t ts, bool evicted) {
    weir_buf_t *b = &ctx->json;
    weir_buf_reset(b);
    size_t kn;
    weir_buf_printf(b, "%s/%s/%s/", ctx->plan->pipeline, ctx->plan->name, series_key(ctx, s, &kn));
    if (ts != WEIR_TS_NONE)
        weir_buf_printf(b, "%lld", (long long)ts);
    else
        weir_buf_printf(b, "n%llu", (unsigned long long)s->total);
    if (evicted)
        weir_buf_puts(b, "/evicted");
    return arena_str(r, b);
}

static weir_value_t ts_value(int64_t ts) { return ts == WEIR_TS_NONE ? weir_v_null() : weir_v_long(ts); }

static void emit_fit(arima_ctx_t *ctx, weir_emitter_t *em, const weir_record_t *in, const series_t *s,
                     const arima_fit_t *fit, bool ok, int64_t ts, bool evicted) {
    const arima_conf_t *conf = ctx->plan->conf;
    weir_record_t *out = &ctx->out;
    weir_record_clear(out);
    weir_record_copy_meta(out, in);
    out->key = series_key(ctx, s, &out->key_len);
    out->ts = ts;
    out->v[conf->s_key] = weir_v_str(out->key, out->key_len);
    out->v[conf->s_ts] = ts_value(ts);
    out->v[conf->s_nobs] = weir_v_long(fit->nobs);
    out->v[conf->s_conv] = weir_v_bool(fit->converged);
    out->v[conf->s_iter] = weir_v_long(fit->iterations);
    out->v[conf->s_id] = make_id(ctx, out, s, ts, evicted);
    if (fit->error[0])
        out->v[conf->s_error] =
            weir_v_str(weir_arena_strndup(&out->arena, fit->error, strlen(fit->error)), strlen(fit->error));
    if (ok) {
        weir_buf_t *b = &ctx->json;
        weir_buf_reset(b);
        weir_buf_putc(b, '{');
        for (int i = 0; i < fit->nparams; i++) {
            char name[32];
            arima_param_name(&conf->spec, i, name, sizeof(name));
            weir_buf_printf(b, "%s\"%s\":", i ? "," : "", name);
            json_num(b, fit->params[i]);
        }
        weir_buf_putc(b, '}');
        out->v[conf->s_model] = arena_str(out, b);
        out->v[conf->s_loglik] = weir_v_double(fit->loglik);
        out->v[conf->s_aic] = weir_v_double(fit->aic);
        if (isfinite(fit->aicc))
            out->v[conf->s_aicc] = weir_v_double(fit->aicc);
        out->v[conf->s_bic] = weir_v_double(fit->bic);
        int h = (int)conf->horizon;
        double *mean = weir_malloc(sizeof(double) * 6 * (size_t)h), *se = mean + h, *tmp = mean + 2 * h;
        arima_ssm_t ssm;
        arima_ssm_build(&conf->spec, fit->params, &ssm);
        arima_forecast(&ssm, &s->ks, h, mean, se);
        out->v[conf->s_fc] = json_array(out, b, mean, h);
        const double zs[2] = {conf->z80, conf->z95};
        const int lo[2] = {conf->s_lo80, conf->s_lo95}, hi[2] = {conf->s_hi80, conf->s_hi95};
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < h; i++)
                tmp[i] = mean[i] - zs[k] * se[i];
            out->v[lo[k]] = json_array(out, b, tmp, h);
            for (int i = 0; i < h; i++)
                tmp[i] = mean[i] + zs[k] * se[i];
            out->v[hi[k]] = json_array(out, b, tmp, h);
        }
        free(mean);
    }
    weir_emit(em, 0, out);
}

static void emit_point(arima_ctx_t *ctx, weir_emitter_t *em, const weir_record_t *in, const series_t *s, double y,
                       bool have, double yhat, double var, int64_t ts) {
    const arima_conf_t *conf = ctx->plan->conf;
    weir_record_t *r = &ctx->pts;
    weir_record_clear(r);
    weir_record_copy_meta(r, in);
    r->key = series_key(ctx, s, &r->key_len);
    r->ts = ts;
    r->v[conf->p_key] = weir_v_str(r->key, r->key_len);
    r->v[conf->p_ts] = ts_value(ts);
    r->v[conf->p_id] = make_id(ctx, r, s, ts, false);
    r->v[conf->p_actual] = weir_v_double(y);
    bool anomaly = false;
    if (have && var > 0 && isfinite(yhat)) {
        double se = sqrt(var);
        double z = (y - yhat) / se;
        r->v[conf->p_fc] = weir_v_double(yhat);
        r->v[conf->p_se] = weir_v_double(se);
        r->v[conf->p_lo] = weir_v_double(yhat - conf->z_anomaly * se);
        r->v[conf->p_hi] = weir_v_double(yhat + conf->z_anomaly * se);
        r->v[conf->p_z] = weir_v_double(z);
        anomaly = fabs(z) > conf->z_anomaly;
    } else {
        static const char nomodel[] = "no model yet";
        r->v[conf->p_error] = weir_v_str(nomodel, sizeof(nomodel) - 1);
    }
    r->v[conf->p_anom] = weir_v_bool(anomaly);
    weir_emit(em, 1, r);
}

/* ---- processing ---- */

static void refit(arima_ctx_t *ctx, series_t *s, weir_emitter_t *em, const weir_record_t *in, int64_t ts) {
    const arima_conf_t *conf = ctx->plan->conf;
    for (int i = 0; i < s->count; i++)
        ctx->work[i] = s->buf[(s->head + i) % conf->history];
    arima_fit_t fit;
    arima_kstate_t ks;
    int rc = arima_fit(&conf->spec, ctx->work, s->count, s->have_model ? &s->fit : NULL, NULL, &fit, &ks);
    (void)rc; /* a non-converged estimate with a finite likelihood is still used (and reported with its error) */
    bool usable = isfinite(fit.loglik);
    if (usable) {
        s->fit = fit;
        s->ks = ks;
        s->have_model = true;
    }
    s->fitted_once = true;
    s->since_fit = 0;
    emit_fit(ctx, em, in, s, usable ? &s->fit : &fit, usable, ts, false);
}

/* Evict series id (max_keys). With a model and values since its last fit, one last record on port 0: the last
 * model and its forecast from the latest value, ts null, id "<pipeline>/<node>/<key>/n<values seen>/evicted"
 * (its last fit record already says everything otherwise). The record in hand only lends its metadata. */
static void series_evict(arima_ctx_t *ctx, weir_emitter_t *em, const weir_record_t *in, uint32_t id) {
    series_t *s = *(series_t **)weir_keymap_val(&ctx->series, id);
    if (s->have_model && s->since_fit > 0)
        emit_fit(ctx, em, in, s, &s->fit, true, WEIR_TS_NONE, true);
    series_free(s);
    weir_keymap_del(&ctx->series, id);
    if (weir_plan_count_evicted(ctx->plan, 1, &ctx->keys_evicted))
        weir_log(WEIR_LOG_WARN, "arima",
                 "node '%s': max_keys (%lld) reached: evicting the least recently updated series (logged once; see "
                 "weir_evicted_keys_total)",
                 ctx->plan->name, (long long)((const arima_conf_t *)ctx->plan->conf)->max_keys);
}

static int arima_process(void *vctx, const weir_record_t *in, weir_emitter_t *em) {
    arima_ctx_t *ctx = vctx;
    const arima_conf_t *conf = ctx->plan->conf;
    weir_value_t v;
    if (ctx->scratch.head)
        weir_arena_reset(&ctx->scratch);
    weir_expr_eval(conf->value, in, &ctx->scratch, &v);
    if (v.type != WEIR_LONG && v.type != WEIR_DOUBLE) {
        em->reject(em, in, "arima: value is null");
        return WEIR_OK;
    }
    double y = weir_v_num(&v);
    if (!isfinite(y)) {
        em->reject(em, in, "arima: value is not a finite number");
        return WEIR_OK;
    }
    int64_t ts = in->ts;
    if (conf->ts) {
        weir_value_t t;
        weir_expr_eval(conf->ts, in, &ctx->scratch, &t);
        ts = t.type == WEIR_LONG ? t.u.i : t.type == WEIR_DOUBLE ? (int64_t)t.u.d : WEIR_TS_NONE;
    }
    const char *key;
    size_t klen;
    const char *why = weir_key_eval(&conf->key, in, &ctx->scratch, ctx->keybuf, &key, &klen);
    if (why) {
        em->reject(em, in, why);
        return WEIR_OK;
    }
    series_t *s = series_get(ctx, key, klen, em, in);
    /* one-step prediction from the current model, then the Kalman update */
    double yhat = NAN, var = NAN;
    if (s->have_model) {
        arima_ssm_t ssm;
        arima_ssm_build(&conf->spec, s->fit.params, &ssm);
        arima_kstate_step(&ssm, &s->ks, y, &yhat, &var);
    }
    s->total++;
    if (conf->every_point)
        emit_point(ctx, em, in, s, y, s->have_model, yhat, var, ts);
    if (s->count < conf->history) {
        series_reserve(s, conf, s->count + 1); /* not full: head is 0 */
        s->buf[(s->head + s->count) % conf->history] = y;
        s->count++;
    } else {
        s->buf[s->head] = y;
        s->head = (int)((s->head + 1) % conf->history);
    }
    s->since_fit++;
    if (s->count >= conf->min_points && (!s->fitted_once || s->since_fit >= conf->refit_every))
        refit(ctx, s, em, in, ts);
    return WEIR_OK;
}

/* ---- snapshot ---- */

static int arima_snapshot(void *vctx, weir_writer_t *w) {
    arima_ctx_t *ctx = vctx;
    const arima_conf_t *conf = ctx->plan->conf;
    weir_w_frame_begin(w, "arima", ARIMA_SNAPSHOT_VERSION);
    /* the configuration the state depends on, checked on restore */
    weir_w_u32(w, (uint32_t)conf->spec.p);
    weir_w_u32(w, (uint32_t)conf->spec.d);
    weir_w_u32(w, (uint32_t)conf->spec.q);
    weir_w_u32(w, (uint32_t)conf->spec.trend);
    weir_w_u64(w, (uint64_t)conf->history);
    weir_w_u64(w, weir_keymap_count(&ctx->series));
    /* Series in first-seen order (weir_keymap iteration): independent of hashing. */
    for (uint32_t id = weir_keymap_first(&ctx->series); id != WEIR_KEYMAP_NONE;
         id = weir_keymap_next(&ctx->series, id)) {
        const series_t *s = *(series_t **)weir_keymap_val(&ctx->series, id);
        size_t kn;
        const char *kb = weir_keymap_key(&ctx->series, id, &kn);
        weir_w_bytes(w, kb, kn);
        weir_w_u64(w, s->total);
        weir_w_u32(w, (uint32_t)s->count);
        weir_w_u32(w, (uint32_t)s->since_fit);
        weir_w_u8(w, s->fitted_once);
        for (int k = 0; k < s->count; k++)
            weir_w_f64(w, s->buf[(s->head + k) % conf->history]);
        weir_w_u8(w, s->have_model);
        if (!s->have_model)
            continue;
        const arima_fit_t *f = &s->fit;
        weir_w_u32(w, (uint32_t)f->nparams);
        for (int k = 0; k < f->nparams; k++)
            weir_w_f64(w, f->params[k]);
        weir_w_f64(w, f->loglik);
        weir_w_f64(w, f->aic);
        weir_w_f64(w, f->aicc);
        weir_w_f64(w, f->bic);
        weir_w_u32(w, (uint32_t)f->nobs);
        weir_w_u8(w, f->converged);
        weir_w_u32(w, (uint32_t)f->iterations);
        weir_w_u32(w, (uint32_t)f->nevals);
        const arima_kstate_t *ks = &s->ks;
        weir_w_u32(w, (uint32_t)ks->m);
        for (int k = 0; k < ks->m; k++)
            weir_w_f64(w, ks->a[k]);
        for (int k = 0; k < ks->m * ks->m; k++)
            weir_w_f64(w, ks->P[k]);
        weir_w_f64(w, ks->t);
        weir_w_u8(w, ks->steady);
    }
    weir_w_frame_end(w);
    return WEIR_OK;
}

static int arima_restore(void *vctx, weir_reader_t *r, char *errstr, size_t errstr_size) {
    arima_ctx_t *ctx = vctx;
    const arima_conf_t *conf = ctx->plan->conf;
    const char *name = ctx->plan->name;
    uint16_t version;
    weir_reader_t b;
    if (weir_r_frame_open(r, "arima", &version, &b))
        return weir_err(errstr, errstr_size, "node '%s': %s", name, r->errstr);
    if (version != ARIMA_SNAPSHOT_VERSION)
        return weir_err(errstr, errstr_size, "node '%s': unsupported arima snapshot version %u", name, version);
    uint32_t p = weir_r_u32(&b), d = weir_r_u32(&b), q = weir_r_u32(&b), tr = weir_r_u32(&b);
    uint64_t hist = weir_r_u64(&b);
    if (!b.err && (p != (uint32_t)conf->spec.p || d != (uint32_t)conf->spec.d || q != (uint32_t)conf->spec.q ||
                   tr != (uint32_t)conf->spec.trend || hist != (uint64_t)conf->history))
        return weir_err(errstr, errstr_size,
                        "node '%s': arima snapshot is for order [%u,%u,%u] trend %u history %llu, not this"
                        " configuration",
                        name, p, d, q, tr, (unsigned long long)hist);
    uint64_t n = weir_r_u64(&b);
    /* parse everything into a new map first: a bad blob leaves the state untouched */
    weir_keymap_t tmp;
    weir_keymap_init(&tmp, sizeof(series_t *));
    int nparams = arima_nparams(&conf->spec);
    int m = conf->spec.d + (conf->spec.p > conf->spec.q + 1 ? conf->spec.p : conf->spec.q + 1);
    for (uint64_t i = 0; i < n && !b.err; i++) {
        size_t klen;
        const uint8_t *k = weir_r_bytes(&b, &klen);
        if (!k)
            break;
        uint64_t h = weir_keymap_hash(k, klen);
        if (klen > WEIR_KEYMAP_MAX_KEY || weir_keymap_find(&tmp, k, klen, h) != WEIR_KEYMAP_NONE) {
            weir_r_fail(&b, "bad or repeated key in series %llu", (unsigned long long)i);
            break;
        }
        series_t *s = series_add(&tmp, conf, (const char *)k, klen, h);
        s->total = weir_r_u64(&b);
        uint32_t cnt = weir_r_u32(&b);
        s->since_fit = (int)weir_r_u32(&b);
        s->fitted_once = weir_r_u8(&b);
        if (cnt > (uint64_t)conf->history) {
            weir_r_fail(&b, "series holds %u values, more than history", cnt);
            break;
        }
        s->count = (int)cnt;
        series_reserve(s, conf, s->count);
        for (uint32_t j = 0; j < cnt; j++)
            s->buf[j] = weir_r_f64(&b);
        s->have_model = weir_r_u8(&b);
        if (!s->have_model)
            continue;
        arima_fit_t *f = &s->fit;
        f->nparams = (int)weir_r_u32(&b);
        if (f->nparams != nparams) {
            weir_r_fail(&b, "model has %d parameters, expected %d", f->nparams, nparams);
            break;
        }
        for (int j = 0; j < nparams; j++)
            f->params[j] = weir_r_f64(&b);
        f->loglik = weir_r_f64(&b);
        f->aic = weir_r_f64(&b);
        f->aicc = weir_r_f64(&b);
        f->bic = weir_r_f64(&b);
        f->nobs = (int)weir_r_u32(&b);
        f->converged = weir_r_u8(&b);
        f->iterations = (int)weir_r_u32(&b);
        f->nevals = (int)weir_r_u32(&b);
        arima_kstate_t *ks = &s->ks;
        ks->m = (int)weir_r_u32(&b);
        if (ks->m != m) {
            weir_r_fail(&b, "Kalman state of dimension %d, expected %d", ks->m, m);
            break;
        }
        for (int j = 0; j < m; j++)
            ks->a[j] = weir_r_f64(&b);
        for (int j = 0; j < m * m; j++)
            ks->P[j] = weir_r_f64(&b);
        ks->t = weir_r_f64(&b);
        ks->steady = weir_r_u8(&b);
    }
    if (!b.err && b.pos != b.len)
        weir_r_fail(&b, "%zu trailing bytes", b.len - b.pos);
    if (b.err) {
        weir_keymap_free(&tmp, series_free_val, NULL);
        return weir_err(errstr, errstr_size, "node '%s': bad arima snapshot: %s", name, b.errstr);
    }
    weir_keymap_free(&ctx->series, series_free_val, NULL);
    ctx->series = tmp;
    return WEIR_OK;
}

/* ---- state dump (`weir state dump`) ---- */

#define ARIMA_DUMP_LAST 10 /* buffered values shown per key (the most recent) */

static void dump_num(weir_buf_t *out, double d) {
    weir_value_t v = weir_v_double(d);
    weir_json_append_value(out, &v);
}

static void dump_long(weir_buf_t *out, int64_t i) {
    weir_value_t v = weir_v_long(i);
    weir_json_append_value(out, &v);
}

static void dump_bool(weir_buf_t *out, bool b) {
    weir_value_t v = weir_v_bool(b);
    weir_json_append_value(out, &v);
}

static void dump_series(const arima_ctx_t *ctx, uint32_t id, weir_buf_t *out) {
    const arima_conf_t *conf = ctx->plan->conf;
    const series_t *s = *(series_t **)weir_keymap_val(&ctx->series, id);
    size_t kn;
    const char *kb = weir_keymap_key(&ctx->series, id, &kn);
    weir_buf_puts(out, "{\"key\":");
    weir_json_append_str(out, kb, kn);
    weir_buf_puts(out, ",\"n\":");
    dump_long(out, s->count);
    weir_buf_puts(out, ",\"total\":");
    dump_long(out, (int64_t)s->total);
    weir_buf_puts(out, ",\"since_fit\":");
    dump_long(out, s->since_fit);
    weir_buf_puts(out, ",\"fitted_once\":");
    dump_bool(out, s->fitted_once);
    weir_buf_puts(out, ",\"last_values\":[");
    int first = s->count > ARIMA_DUMP_LAST ? s->count - ARIMA_DUMP_LAST : 0;
    for (int k = first; k < s->count; k++) {
        if (k > first)
            weir_buf_putc(out, ',');
        dump_num(out, s->buf[(s->head + k) % conf->history]);
    }
    weir_buf_putc(out, ']');
    weir_buf_puts(out, ",\"model\":");
    if (!s->have_model) {
        weir_buf_puts(out, "null,\"loglik\":null,\"converged\":null,\"kalman\":null}");
        return;
    }
    const arima_fit_t *f = &s->fit;
    weir_buf_putc(out, '{');
    for (int i = 0; i < f->nparams; i++) {
        char name[32];
        arima_param_name(&conf->spec, i, name, sizeof(name));
        if (i)
            weir_buf_putc(out, ',');
        weir_json_append_str(out, name, strlen(name));
        weir_buf_putc(out, ':');
        dump_num(out, f->params[i]);
    }
    weir_buf_puts(out, "},\"loglik\":");
    dump_num(out, f->loglik);
    weir_buf_puts(out, ",\"aic\":");
    dump_num(out, f->aic);
    weir_buf_puts(out, ",\"aicc\":");
    dump_num(out, f->aicc);
    weir_buf_puts(out, ",\"bic\":");
    dump_num(out, f->bic);
    weir_buf_puts(out, ",\"nobs\":");
    dump_long(out, f->nobs);
    weir_buf_puts(out, ",\"converged\":");
    dump_bool(out, f->converged);
    weir_buf_puts(out, ",\"iterations\":");
    dump_long(out, f->iterations);
    const arima_kstate_t *ks = &s->ks;
    weir_buf_puts(out, ",\"kalman\":{\"a\":[");
    for (int i = 0; i < ks->m; i++) {
        if (i)
            weir_buf_putc(out, ',');
        dump_num(out, ks->a[i]);
    }
    weir_buf_puts(out, "],\"P\":[");
    for (int i = 0; i < ks->m; i++) {
        weir_buf_puts(out, i ? ",[" : "[");
        for (int j = 0; j < ks->m; j++) {
            if (j)
                weir_buf_putc(out, ',');
            dump_num(out, ks->P[i * ks->m + j]);
        }
        weir_buf_putc(out, ']');
    }
    weir_buf_puts(out, "],\"t\":");
    dump_num(out, ks->t);
    weir_buf_puts(out, ",\"steady\":");
    dump_bool(out, ks->steady);
    weir_buf_puts(out, "}}");
}

/* Read-only: the series sorted by key so the output does not depend on the
 * map's order (a restored task dumps byte-identically). */
static int arima_dump(void *vctx, weir_buf_t *out) {
    const arima_ctx_t *ctx = vctx;
    uint32_t *ids = weir_keymap_sorted_ids(&ctx->series), n = weir_keymap_count(&ctx->series);
    weir_buf_puts(out, "{\"keys\":");
    dump_long(out, (int64_t)n);
    weir_buf_puts(out, ",\"series\":[");
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            weir_buf_putc(out, ',');
        dump_series(ctx, ids[i], out);
    }
    weir_buf_puts(out, "]}");
    free(ids);
    return WEIR_OK;
}

const weir_operator_class_t weir_arima_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "arima",
    .description = "per-key ARIMA(p,d,q) by exact maximum likelihood: forecasts, intervals, anomaly flags",
    .config_map = arima_config_map,
    .conf_size = sizeof(arima_conf_t),
    .configure = arima_configure,
    .plan_destroy = arima_plan_destroy,
    .describe = arima_describe,
    .init = arima_init,
    .process = arima_process,
    .snapshot = arima_snapshot,
    .restore = arima_restore,
    .destroy = arima_destroy,
    .dump = arima_dump,
};
