/*
 * ARIMA: the numerical library against statsmodels 0.13.5 (fixtures written
 * by tests/arima_ref/gen_fixtures.py), degenerate inputs, the operator's
 * snapshot/restore, and a file-mode run of the weir binary.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arima_model.h"
#include "arima_ref/fixtures.h"
#include "pipeline.h"
#include "task.h"

#define PARAM_TOL 1e-3 /* absolute, or relative for |x| > 1 */
#define LLF_TOL 1e-3
#define FC_TOL 1e-3 /* relative */

static const ref_series_t *find_series(const char *name) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_series); i++)
        if (!strcmp(ref_series[i].name, name))
            return &ref_series[i];
    cr_assert_fail("no series %s", name);
    return NULL;
}

static double rel_err(double got, double want) { return fabs(got - want) / fmax(1.0, fabs(want)); }

/* ---- library ---- */

Test(arima_model, transform_matches_statsmodels) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_transforms); i++) {
        const ref_transform_t *t = &ref_transforms[i];
        double c[4], u[4];
        arima_constrain_stationary(t->u, t->n, c);
        cr_assert_eq(arima_unconstrain_stationary(c, t->n, u), 0);
        for (int j = 0; j < t->n; j++) {
            cr_assert_float_eq(c[j], t->c[j], 1e-12, "case %zu coef %d", i, j);
            cr_assert_float_eq(u[j], t->u[j], 1e-9, "case %zu round trip %d", i, j);
        }
    }
    double bad[1] = {1.5}, u[1];
    cr_assert_eq(arima_unconstrain_stationary(bad, 1, u), -1, "a non-stationary AR(1) has no preimage");
}

Test(arima_model, psi_weights_match_arma2ma) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_psi); i++) {
        double psi[12];
        arima_psi_weights(&ref_psi[i].spec, ref_psi[i].params, 12, psi);
        for (int j = 0; j < 12; j++)
            cr_assert_float_eq(psi[j], ref_psi[i].psi[j], 1e-10, "case %zu psi_%d", i, j);
    }
}

Test(arima_model, loglik_and_css_at_fixed_params) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_fixed); i++) {
        const ref_fixed_t *f = &ref_fixed[i];
        const ref_series_t *s = find_series(f->series);
        double ll = arima_loglik(&f->spec, s->y, s->n, f->params);
        cr_assert(fabs(ll - f->loglik) < 1e-6, "%s case %zu: loglik %.10f, statsmodels %.10f", f->series, i, ll,
                  f->loglik);
        double css = arima_css(&f->spec, s->y, s->n, f->params, NULL);
        cr_assert(fabs(css - f->css) <= 1e-9 * f->css, "%s case %zu: css %.10g, reference %.10g", f->series, i, css,
                  f->css);
    }
}

Test(arima_model, z_quantiles) {
    cr_assert_float_eq(arima_z_quantile(0.95), 1.959963984540054, 1e-12);
    cr_assert_float_eq(arima_z_quantile(0.80), 1.2815515655446004, 1e-12);
    cr_assert_float_eq(arima_z_quantile(0.99), 2.5758293035489004, 1e-12);
}

/* One row per statsmodels fit: parameters, log-likelihood, criteria and
 * 10-step forecasts with 80/95 % intervals. */
Test(arima_model, fits_match_statsmodels) {
    double worst_p = 0, worst_ll = 0, worst_fc = 0;
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_fits); i++) {
        const ref_fit_t *r = &ref_fits[i];
        const ref_series_t *s = find_series(r->series);
        arima_fit_t fit;
        arima_kstate_t ks;
        int rc = arima_fit(&r->spec, s->y, s->n, NULL, NULL, &fit, &ks);
        const char *what = r->series;
        cr_assert_eq(rc, 0, "%s (%d,%d,%d): %s", what, r->spec.p, r->spec.d, r->spec.q, fit.error);
        cr_assert(fit.converged);
        cr_assert_eq(fit.nparams, r->nparams);
        for (int j = 0; j < r->nparams; j++) {
            double e = rel_err(fit.params[j], r->params[j]);
            worst_p = fmax(worst_p, e);
            cr_assert(e < PARAM_TOL, "%s (%d,%d,%d) param %d: %.8g vs statsmodels %.8g", what, r->spec.p, r->spec.d,
                      r->spec.q, j, fit.params[j], r->params[j]);
        }
        worst_ll = fmax(worst_ll, fabs(fit.loglik - r->loglik));
        cr_assert(fabs(fit.loglik - r->loglik) < LLF_TOL, "%s: loglik %.8f vs %.8f", what, fit.loglik, r->loglik);
        cr_assert(fit.loglik >= r->loglik_default - 1e-6, "%s: worse than statsmodels' default fit", what);
        cr_assert(fabs(fit.aic - r->aic) < 2 * LLF_TOL && fabs(fit.bic - r->bic) < 2 * LLF_TOL &&
                      fabs(fit.aicc - r->aicc) < 2 * LLF_TOL,
                  "%s: criteria", what);
        cr_assert_eq(fit.nobs, r->nobs);
        arima_ssm_t ssm;
        arima_ssm_build(&r->spec, fit.params, &ssm);
        double mean[10], se[10];
        arima_forecast(&ssm, &ks, 10, mean, se);
        double z80 = arima_z_quantile(0.8), z95 = arima_z_quantile(0.95);
        for (int h = 0; h < 10; h++) {
            /* relative to the value, or to the standard error for bounds near zero */
            double sc = r->se[h];
            double errs[6] = {
                fabs(mean[h] - r->mean[h]) / fmax(fabs(r->mean[h]), sc),
                fabs(se[h] - r->se[h]) / r->se[h],
                fabs(mean[h] - z80 * se[h] - r->lo80[h]) / fmax(fabs(r->lo80[h]), sc),
                fabs(mean[h] + z80 * se[h] - r->hi80[h]) / fmax(fabs(r->hi80[h]), sc),
                fabs(mean[h] - z95 * se[h] - r->lo95[h]) / fmax(fabs(r->lo95[h]), sc),
                fabs(mean[h] + z95 * se[h] - r->hi95[h]) / fmax(fabs(r->hi95[h]), sc),
            };
            for (int k = 0; k < 6; k++) {
                worst_fc = fmax(worst_fc, errs[k]);
                cr_assert(errs[k] < FC_TOL, "%s step %d quantity %d: relative error %.3g", what, h + 1, k, errs[k]);
            }
        }
    }
    fprintf(stderr,
            "arima vs statsmodels over %zu fits: max param err %.2e, max |dloglik| %.2e, max forecast rel err %.2e\n",
            WEIR_ARRAY_SIZE(ref_fits), worst_p, worst_ll, worst_fc);
}

Test(arima_model, forecast_se_equals_psi_weights) {
    const ref_series_t *s = find_series("sim_arima111");
    arima_spec_t spec = {1, 1, 1, ARIMA_TREND_N};
    arima_fit_t fit;
    arima_kstate_t ks;
    cr_assert_eq(arima_fit(&spec, s->y, s->n, NULL, NULL, &fit, &ks), 0);
    arima_ssm_t ssm;
    arima_ssm_build(&spec, fit.params, &ssm);
    double mean[12], se[12], psi[12];
    arima_forecast(&ssm, &ks, 12, mean, se);
    arima_psi_weights(&spec, fit.params, 12, psi);
    double acc = 0;
    for (int h = 0; h < 12; h++) {
        acc += psi[h] * psi[h];
        cr_assert_float_eq(se[h], sqrt(fit.params[2] * acc), 1e-6 * se[h], "h=%d", h + 1);
    }
}

Test(arima_model, warm_start_reaches_the_same_estimate) {
    const ref_series_t *s = find_series("sunspots");
    arima_spec_t spec = {2, 0, 1, ARIMA_TREND_C};
    arima_fit_t cold, warm;
    cr_assert_eq(arima_fit(&spec, s->y, s->n - 10, NULL, NULL, &cold, NULL), 0);
    cr_assert_eq(arima_fit(&spec, s->y, s->n, &cold, NULL, &warm, NULL), 0);
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(ref_fits); i++)
        if (!strcmp(ref_fits[i].series, "sunspots") && ref_fits[i].spec.p == 2) {
            cr_assert(fabs(warm.loglik - ref_fits[i].loglik) < LLF_TOL);
            for (int j = 0; j < warm.nparams; j++)
                cr_assert(rel_err(warm.params[j], ref_fits[i].params[j]) < PARAM_TOL);
        }
}

Test(arima_model, degenerate_inputs_fail_with_a_reason) {
    double y[60];
    arima_fit_t fit;
    arima_spec_t spec = {1, 0, 1, ARIMA_TREND_C};
    for (int i = 0; i < 60; i++)
        y[i] = 4.2;
    cr_assert_eq(arima_fit(&spec, y, 60, NULL, NULL, &fit, NULL), -1);
    cr_assert(strstr(fit.error, "constant"), "%s", fit.error);
    arima_spec_t drift = {0, 1, 1, ARIMA_TREND_T};
    for (int i = 0; i < 60; i++)
        y[i] = 3 + 2.0 * i; /* a straight line: constant after differencing and the drift */
    cr_assert_eq(arima_fit(&drift, y, 60, NULL, NULL, &fit, NULL), -1);
    cr_assert(strstr(fit.error, "constant"), "%s", fit.error);
    for (int i = 0; i < 60; i++)
        y[i] = sin(i * 0.7) + 0.1 * i;
    y[17] = NAN;
    cr_assert_eq(arima_fit(&spec, y, 60, NULL, NULL, &fit, NULL), -1);
    cr_assert(strstr(fit.error, "non-finite"), "%s", fit.error);
    y[17] = 0;
    cr_assert_eq(arima_fit(&spec, y, 5, NULL, NULL, &fit, NULL), -1);
    cr_assert(strstr(fit.error, "too few"), "%s", fit.error);
    arima_spec_t bad = {1, 1, 1, ARIMA_TREND_C};
    cr_assert_eq(arima_fit(&bad, y, 60, NULL, NULL, &fit, NULL), -1);
    cr_assert(strstr(fit.error, "trend"), "%s", fit.error);
    cr_assert(isnan(arima_loglik(&spec, y, 60, (double[]){0, 1.5, 0, 1})), "non-stationary AR: no likelihood");
}

/* ---- operator ---- */

typedef struct sink_capture {
    weir_buf_t text;
    int fits, points, anomalies;
} sink_capture_t;

static void capture_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    sink_capture_t *c = opaque;
    weir_buf_printf(&c->text, "%d|", sink);
    for (int i = 0; i < rec->rt->nfields; i++) {
        const weir_value_t *v = &rec->v[i];
        switch (v->type) {
        case WEIR_NULL: weir_buf_puts(&c->text, "null"); break;
        case WEIR_BOOL: weir_buf_puts(&c->text, v->u.b ? "true" : "false"); break;
        case WEIR_LONG: weir_buf_printf(&c->text, "%lld", (long long)v->u.i); break;
        case WEIR_DOUBLE: weir_buf_printf(&c->text, "%.17g", v->u.d); break;
        default: weir_buf_append(&c->text, v->u.s.p, v->u.s.n); break;
        }
        weir_buf_putc(&c->text, ',');
    }
    weir_buf_putc(&c->text, '\n');
    if (sink == 0)
        c->fits++;
    else {
        c->points++;
        int a = weir_rowtype_find(rec->rt, "anomaly");
        if (rec->v[a].type == WEIR_BOOL && rec->v[a].u.b)
            c->anomalies++;
    }
}

static void capture_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    (void)opaque, (void)node, (void)rec, (void)reason;
}

static const char *op_yaml = "pipeline: t\n"
                             "source:\n"
                             "  kafka: {topics: [in]}\n"
                             "  format: json\n"
                             "  fields: {k: string, ts: long, v: double}\n"
                             "  event_time: ts\n"
                             "nodes:\n"
                             "  - {name: f, op: arima, key: k, value: v, order: [1, 1, 1], horizon: 4,\n"
                             "     refit_every: 25, min_points: 40, history: 120, emit: every_point}\n"
                             "sinks:\n"
                             "  - {input: f, kafka: {topic: o}}\n"
                             "  - {input: f.points, kafka: {topic: p}}\n";

/* Value i of key k: a deterministic ARIMA(1,1,1)-like path, with a spike on key a at i = 150. */
static double op_value(int i, int k) {
    double level = 0, x = 0, e_prev = 0;
    for (int j = 0; j <= i; j++) {
        double e = sin(j * 1.7 + k) * cos(j * 0.31 * (k + 1)) * 1.3;
        x = 0.5 * x + e - 0.3 * e_prev;
        e_prev = e;
        level += x;
    }
    return level + (k == 0 && i == 150 ? 40.0 : 0.0);
}

static void feed(weir_task_t *t, const weir_pipeline_t *pl, int from, int to) {
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    for (int i = from; i < to; i++)
        for (int k = 0; k < 3; k++) {
            char key[2] = {(char)('a' + k), 0};
            weir_record_clear(&rec);
            rec.v[0] = weir_v_str(key, 1);
            rec.v[1] = weir_v_long(1000 * i);
            rec.v[2] = weir_v_double(op_value(i, k));
            rec.ts = 1000 * i;
            weir_task_process(t, &rec);
        }
    weir_record_free(&rec);
}

Test(arima_operator, snapshot_restore_is_exact) {
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("t.yaml", op_yaml, err, sizeof(err));
    cr_assert_not_null(pl, "%s", err);
    sink_capture_t a = {0}, b = {0};
    weir_task_t *ta = weir_task_new(pl, capture_sink, capture_reject, &a);
    feed(ta, pl, 0, 100);
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(ta, &snap), WEIR_OK);
    size_t mark = a.text.len;
    feed(ta, pl, 100, 200);
    /* a fresh task restored from the snapshot continues identically */
    weir_task_t *tb = weir_task_new(pl, capture_sink, capture_reject, &b);
    cr_assert_eq(weir_task_restore(tb, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    feed(tb, pl, 100, 200);
    cr_assert_eq(a.text.len - mark, b.text.len);
    cr_assert(!memcmp(a.text.p + mark, b.text.p, b.text.len), "restored task diverged");
    cr_assert_gt(a.fits, 3 * 5);
    cr_assert_eq(a.points, 3 * 200);
    cr_assert_geq(a.anomalies, 1, "the spike at i = 150 is flagged");
    /* a corrupted blob is rejected with a message, never a crash */
    snap.p[snap.len / 2] ^= 0x5a;
    weir_task_t *tc = weir_task_new(pl, capture_sink, capture_reject, &b);
    cr_assert_eq(weir_task_restore(tc, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_ERR);
    cr_assert(strlen(err) > 0);
    weir_task_destroy(ta);
    weir_task_destroy(tb);
    weir_task_destroy(tc);
    weir_buf_free(&snap);
    weir_buf_free(&a.text);
    weir_buf_free(&b.text);
    weir_pipeline_destroy(pl);
}

/* ---- state dump ---- */

static const char *dump_yaml = "pipeline: t\n"
                               "source:\n"
                               "  kafka: {topics: [in]}\n"
                               "  format: json\n"
                               "  fields: {k: string, ts: long, v: double}\n"
                               "  event_time: ts\n"
                               "nodes:\n"
                               "  - {name: f, op: arima, key: k, value: v, order: [1, 0, 0],\n"
                               "     refit_every: 25, min_points: 40, history: 50}\n"
                               "sinks:\n"
                               "  - {input: f, kafka: {topic: o}}\n";

/* A stationary AR(1) around 5 with a deterministic innovation. */
static double dump_value(int i) {
    double x = 0;
    for (int j = 0; j <= i; j++)
        x = 0.6 * x + sin(j * 1.7) * cos(j * 0.31) * 1.3;
    return 5.0 + x;
}

typedef struct fit_capture {
    int fits;
    char model[512];
    double loglik;
    bool converged;
} fit_capture_t;

static void capture_fit(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    fit_capture_t *c = opaque;
    cr_assert_eq(sink, 0);
    const weir_value_t *m = &rec->v[weir_rowtype_find(rec->rt, "model")];
    cr_assert_eq(m->type, WEIR_STRING);
    cr_assert_lt(m->u.s.n, sizeof(c->model));
    memcpy(c->model, m->u.s.p, m->u.s.n);
    c->model[m->u.s.n] = 0;
    c->loglik = rec->v[weir_rowtype_find(rec->rt, "loglik")].u.d;
    c->converged = rec->v[weir_rowtype_find(rec->rt, "converged")].u.b;
    c->fits++;
}

static void dump_task(const weir_pipeline_t *pl, weir_task_t *t, weir_buf_t *out) {
    for (int i = 0; i < pl->nnodes; i++)
        if (!strcmp(pl->nodes[i].plan.cls->name, "arima")) {
            cr_assert_not_null(pl->nodes[i].plan.cls->dump);
            cr_assert_eq(pl->nodes[i].plan.cls->dump(weir_task_node_state(t, i), out), WEIR_OK);
            return;
        }
    cr_assert_fail("no arima node");
}

Test(arima_operator, dump_shows_buffer_and_model) {
    enum { N = 70, HISTORY = 50 };
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("t.yaml", dump_yaml, err, sizeof(err));
    cr_assert_not_null(pl, "%s", err);
    fit_capture_t fc = {0};
    weir_task_t *ta = weir_task_new(pl, capture_fit, capture_reject, &fc);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    for (int i = 0; i < N; i++) {
        weir_record_clear(&rec);
        rec.v[0] = weir_v_str("s", 1);
        rec.v[1] = weir_v_long(1000 * i);
        rec.v[2] = weir_v_double(dump_value(i));
        rec.ts = 1000 * i;
        weir_task_process(ta, &rec);
    }
    weir_record_free(&rec);
    cr_assert_eq(fc.fits, 2, "fits at 40 and 65 values");

    weir_buf_t d1 = {0};
    dump_task(pl, ta, &d1);
    json_error_t je;
    json_t *o = json_loadb((const char *)d1.p, d1.len, 0, &je);
    cr_assert_not_null(o, "%s: %.*s", je.text, (int)d1.len, (const char *)d1.p);
    cr_assert_eq(json_integer_value(json_object_get(o, "keys")), 1);
    json_t *series = json_object_get(o, "series");
    cr_assert(json_is_array(series) && json_array_size(series) == 1);
    json_t *s = json_array_get(series, 0);
    cr_assert_str_eq(json_string_value(json_object_get(s, "key")), "s");
    cr_assert_eq(json_integer_value(json_object_get(s, "n")), HISTORY, "the ring buffer is full");
    cr_assert_eq(json_integer_value(json_object_get(s, "since_fit")), N - 65);
    json_t *last = json_object_get(s, "last_values");
    cr_assert(json_is_array(last) && json_array_size(last) == 10);
    for (int k = 0; k < 10; k++)
        cr_assert(json_real_value(json_array_get(last, (size_t)k)) == dump_value(N - 10 + k),
                  "last value %d: %.17g, input %.17g", k, json_real_value(json_array_get(last, (size_t)k)),
                  dump_value(N - 10 + k));
    /* the model is the one the last fit record carried, parameter for parameter */
    json_t *want = json_loads(fc.model, 0, &je);
    cr_assert_not_null(want, "%s", fc.model);
    json_t *model = json_object_get(s, "model");
    cr_assert(json_is_object(model));
    cr_assert_eq(json_object_size(model), json_object_size(want));
    cr_assert_eq(json_object_size(model), 3, "const, ar.L1, sigma2");
    const char *name;
    json_t *wv;
    json_object_foreach(want, name, wv) {
        json_t *got = json_object_get(model, name);
        cr_assert(json_is_number(got), "dump has no parameter %s", name);
        cr_assert(json_number_value(got) == json_number_value(wv), "%s: dump %.17g, fit record %.17g", name,
                  json_number_value(got), json_number_value(wv));
    }
    cr_assert(json_number_value(json_object_get(s, "loglik")) == fc.loglik);
    cr_assert_eq(json_is_true(json_object_get(s, "converged")), fc.converged);
    json_t *kal = json_object_get(s, "kalman");
    cr_assert(json_is_array(json_object_get(kal, "a")));
    size_t m = json_array_size(json_object_get(kal, "a"));
    cr_assert(m >= 1 && json_array_size(json_object_get(kal, "P")) == m);
    json_decref(want);
    json_decref(o);

    /* read-only: a second dump is the same; a restored task dumps byte-identically */
    weir_buf_t d2 = {0}, d3 = {0}, snap = {0};
    dump_task(pl, ta, &d2);
    cr_assert(d2.len == d1.len && !memcmp(d1.p, d2.p, d1.len));
    cr_assert_eq(weir_task_snapshot(ta, &snap), WEIR_OK);
    fit_capture_t fb = {0};
    weir_task_t *tb = weir_task_new(pl, capture_fit, capture_reject, &fb);
    cr_assert_eq(weir_task_restore(tb, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    dump_task(pl, tb, &d3);
    cr_assert(d3.len == d1.len && !memcmp(d1.p, d3.p, d1.len), "restored dump differs:\n%.*s\n%.*s", (int)d1.len,
              (const char *)d1.p, (int)d3.len, (const char *)d3.p);
    weir_task_destroy(ta);
    weir_task_destroy(tb);
    weir_buf_free(&d1);
    weir_buf_free(&d2);
    weir_buf_free(&d3);
    weir_buf_free(&snap);
    weir_pipeline_destroy(pl);
}

Test(arima_operator, bad_configuration_is_placed) {
    char err[WEIR_ERRSTR_SIZE];
    const char *y = "pipeline: t\nsource:\n  kafka: {topics: [in]}\n  format: json\n  fields: {v: double}\n"
                    "nodes:\n  - {name: f, op: arima, value: v, order: [1, 1, 1], trend: c}\n"
                    "sinks:\n  - {input: f, kafka: {topic: o}}\n";
    cr_assert_null(weir_pipeline_load_string("t.yaml", y, err, sizeof(err)));
    cr_assert(strstr(err, "t.yaml:7") && strstr(err, "trend"), "%s", err);
}

/* ---- end to end: the weir binary in file mode ---- */

Test(arima_e2e, file_mode_multi_key) {
    const char *bin = getenv("WEIR_BIN");
    if (!bin)
        cr_skip_test("WEIR_BIN not set");
    char dir[] = "/tmp/weir-arima-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char pipe_path[256], in_path[256], out_path[256], cmd[1024];
    snprintf(pipe_path, sizeof(pipe_path), "%s/p.yaml", dir);
    snprintf(in_path, sizeof(in_path), "%s/in.jsonl", dir);
    snprintf(out_path, sizeof(out_path), "%s/out.jsonl", dir);
    FILE *f = fopen(pipe_path, "w");
    fprintf(f, "pipeline: e2e\n"
               "source:\n  format: json\n  fields: {sensor: string, ts: long, temp: double}\n  event_time: ts\n"
               "nodes:\n"
               "  - {name: fc, op: arima, key: sensor, value: temp, order: [1, 0, 0], horizon: 3,\n"
               "     refit_every: 20, min_points: 30, history: 100}\n"
               "sinks:\n  - {input: fc, kafka: {topic: fc}}\n");
    fclose(f);
    f = fopen(in_path, "w");
    const char *keys[] = {"s1", "s2", "s3"};
    double x[3] = {0, 0, 0};
    for (int i = 0; i < 90; i++)
        for (int k = 0; k < 3; k++) {
            x[k] = 0.6 * x[k] + sin(i * 2.3 + k * 0.9) * 1.1 + cos(i * 0.77);
            fprintf(f, "{\"sensor\":\"%s\",\"ts\":%d,\"temp\":%.6f}\n", keys[k], 1000 * i, 20 + 5 * k + x[k]);
        }
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s run %s --input %s --output %s 2>/dev/null", bin, pipe_path, in_path, out_path);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    f = fopen(out_path, "r");
    cr_assert_not_null(f);
    char line[8192];
    int per_key[3] = {0};
    while (fgets(line, sizeof(line), f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert_not_null(o, "%s", line);
        const char *key = json_string_value(json_object_get(o, "key"));
        int k = key[1] - '1';
        cr_assert(k >= 0 && k < 3);
        per_key[k]++;
        cr_assert(json_is_null(json_object_get(o, "error")), "%s", line);
        cr_assert(json_is_true(json_object_get(o, "converged")));
        json_t *fc = json_loads(json_string_value(json_object_get(o, "forecast")), 0, &je);
        json_t *lo = json_loads(json_string_value(json_object_get(o, "lower95")), 0, &je);
        json_t *hi = json_loads(json_string_value(json_object_get(o, "upper95")), 0, &je);
        cr_assert(json_is_array(fc) && json_array_size(fc) == 3);
        for (size_t h = 0; h < 3; h++) {
            double m = json_real_value(json_array_get(fc, h));
            cr_assert(json_real_value(json_array_get(lo, h)) < m && m < json_real_value(json_array_get(hi, h)));
            cr_assert(fabs(m - (20 + 5 * k)) < 5, "forecast near the series level");
        }
        json_t *model = json_loads(json_string_value(json_object_get(o, "model")), 0, &je);
        cr_assert_not_null(json_object_get(model, "const"));
        cr_assert_not_null(json_object_get(model, "ar.L1"));
        cr_assert_not_null(json_object_get(model, "sigma2"));
        char want_id[64];
        snprintf(want_id, sizeof(want_id), "e2e/fc/%s/%lld", key,
                 (long long)json_integer_value(json_object_get(o, "ts")));
        cr_assert_str_eq(json_string_value(json_object_get(o, "id")), want_id);
        json_decref(fc), json_decref(lo), json_decref(hi), json_decref(model), json_decref(o);
    }
    fclose(f);
    /* fits at 30, 50, 70 and 90 values per key */
    for (int k = 0; k < 3; k++)
        cr_assert_eq(per_key[k], 4, "key %d: %d fits", k, per_key[k]);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* key: the one meaning (processor/core/key.h): a null key value is dead-lettered with the node and
 * expression; the other records give exactly what they give without it. */
typedef struct reject_capture {
    sink_capture_t sink; /* first: the task's one opaque serves capture_sink too */
    int n;
    char reason[256];
} reject_capture_t;

static void count_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    (void)node, (void)rec;
    reject_capture_t *c = opaque;
    c->n++;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static void feed_nullable(weir_task_t *t, const weir_pipeline_t *pl, bool with_nulls) {
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    for (int i = 0; i < 80; i++) {
        weir_record_clear(&rec);
        rec.v[0] = weir_v_str("a", 1);
        rec.v[1] = weir_v_long(1000 * i);
        rec.v[2] = weir_v_double(op_value(i, 0));
        rec.ts = 1000 * i;
        weir_task_process(t, &rec);
        if (with_nulls && i % 7 == 0) {
            rec.v[0] = weir_v_null();
            rec.v[2] = weir_v_double(1e6);
            weir_task_process(t, &rec);
        }
    }
    weir_record_free(&rec);
}

Test(arima_operator, null_key_is_dead_lettered) {
    static const char *y = "pipeline: t\nsource:\n  fields: {k: string?, ts: long, v: double}\n  event_time: ts\n"
                           "nodes:\n  - {name: f, op: arima, key: k, value: v, order: [1, 0, 0], min_points: 30}\n"
                           "sinks:\n  - {input: f, kafka: {topic: o}}\n";
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("t.yaml", y, err, sizeof(err));
    cr_assert_not_null(pl, "%s", err);
    reject_capture_t ra = {0}, rb = {0};
    sink_capture_t *a = &ra.sink, *b = &rb.sink;
    weir_task_t *ta = weir_task_new(pl, capture_sink, count_reject, &ra);
    weir_task_t *tb = weir_task_new(pl, capture_sink, count_reject, &rb);
    feed_nullable(ta, pl, true);
    feed_nullable(tb, pl, false);
    cr_assert_eq(ra.n, 12, "one dead letter per null key, got %d", ra.n);
    cr_assert_str_eq(ra.reason, "arima: node 'f': key 'k' is null");
    cr_assert_eq(rb.n, 0);
    cr_assert_gt(a->fits, 0);
    cr_assert(a->text.len == b->text.len && !memcmp(a->text.p, b->text.p, a->text.len),
              "null keys changed other series");
    weir_task_destroy(ta);
    weir_task_destroy(tb);
    weir_buf_free(&a->text);
    weir_buf_free(&b->text);
    weir_pipeline_destroy(pl);
}

/* ---- max_keys ---- */

static void feed_one(weir_task_t *t, const weir_pipeline_t *pl, const char *key, int i) {
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    rec.v[0] = weir_v_str(key, strlen(key));
    rec.v[1] = weir_v_long(1000 * i);
    rec.v[2] = weir_v_double(op_value(i, key[0] - 'a'));
    rec.ts = 1000 * i;
    weir_task_process(t, &rec);
    weir_record_free(&rec);
}

/* A new key beyond max_keys evicts the least recently updated series: with a model and values since its last
 * fit, one last record (the last model, forecast from the latest value, ts null, id .../n<values>/evicted).
 * The node's stats count it, the task holds max_keys series, and a restored task evicts the same series next. */
Test(arima_operator, max_keys_evicts_least_recently_updated) {
    static const char *yaml = "pipeline: t\n"
                              "source:\n"
                              "  kafka: {topics: [in]}\n"
                              "  format: json\n"
                              "  fields: {k: string, ts: long, v: double}\n"
                              "  event_time: ts\n"
                              "nodes:\n"
                              "  - {name: f, op: arima, key: k, value: v, order: [1, 0, 0], refit_every: 5,\n"
                              "     min_points: 10, history: 30, horizon: 2, max_keys: 2}\n"
                              "sinks:\n"
                              "  - {input: f, kafka: {topic: o}}\n";
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("t.yaml", yaml, err, sizeof(err));
    cr_assert_not_null(pl, "%s", err);
    sink_capture_t a = {0};
    weir_task_t *t = weir_task_new(pl, capture_sink, capture_reject, &a);
    for (int i = 0; i < 12; i++) {
        feed_one(t, pl, "a", i);
        feed_one(t, pl, "b", i);
    }
    feed_one(t, pl, "a", 12); /* a is now more recent than b */
    cr_assert_eq(a.fits, 2, "one fit per key at 10 points");
    weir_buf_reset(&a.text);
    feed_one(t, pl, "c", 0); /* evicts b: 2 values since its fit */
    cr_assert_eq(a.fits, 3);
    weir_buf_putc(&a.text, '\0');
    cr_assert(strstr((char *)a.text.p, "0|b,null,"), "evicted record of b, ts null:\n%s", (char *)a.text.p);
    cr_assert(strstr((char *)a.text.p, ",t/f/b/n12/evicted,"), "%s", (char *)a.text.p);
    const weir_plan_t *plan = &pl->nodes[0].plan;
    cr_assert_eq(atomic_load(&plan->stats->evicted_keys), 1);
    weir_buf_t d = {0};
    cr_assert_eq(plan->cls->dump(weir_task_node_state(t, 0), &d), WEIR_OK);
    weir_buf_putc(&d, '\0');
    cr_assert(strstr((char *)d.p, "\"a\"") && strstr((char *)d.p, "\"c\"") && !strstr((char *)d.p, "\"b\""),
              "series held: %s", (char *)d.p);
    weir_buf_free(&d);
    /* Recency survives a snapshot: both the task and a restored copy evict a (not c) for d. */
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(t, &snap), WEIR_OK);
    sink_capture_t b = {0};
    weir_task_t *t2 = weir_task_new(pl, capture_sink, capture_reject, &b);
    cr_assert_eq(weir_task_restore(t2, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    weir_buf_reset(&a.text);
    feed_one(t, pl, "d", 0);
    feed_one(t2, pl, "d", 0);
    cr_assert_eq(a.text.len, b.text.len);
    cr_assert(!memcmp(a.text.p, b.text.p, a.text.len), "restored task evicted differently");
    weir_buf_putc(&a.text, '\0');
    cr_assert(strstr((char *)a.text.p, ",t/f/a/n13/evicted,"), "%s", (char *)a.text.p);
    cr_assert_eq(atomic_load(&plan->stats->evicted_keys), 3);
    weir_task_destroy(t);
    weir_task_destroy(t2);
    weir_buf_free(&snap);
    weir_buf_free(&a.text);
    weir_buf_free(&b.text);
    weir_pipeline_destroy(pl);
}
