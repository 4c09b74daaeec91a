/* The kmeans operator (issue 4): configuration errors, seeding, the update
 * rule against hand-computed values, decay/half-life, dead clusters, window
 * batches, per-key models and snapshot/restore identity. Each test drives a
 * real task compiled from pipeline YAML with JSON-lines input. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "kmeans_model.h"
#include "runtime.h"
#include "task.h"

#define MAX_OUT 20000

typedef struct centroids_out {
    char key[32];
    int64_t version, k, reseeded;
    double inertia;
    int n;           /* features */
    double c[16][4]; /* up to 16 clusters x 4 features */
    double w[16];
} centroids_out_t;

typedef struct run {
    weir_pipeline_t *pl;
    weir_task_t *t;
    weir_decoder_t *dec;
    weir_record_t rec;
    weir_buf_t text; /* every output, values printed exactly (%a), one line each */
    int nassign;
    int64_t cluster[MAX_OUT];
    double distance[MAX_OUT];
    int ncent;
    centroids_out_t cent[256];
    int nreject;
    char reject[256];
} run_t;

static void put_value(weir_buf_t *b, const weir_value_t *v) {
    switch (v->type) {
    case WEIR_NULL: weir_buf_puts(b, "null"); break;
    case WEIR_BOOL: weir_buf_puts(b, v->u.b ? "true" : "false"); break;
    case WEIR_LONG: weir_buf_printf(b, "%lld", (long long)v->u.i); break;
    case WEIR_DOUBLE: weir_buf_printf(b, "%a", v->u.d); break;
    default: weir_buf_printf(b, "'%.*s'", (int)v->u.s.n, v->u.s.p); break;
    }
}

static void parse_centroids(centroids_out_t *co, const weir_record_t *rec) {
    const weir_rowtype_t *rt = rec->rt;
    for (int i = 0; i < rt->nfields; i++) {
        const char *f = rt->fields[i].name;
        const weir_value_t *v = &rec->v[i];
        if (!strcmp(f, "key") && v->type == WEIR_STRING)
            snprintf(co->key, sizeof(co->key), "%.*s", (int)v->u.s.n, v->u.s.p);
        else if (!strcmp(f, "model_version"))
            co->version = v->u.i;
        else if (!strcmp(f, "k"))
            co->k = v->u.i;
        else if (!strcmp(f, "reseeded"))
            co->reseeded = v->u.i;
        else if (!strcmp(f, "inertia_batch"))
            co->inertia = v->u.d;
        else if (!strcmp(f, "centroids") || !strcmp(f, "weights")) {
            json_error_t err;
            json_t *j = json_loadb(v->u.s.p, v->u.s.n, 0, &err);
            cr_assert(j && json_is_array(j), "%s is not a JSON array: %.*s", f, (int)v->u.s.n, v->u.s.p);
            for (size_t c = 0; c < json_array_size(j) && c < 16; c++) {
                json_t *e = json_array_get(j, c);
                if (!strcmp(f, "weights")) {
                    co->w[c] = json_number_value(e);
                    continue;
                }
                co->n = (int)json_array_size(e);
                for (size_t q = 0; q < json_array_size(e) && q < 4; q++)
                    co->c[c][q] = json_number_value(json_array_get(e, q));
            }
            json_decref(j);
        }
    }
}

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    run_t *r = opaque;
    const char *label = r->pl->sinks[sink].label;
    weir_buf_puts(&r->text, label);
    for (int i = 0; i < rec->rt->nfields; i++) {
        weir_buf_putc(&r->text, '|');
        put_value(&r->text, &rec->v[i]);
    }
    weir_buf_printf(&r->text, "|ts=%lld|key=%.*s\n", (long long)rec->ts, rec->key ? (int)rec->key_len : 4,
                    rec->key ? rec->key : "NULL");
    if (strstr(label, ".centroids")) {
        cr_assert_lt(r->ncent, 256);
        parse_centroids(&r->cent[r->ncent++], rec);
    } else {
        cr_assert_lt(r->nassign, MAX_OUT);
        int n = rec->rt->nfields;
        r->cluster[r->nassign] = rec->v[n - 2].u.i;
        r->distance[r->nassign] = rec->v[n - 1].u.d;
        r->nassign++;
    }
}

static void on_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    run_t *r = opaque;
    (void)node;
    (void)rec;
    r->nreject++;
    snprintf(r->reject, sizeof(r->reject), "%s", reason);
}

static const char *compile_error(const char *yaml) {
    static char errstr[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("t.yaml", yaml, errstr, sizeof(errstr));
    if (pl) {
        weir_pipeline_destroy(pl);
        return NULL;
    }
    return errstr;
}

/* A pipeline: source fields, then one kmeans node `km` with the given options, both ports sunk. */
static char *pipeline_yaml(const char *fields, const char *opts) {
    weir_buf_t b = {0};
    weir_buf_printf(&b,
                    "pipeline: t\n"
                    "source:\n"
                    "  fields: {%s}\n"
                    "  event_time: ts\n"
                    "nodes:\n"
                    "  - {name: km, op: kmeans, %s}\n"
                    "sinks:\n"
                    "  - {input: km, kafka: {topic: a}}\n"
                    "  - {input: km.centroids, kafka: {topic: c}}\n",
                    fields, opts);
    weir_buf_putc(&b, '\0');
    return (char *)b.p;
}

static run_t *run_new(const char *fields, const char *opts) {
    run_t *r = calloc(1, sizeof(*r));
    char errstr[WEIR_ERRSTR_SIZE];
    char *yaml = pipeline_yaml(fields, opts);
    r->pl = weir_pipeline_load_string("t.yaml", yaml, errstr, sizeof(errstr));
    free(yaml);
    cr_assert_not_null(r->pl, "%s", errstr);
    r->t = weir_task_new(r->pl, on_sink, on_reject, r);
    r->dec = weir_decoder_new(WEIR_FMT_JSON, NULL, r->pl->source.rt, false, errstr, sizeof(errstr));
    cr_assert_not_null(r->dec, "%s", errstr);
    weir_record_init(&r->rec, r->pl->source.rt);
    return r;
}

static void run_free(run_t *r) {
    weir_task_destroy(r->t);
    weir_decoder_destroy(r->dec);
    weir_record_free(&r->rec);
    weir_pipeline_destroy(r->pl);
    weir_buf_free(&r->text);
    free(r);
}

static void feed(run_t *r, const char *json) {
    char reason[256];
    cr_assert_eq(weir_decode(r->dec, json, strlen(json), &r->rec, reason, sizeof(reason)), WEIR_OK, "%s: %s", json,
                 reason);
    r->rec.ts = WEIR_TS_NONE;
    cr_assert_eq(weir_source_stamp(&r->pl->source, &r->rec, WEIR_TS_NONE, reason, sizeof(reason)), WEIR_OK, "%s",
                 reason);
    weir_task_process(r->t, &r->rec);
}

static void feed_xy(run_t *r, double x, double y, int64_t ts) {
    char line[128];
    snprintf(line, sizeof(line), "{\"x\": %.17g, \"y\": %.17g, \"ts\": %lld}", x, y, (long long)ts);
    feed(r, line);
}

static void finish(run_t *r) { weir_task_advance(r->t, WEIR_WM_END); }

#define XY "x: double, y: double?, ts: long"

/* ---- configuration errors are compile-time errors, placed at file:line ---- */

Test(kmeans_config, k_must_be_positive) {
    char *y = pipeline_yaml(XY, "features: [x], k: 0");
    const char *e = compile_error(y);
    cr_assert_not_null(e);
    cr_assert(strstr(e, "t.yaml:6:") && strstr(e, "k: must be between 1"), "%s", e);
    free(y);
    y = pipeline_yaml(XY, "features: [x], k: -3");
    cr_assert_not_null(compile_error(y));
    free(y);
}

Test(kmeans_config, features_required_and_non_empty) {
    char *y = pipeline_yaml(XY, "k: 2");
    const char *e = compile_error(y);
    cr_assert(e && strstr(e, "missing required key 'features'"), "%s", e);
    free(y);
    y = pipeline_yaml(XY, "features: [], k: 2");
    e = compile_error(y);
    cr_assert(e && strstr(e, "t.yaml:6:") && strstr(e, "non-empty list"), "%s", e);
    free(y);
}

Test(kmeans_config, non_numeric_feature) {
    const char *yaml = "pipeline: t\n"
                       "source:\n"
                       "  fields: {x: double, name: string}\n"
                       "nodes:\n"
                       "  - name: km\n"
                       "    op: kmeans\n"
                       "    k: 2\n"
                       "    features:\n"
                       "      - x\n"
                       "      - name\n";
    const char *e = compile_error(yaml);
    cr_assert(e && strstr(e, "t.yaml:10:") && strstr(e, "features[1]: 'name' is string"), "%s", e);
    yaml =
        "pipeline: t\nsource:\n  fields: {x: double}\nnodes:\n  - {name: km, op: kmeans, k: 2, features: [x, nope]}\n";
    e = compile_error(yaml);
    cr_assert(e && strstr(e, "t.yaml:5:") && strstr(e, "nope"), "%s", e);
}

Test(kmeans_config, other_bad_values) {
    static const struct {
        const char *opts, *want;
    } rows[] = {
        {"features: [x], k: 2, decay: 1.5", "decay: must be in (0, 1]"},
        {"features: [x], k: 2, decay: 0", "decay: must be in (0, 1]"},
        {"features: [x], k: 2, decay: 0.5, half_life: 3", "either decay or half_life"},
        {"features: [x], k: 2, half_life: -1", "half_life: must be > 0"},
        {"features: [x], k: 2, time_unit: hours", "time_unit: expected batches or points"},
        {"features: [x], k: 2, batch: window", "batch: window needs an input with a long 'window_end'"},
        {"features: [x], k: 2, batch: 0", "batch: must be >= 1"},
        {"features: [x], k: 2, scope: partition", "scope: expected global, key or task"},
        {"features: [x], k: 2, key: x, scope: task", "key: needs scope: key (scope is task)"},
        {"features: [x], k: 2, distance: manhattan", "distance: expected euclidean or cosine"},
        {"features: [x], k: 5, init_size: 3", "init_size: must be between k"},
        {"features: [x], k: 2, colour: red", "unknown key 'colour'"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *y = pipeline_yaml(XY, rows[i].opts);
        const char *e = compile_error(y);
        cr_assert(e && strstr(e, rows[i].want) && strstr(e, "t.yaml:"), "%s -> %s", rows[i].opts, e ? e : "(no error)");
        free(y);
    }
    char *y = pipeline_yaml("x: double, cluster: long, ts: long", "features: [x], k: 2");
    const char *e = compile_error(y);
    cr_assert(e && strstr(e, "already has a field named 'cluster'"), "%s", e);
    free(y);
}

/* ---- seeding ---- */

static int find_centroid(const centroids_out_t *co, double x, double y) {
    for (int c = 0; c < co->k; c++)
        if (fabs(co->c[c][0] - x) < 1e-12 && fabs(co->c[c][1] - y) < 1e-12)
            return c;
    return -1;
}

Test(kmeans_seed, kmeanspp_picks_distinct_points) {
    /* k = 3 on {0,0,0,5,5,9}: k-means++ never picks a point at distance 0 from
     * a chosen centre, so the seeds are exactly {0, 5, 9} for every seed. */
    for (int seed = 1; seed <= 20; seed++) {
        char opts[160];
        snprintf(opts, sizeof(opts), "features: [x, y], k: 3, init_size: 6, init_iterations: 0, seed: %d, batch: 100",
                 seed);
        run_t *r = run_new(XY, opts);
        static const double xs[] = {0, 0, 0, 5, 5, 9};
        for (int i = 0; i < 6; i++)
            feed_xy(r, xs[i], 0, i);
        cr_assert_eq(r->ncent, 1);
        const centroids_out_t *co = &r->cent[0];
        cr_assert_eq(co->version, 1);
        cr_assert(find_centroid(co, 0, 0) >= 0 && find_centroid(co, 5, 0) >= 0 && find_centroid(co, 9, 0) >= 0);
        cr_assert_float_eq(co->w[find_centroid(co, 0, 0)], 3.0, 0);
        cr_assert_float_eq(co->w[find_centroid(co, 5, 0)], 2.0, 0);
        cr_assert_float_eq(co->inertia, 0.0, 0);
        cr_assert_eq(r->nassign, 6, "held records are emitted after initialisation");
        cr_assert_eq(r->cluster[3], find_centroid(co, 5, 0));
        run_free(r);
    }
}

Test(kmeans_seed, lloyd_converges_to_cluster_means) {
    /* Two squares of side 2: the means are (1,1) and (11,11); every point is
     * at distance sqrt 2, so the inertia is 8 * 2 = 16. */
    run_t *r = run_new(XY, "features: [x, y], k: 2, init_size: 8, batch: 100");
    static const double pts[8][2] = {{0, 0}, {10, 10}, {0, 2}, {12, 12}, {2, 0}, {10, 12}, {2, 2}, {12, 10}};
    for (int i = 0; i < 8; i++)
        feed_xy(r, pts[i][0], pts[i][1], i);
    cr_assert_eq(r->ncent, 1);
    const centroids_out_t *co = &r->cent[0];
    int a = find_centroid(co, 1, 1), b = find_centroid(co, 11, 11);
    cr_assert(a >= 0 && b >= 0, "centroids [[%g,%g],[%g,%g]]", co->c[0][0], co->c[0][1], co->c[1][0], co->c[1][1]);
    cr_assert_float_eq(co->w[a], 4.0, 0);
    cr_assert_float_eq(co->w[b], 4.0, 0);
    cr_assert_float_eq(co->inertia, 16.0, 1e-12);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(r->cluster[i], pts[i][0] < 5 ? a : b);
        cr_assert_float_eq(r->distance[i], sqrt(2.0), 1e-15);
    }
    run_free(r);
}

Test(kmeans_seed, deterministic_for_a_seed) {
    run_t *r1 = run_new(XY, "features: [x, y], k: 4, init_size: 50, seed: 7, batch: 10");
    run_t *r2 = run_new(XY, "features: [x, y], k: 4, init_size: 50, seed: 7, batch: 10");
    for (int i = 0; i < 300; i++) {
        double x = sin(i * 1.7) * 10, y = cos(i * 0.3) * 5;
        feed_xy(r1, x, y, i);
        feed_xy(r2, x, y, i);
    }
    finish(r1);
    finish(r2);
    cr_assert_eq(r1->text.len, r2->text.len);
    cr_assert(memcmp(r1->text.p, r2->text.p, r1->text.len) == 0);
    run_free(r1);
    run_free(r2);
}

/* ---- the update rule ---- */

/* Init on {0,2} and {10,12} on a line: c = (1, 11), n = (2, 2). */
static run_t *two_clusters(const char *opts) {
    run_t *r = run_new(XY, opts);
    feed_xy(r, 0, 0, 1);
    feed_xy(r, 10, 0, 2);
    feed_xy(r, 2, 0, 3);
    feed_xy(r, 12, 0, 4);
    cr_assert_eq(r->ncent, 1);
    return r;
}

Test(kmeans_update, decay_per_batch_by_hand) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 3, decay: 0.5");
    const centroids_out_t *c1 = &r->cent[0];
    int A = find_centroid(c1, 1, 0), B = find_centroid(c1, 11, 0);
    cr_assert(A >= 0 && B >= 0);
    feed_xy(r, 3, 0, 5);
    feed_xy(r, 1, 0, 6);
    feed_xy(r, 14, 0, 7);
    cr_assert_eq(r->ncent, 2);
    const centroids_out_t *c2 = &r->cent[1];
    cr_assert_eq(c2->version, 2);
    /* A: n a = 2 * 0.5 = 1, m = 2, sum = 4: c' = (1 * 1 + 4) / (1 + 2) = 5/3, n' = 3.
     * B: n a = 1, m = 1, sum = 14:         c' = (11 * 1 + 14) / 2 = 12.5, n' = 2. */
    cr_assert_float_eq(c2->c[A][0], 5.0 / 3.0, 1e-15);
    cr_assert_float_eq(c2->c[B][0], 12.5, 1e-15);
    cr_assert_float_eq(c2->w[A], 3.0, 0);
    cr_assert_float_eq(c2->w[B], 2.0, 0);
    /* inertia of the batch under the old model: 2^2 + 0^2 + 3^2 */
    cr_assert_float_eq(c2->inertia, 13.0, 1e-12);
    /* the batch's records were assigned with the model before the update */
    cr_assert_eq(r->cluster[4], A);
    cr_assert_float_eq(r->distance[4], 2.0, 0);
    cr_assert_eq(r->cluster[6], B);
    cr_assert_float_eq(r->distance[6], 3.0, 0);
    run_free(r);
}

Test(kmeans_update, decay_per_point_by_hand) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 3, decay: 0.5, time_unit: points");
    int A = find_centroid(&r->cent[0], 1, 0), B = find_centroid(&r->cent[0], 11, 0);
    feed_xy(r, 3, 0, 5);
    feed_xy(r, 1, 0, 6);
    feed_xy(r, 14, 0, 7);
    const centroids_out_t *c2 = &r->cent[1];
    /* discount a^m = 0.5^3 = 0.125: A: n a = 0.25, c' = (0.25 + 4) / 2.25; B: (11 * 0.25 + 14) / 1.25 */
    cr_assert_float_eq(c2->c[A][0], 4.25 / 2.25, 1e-15);
    cr_assert_float_eq(c2->c[B][0], 16.75 / 1.25, 1e-14);
    cr_assert_float_eq(c2->w[A], 2.25, 0);
    cr_assert_float_eq(c2->w[B], 1.25, 0);
    run_free(r);
}

Test(kmeans_update, no_decay_is_the_running_mean) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 1");
    int A = find_centroid(&r->cent[0], 1, 0);
    feed_xy(r, 4, 0, 5); /* A = mean(0, 2, 4) = 2 */
    feed_xy(r, 6, 0, 6); /* nearest is A (2): A = mean(0, 2, 4, 6) = 3 */
    cr_assert_float_eq(r->cent[1].c[A][0], 2.0, 0);
    cr_assert_float_eq(r->cent[2].c[A][0], 3.0, 0);
    cr_assert_float_eq(r->cent[2].w[A], 4.0, 0);
    run_free(r);
}

Test(kmeans_update, half_life_equals_decay) {
    /* half_life h in batches is decay 0.5^(1/h): identical output, bit for bit. */
    char opts[200];
    snprintf(opts, sizeof(opts), "features: [x, y], k: 3, init_size: 30, batch: 7, decay: %.17g", pow(0.5, 1.0 / 4.0));
    run_t *r1 = run_new(XY, opts);
    run_t *r2 = run_new(XY, "features: [x, y], k: 3, init_size: 30, batch: 7, half_life: 4");
    for (int i = 0; i < 500; i++) {
        double x = (i % 3) * 10 + sin(i * 0.9) + i * 0.01, y = cos(i * 2.1);
        feed_xy(r1, x, y, i);
        feed_xy(r2, x, y, i);
    }
    finish(r1);
    finish(r2);
    cr_assert_gt(r1->ncent, 60);
    cr_assert_eq(r1->text.len, r2->text.len);
    cr_assert(memcmp(r1->text.p, r2->text.p, r1->text.len) == 0);
    run_free(r1);
    run_free(r2);
}

Test(kmeans_update, half_life_halves_an_idle_cluster) {
    /* B gets no points: after half_life = 2 batches its weight 2 has halved to 1. */
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 1, half_life: 2");
    int B = find_centroid(&r->cent[0], 11, 0);
    feed_xy(r, 1, 0, 5);
    feed_xy(r, 1, 0, 6);
    cr_assert_eq(r->ncent, 3);
    cr_assert_float_eq(r->cent[2].w[B], 1.0, 1e-12);
    cr_assert_float_eq(r->cent[2].c[B][0], 11.0, 0);
    /* half_life in points: 2 points halve it too, in one batch of 2 */
    run_t *p = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 2, half_life: 2, time_unit: points");
    feed_xy(p, 1, 0, 5);
    feed_xy(p, 1, 0, 6);
    cr_assert_float_eq(p->cent[1].w[B], 1.0, 1e-12);
    run_free(r);
    run_free(p);
}

Test(kmeans_update, dead_cluster_is_reseeded_by_splitting_the_largest) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 3, decay: 0.1, dead_fraction: 0.1");
    int A = find_centroid(&r->cent[0], 1, 0), B = 1 - A;
    feed_xy(r, 0, 0, 5);
    feed_xy(r, 1, 0, 6);
    feed_xy(r, 2, 0, 7);
    /* A: n' = 0.2 + 3 = 3.2, c' = (1 * 0.2 + 3) / 3.2 = 1; B: n' = 0.2 < 0.1 * 3.2: dead.
     * Split A: both weights (3.2 + 0.2) / 2 = 1.7, centres 1 +- 1e-14. */
    const centroids_out_t *c = &r->cent[1];
    cr_assert_eq(c->reseeded, 1);
    cr_assert_float_eq(c->w[A], 1.7, 1e-15);
    cr_assert_float_eq(c->w[B], 1.7, 1e-15);
    cr_assert_float_eq(c->c[A][0], 1.0, 1e-13);
    cr_assert_float_eq(c->c[B][0], 1.0, 1e-13);
    cr_assert_neq(c->c[A][0], c->c[B][0]);
    /* The split centres share the points: the next batch moves them apart. */
    feed_xy(r, -5, 0, 8);
    feed_xy(r, 7, 0, 9);
    feed_xy(r, -6, 0, 10);
    cr_assert_eq(r->ncent, 3);
    cr_assert_eq(r->cent[2].reseeded, 0);
    cr_assert_gt(fabs(r->cent[2].c[A][0] - r->cent[2].c[B][0]), 3.0);
    run_free(r);
}

/* ---- records ---- */

Test(kmeans_records, null_feature_is_rejected) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 100");
    feed(r, "{\"x\": 1, \"y\": null, \"ts\": 9}");
    cr_assert_eq(r->nreject, 1);
    cr_assert_str_eq(r->reject, "null feature 'y'");
    cr_assert_eq(r->nassign, 4);
    run_free(r);
}

Test(kmeans_records, end_of_input_initialises_a_short_buffer) {
    run_t *r = run_new(XY, "features: [x, y], k: 3, batch: 100");
    feed_xy(r, 1, 0, 1);
    feed_xy(r, 2, 0, 2);
    cr_assert_eq(r->nassign, 0);
    finish(r);
    cr_assert_eq(r->ncent, 1);
    cr_assert_eq(r->nassign, 2);
    run_free(r);
}

Test(kmeans_records, output_row_carries_cluster_and_distance) {
    run_t *r = two_clusters("features: [x, \"y * 2\"], k: 2, init_size: 4, batch: 100");
    const weir_rowtype_t *rt = r->pl->nodes[0].plan.ports[0].rt;
    cr_assert_eq(rt->nfields, 5);
    cr_assert_str_eq(rt->fields[3].name, "cluster");
    cr_assert_eq(rt->fields[3].type, WEIR_LONG);
    cr_assert_str_eq(rt->fields[4].name, "distance");
    cr_assert_eq(rt->fields[4].type, WEIR_DOUBLE);
    cr_assert_str_eq(r->pl->nodes[0].plan.ports[1].suffix, "centroids");
    cr_assert(strstr((char *)r->text.p, "km.centroids|1|2|'[["));
    run_free(r);
}

/* ---- batch: window ---- */

#define WF "x: double, y: double, window_end: long, ts: long"

static void feed_w(run_t *r, double x, int64_t we, int64_t ts) {
    char line[160];
    snprintf(line, sizeof(line), "{\"x\": %.17g, \"y\": 0, \"window_end\": %lld, \"ts\": %lld}", x, (long long)we,
             (long long)ts);
    feed(r, line);
}

Test(kmeans_window, a_new_window_or_the_watermark_closes_the_batch) {
    run_t *r = run_new(WF, "features: [x, y], k: 2, init_size: 4");
    feed_w(r, 0, 10, 1);
    feed_w(r, 10, 10, 2);
    feed_w(r, 2, 10, 3);
    feed_w(r, 12, 10, 4); /* initialised: version 1 */
    cr_assert_eq(r->ncent, 1);
    feed_w(r, 3, 20, 11);
    feed_w(r, 13, 20, 12);
    cr_assert_eq(r->ncent, 1, "window 20 is still open");
    feed_w(r, 1, 30, 21); /* a new window_end closes the batch of window 20 first */
    cr_assert_eq(r->ncent, 2);
    cr_assert_eq(r->cent[1].version, 2);
    cr_assert_eq(r->nassign, 7);
    /* the centroids of version 2 come before the record that closed the batch */
    weir_buf_putc(&r->text, '\0');
    char *last = strrchr((char *)r->text.p, '|');
    while (last > (char *)r->text.p && last[-1] != '\n')
        last--;
    cr_assert(!strncmp(last, "km|", 3), "%s", last);
    char *prev = last - 1;
    while (prev > (char *)r->text.p && prev[-1] != '\n')
        prev--;
    cr_assert(!strncmp(prev, "km.centroids|2|", 15), "%s", prev);
    r->text.len--;
    /* the watermark (max ts 21, no out-of-orderness) has not reached 30 */
    weir_task_advance(r->t, 29);
    cr_assert_eq(r->ncent, 2);
    weir_task_advance(r->t, 30);
    cr_assert_eq(r->ncent, 3, "the watermark passing window_end closes the batch");
    cr_assert_eq(r->cent[2].version, 3);
    finish(r);
    cr_assert_eq(r->ncent, 3);
    run_free(r);
}

/* ---- scope: key ---- */

Test(kmeans_key, one_model_per_key) {
    run_t *r = run_new("s: string, x: double, y: double, ts: long",
                       "features: [x, y], k: 2, init_size: 4, batch: 2, scope: key, key: s");
    for (int i = 0; i < 8; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"s\": \"%s\", \"x\": %d, \"y\": 0, \"ts\": %d}", i % 2 ? "b" : "a",
                 (i / 2) % 2 ? 10 + i : i, i);
        feed(r, line);
    }
    cr_assert_eq(r->ncent, 2);
    cr_assert_str_eq(r->cent[0].key, "a");
    cr_assert_str_eq(r->cent[1].key, "b");
    cr_assert_eq(r->cent[0].version, 1);
    cr_assert_eq(r->cent[1].version, 1);
    cr_assert(strstr((char *)r->text.p, "|key=b"));
    run_free(r);
}

/* key: is an expression (processor/core/key.h); a null key is dead-lettered with the node and the expression,
 * and the other records give exactly what they give without it. */
static void feed_keyed(run_t *r, bool with_nulls) {
    for (int i = 0; i < 24; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"s\": \"%s\", \"x\": %d, \"y\": 0, \"ts\": %d}", i % 2 ? "b" : "a",
                 (i / 2) % 2 ? 10 + i : i, i);
        feed(r, line);
        if (with_nulls && i % 5 == 0)
            feed(r, "{\"s\": null, \"x\": 1000, \"y\": 1000, \"ts\": 0}");
    }
    finish(r);
}

Test(kmeans_key, expression_key_and_null_key_dead_lettered) {
    static const char *const opts = "features: [x, y], k: 2, init_size: 4, batch: 2, scope: key, key: \"upper(s)\"";
    run_t *r = run_new("s: string?, x: double, y: double, ts: long", opts);
    run_t *ref = run_new("s: string?, x: double, y: double, ts: long", opts);
    feed_keyed(r, true);
    feed_keyed(ref, false);
    cr_assert_eq(r->nreject, 5);
    cr_assert_str_eq(r->reject, "kmeans: node 'km': key 'upper(s)' is null");
    cr_assert_eq(ref->nreject, 0);
    cr_assert_str_eq(r->cent[0].key, "A");
    cr_assert_str_eq(r->cent[1].key, "B");
    cr_assert(r->text.len == ref->text.len && !memcmp(r->text.p, ref->text.p, r->text.len),
              "null keys changed the other models' output");
    run_free(r);
    run_free(ref);
}

/* max_keys (scope key): a new key beyond it evicts the least recently updated model, flushed as at end of input:
 * initialised from its buffer (version 1 on the centroids port) and its held records assigned. The node's stats
 * count it; the task keeps max_keys models. */
Test(kmeans_key, max_keys_evicts_least_recently_updated) {
    run_t *r = run_new("s: string, x: double, y: double, ts: long",
                       "features: [x, y], k: 2, init_size: 4, batch: 2, scope: key, key: s, max_keys: 2");
    static const char *const lines[] = {
        "{\"s\": \"a\", \"x\": 0, \"y\": 0, \"ts\": 1}", "{\"s\": \"a\", \"x\": 9, \"y\": 0, \"ts\": 2}",
        "{\"s\": \"b\", \"x\": 1, \"y\": 0, \"ts\": 3}", "{\"s\": \"b\", \"x\": 8, \"y\": 0, \"ts\": 4}",
        "{\"s\": \"a\", \"x\": 1, \"y\": 0, \"ts\": 5}", /* a is now more recent than b */
        "{\"s\": \"c\", \"x\": 2, \"y\": 0, \"ts\": 6}", /* evicts b */
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        feed(r, lines[i]);
        cr_assert_eq(r->ncent, i < 5 ? 0 : 1, "after record %zu: %d models emitted", i, r->ncent);
    }
    cr_assert_str_eq(r->cent[0].key, "b");
    cr_assert_eq(r->cent[0].version, 1);
    cr_assert_eq(r->nassign, 2, "b's two held records are assigned when it is evicted");
    const weir_plan_t *plan = &r->pl->nodes[0].plan;
    cr_assert_eq(atomic_load(&plan->stats->evicted_keys), 1);
    weir_buf_t d = {0};
    cr_assert_eq(plan->cls->dump(weir_task_node_state(r->t, 0), &d), WEIR_OK);
    weir_buf_putc(&d, '\0');
    cr_assert(strstr((char *)d.p, "\"a\"") && strstr((char *)d.p, "\"c\"") && !strstr((char *)d.p, "\"b\""),
              "models held: %s", (char *)d.p);
    weir_buf_free(&d);
    /* b comes back as a new model (buffering again); evicting a flushes a. */
    feed(r, "{\"s\": \"b\", \"x\": 3, \"y\": 0, \"ts\": 7}");
    cr_assert_eq(r->ncent, 2);
    cr_assert_str_eq(r->cent[1].key, "a");
    cr_assert_eq(atomic_load(&plan->stats->evicted_keys), 2);
    run_free(r);
}

/* ---- snapshot / restore ---- */

typedef struct stream_cfg {
    const char *fields, *opts;
    void (*gen)(int i, char *line, size_t n);
    int n;
    int64_t wm_every; /* advance the watermark every so many records (0: never) */
} stream_cfg_t;

static void gen_blobs(int i, char *line, size_t n) {
    static const double cx[3] = {0, 8, -6}, cy[3] = {0, 5, 7};
    int c = (i * 7 + i / 13) % 3;
    snprintf(line, n, "{\"s\": \"k%d\", \"x\": %.17g, \"y\": %.17g, \"z\": %.17g, \"ts\": %d}", i % 3,
             cx[c] + sin(i * 12.9898) * 1.5 + i * 0.002, cy[c] + cos(i * 78.233) * 1.5, sin(i * 0.37) * 3 + 5, i);
}

static void gen_windows(int i, char *line, size_t n) {
    static const double cx[3] = {0, 8, -6};
    int c = i % 3;
    snprintf(line, n, "{\"s\": \"k%d\", \"x\": %.17g, \"y\": %.17g, \"z\": 1, \"window_end\": %d, \"ts\": %d}", i % 2,
             cx[c] + sin(i * 12.9898), cos(i * 78.233), (i / 25 + 1) * 100, (i / 25) * 100 + i % 25);
}

static run_t *replay(const stream_cfg_t *s, const int *cuts, int ncuts) {
    run_t *r = run_new(s->fields, s->opts);
    int next = 0;
    char line[256];
    for (int i = 0; i < s->n; i++) {
        if (next < ncuts && cuts[next] == i) {
            next++;
            weir_buf_t snap = {0};
            cr_assert_eq(weir_task_snapshot(r->t, &snap), WEIR_OK);
            /* a brand-new task from the same pipeline takes over */
            weir_task_destroy(r->t);
            r->t = weir_task_new(r->pl, on_sink, on_reject, r);
            char errstr[WEIR_ERRSTR_SIZE];
            cr_assert_eq(weir_task_restore(r->t, snap.p, snap.len, NULL, errstr, sizeof(errstr)), WEIR_OK, "%s",
                         errstr);
            /* and snapshots again to the same bytes */
            weir_buf_t again = {0};
            weir_task_snapshot(r->t, &again);
            cr_assert_eq(again.len, snap.len);
            cr_assert(memcmp(again.p, snap.p, snap.len) == 0, "re-snapshot differs at cut %d", i);
            weir_buf_free(&again);
            weir_buf_free(&snap);
        }
        s->gen(i, line, sizeof(line));
        feed(r, line);
        if (s->wm_every && i % s->wm_every == s->wm_every - 1)
            weir_task_advance(r->t, i - 30);
    }
    finish(r);
    return r;
}

static void check_identity(const stream_cfg_t *s) {
    run_t *ref = replay(s, NULL, 0);
    cr_assert_gt(ref->ncent, 3, "the stream must update the model a few times");
    static const int cuts[] = {0, 5, 17, 150, 151, 777, 1203, 1999};
    run_t *got = replay(s, cuts, sizeof(cuts) / sizeof(cuts[0]));
    cr_assert_eq(got->text.len, ref->text.len, "output length differs after restore");
    cr_assert(memcmp(got->text.p, ref->text.p, ref->text.len) == 0, "output differs after restore");
    run_free(ref);
    run_free(got);
}

/* Three hot keys and four cold ones through max_keys 4, batches by window: cold keys evict each other (and
 * now and then a hot one); the hot models get ready and hold open (pending) batches, whose ids differ from their
 * positions in the recency order. A snapshot keeps that order and the pending batches' order. */
static void gen_windows_7keys(int i, char *line, size_t n) {
    static const double cx[3] = {0, 8, -6};
    snprintf(line, n, "{\"s\": \"k%d\", \"x\": %.17g, \"y\": %.17g, \"z\": 1, \"window_end\": %d, \"ts\": %d}",
             i % 10 < 8 ? (i * 5 + i / 7) % 3 : 3 + (i / 10) % 4, cx[i % 3] + sin(i * 12.9898), cos(i * 78.233),
             (i / 25 + 1) * 100, (i / 25) * 100 + i % 25);
}

#define SF "s: string, x: double, y: double, z: double, ts: long"

Test(kmeans_snapshot, restore_is_bit_identical_task_scope) {
    stream_cfg_t s = {SF, "features: [x, y, z], k: 4, init_size: 200, batch: 37, decay: 0.9, standardize: true",
                      gen_blobs, 2000, 0};
    check_identity(&s);
}

Test(kmeans_snapshot, restore_is_bit_identical_key_scope_cosine) {
    stream_cfg_t s = {SF,
                      "features: [x, y, \"z + 1\"], k: 3, init_size: 40, batch: 11, half_life: 5, time_unit: points, "
                      "scope: key, key: s, distance: cosine, standardize: true",
                      gen_blobs, 2000, 0};
    check_identity(&s);
}

Test(kmeans_snapshot, restore_is_bit_identical_window_batches) {
    stream_cfg_t s = {"s: string, x: double, y: double, z: double, window_end: long, ts: long",
                      "features: [x, y], k: 3, init_size: 60, decay: 0.8, scope: key, key: s", gen_windows, 2000, 0};
    check_identity(&s);
}

static void snapshot_of(const char *opts, int n, weir_buf_t *snap) {
    run_t *r = run_new(SF, opts);
    char line[256];
    for (int i = 0; i < n; i++) {
        gen_blobs(i, line, sizeof(line));
        feed(r, line);
    }
    cr_assert_eq(weir_task_snapshot(r->t, snap), WEIR_OK);
    run_free(r);
}

Test(kmeans_snapshot, bad_blobs_are_rejected_never_crash) {
    const char *opts = "features: [x, y], k: 3, init_size: 50, batch: 10";
    weir_buf_t snap = {0};
    snapshot_of(opts, 30, &snap); /* mid-initialisation: held records in the blob */
    run_t *r = run_new(SF, opts);
    char errstr[WEIR_ERRSTR_SIZE];
    /* every truncation */
    for (size_t n = 0; n < snap.len; n += 7)
        cr_assert_eq(weir_task_restore(r->t, snap.p, n, NULL, errstr, sizeof(errstr)), WEIR_ERR);
    /* flipped bytes: the CRC catches them */
    for (size_t i = 40; i < snap.len; i += 53) {
        snap.p[i] ^= 0x5a;
        cr_assert_eq(weir_task_restore(r->t, snap.p, snap.len, NULL, errstr, sizeof(errstr)), WEIR_ERR);
        snap.p[i] ^= 0x5a;
    }
    cr_assert_eq(weir_task_restore(r->t, snap.p, snap.len, NULL, errstr, sizeof(errstr)), WEIR_OK, "%s", errstr);
    run_free(r);
    /* a different configuration is refused with a message */
    run_t *r2 = run_new(SF, "features: [x, y], k: 4, init_size: 50, batch: 10");
    cr_assert_eq(weir_task_restore(r2->t, snap.p, snap.len, NULL, errstr, sizeof(errstr)), WEIR_ERR);
    cr_assert(strstr(errstr, "k=3") && strstr(errstr, "k=4"), "%s", errstr);
    /* ... and the task still works afterwards */
    char line[256];
    for (int i = 0; i < 100; i++) {
        gen_blobs(i, line, sizeof(line));
        feed(r2, line);
    }
    cr_assert_eq(r2->nassign, 100);
    run_free(r2);
    weir_buf_free(&snap);
}

Test(kmeans_snapshot, restore_is_bit_identical_emit_every) {
    /* emit_centroids_every: the last update's inertia and re-seeds are state (snapshot version 2) */
    stream_cfg_t s = {SF, "features: [x, y, z], k: 4, init_size: 200, batch: 37, decay: 0.9, emit_centroids_every: 4",
                      gen_blobs, 2000, 0};
    check_identity(&s);
}

/* ---- state dump (`weir state dump`) ---- */

/* The class's dump() on the task's kmeans context, parsed. The text goes to *text when given. */
static json_t *dump_json(weir_task_t *t, const weir_pipeline_t *pl, weir_buf_t *text) {
    int node = -1;
    for (int i = 0; i < pl->nnodes; i++)
        if (!strcmp(pl->nodes[i].plan.name, "km"))
            node = i;
    cr_assert_geq(node, 0);
    const weir_operator_class_t *cls = pl->nodes[node].plan.cls;
    cr_assert_not_null(cls->dump, "kmeans has no dump callback");
    weir_buf_t b = {0};
    cr_assert_eq(cls->dump(weir_task_node_state(t, node), &b), WEIR_OK);
    json_error_t err;
    json_t *j = json_loadb((const char *)b.p, b.len, 0, &err);
    cr_assert_not_null(j, "dump is not JSON (%s): %.*s", err.text, (int)b.len, (const char *)b.p);
    cr_assert(json_is_object(j));
    if (text) {
        weir_buf_reset(text);
        weir_buf_append(text, b.p, b.len);
    }
    weir_buf_free(&b);
    return j;
}

/* The dumped model's centroids and weights equal (bit for bit) those of a centroids record. */
static void assert_model_equals(json_t *model, const centroids_out_t *co) {
    json_t *c = json_object_get(model, "centroids"), *w = json_object_get(model, "weights");
    cr_assert_eq(json_integer_value(json_object_get(model, "model_version")), co->version);
    cr_assert_eq(json_integer_value(json_object_get(model, "k")), co->k);
    cr_assert(json_is_array(c) && json_is_array(w));
    cr_assert_eq((int64_t)json_array_size(c), co->k);
    cr_assert_eq((int64_t)json_array_size(w), co->k);
    for (int i = 0; i < co->k; i++) {
        json_t *row = json_array_get(c, (size_t)i);
        cr_assert_eq((int)json_array_size(row), co->n);
        for (int q = 0; q < co->n; q++)
            cr_assert(json_number_value(json_array_get(row, (size_t)q)) == co->c[i][q],
                      "centroid %d[%d]: %.17g vs %.17g", i, q, json_number_value(json_array_get(row, (size_t)q)),
                      co->c[i][q]);
        cr_assert(json_number_value(json_array_get(w, (size_t)i)) == co->w[i]);
    }
}

Test(kmeans_dump, task_scope_by_hand) {
    run_t *r = two_clusters("features: [x, y], k: 2, init_size: 4, batch: 3, decay: 0.5");
    int A = find_centroid(&r->cent[0], 1, 0), B = find_centroid(&r->cent[0], 11, 0);
    cr_assert(A >= 0 && B >= 0);
    feed_xy(r, 3, 0, 5);
    feed_xy(r, 1, 0, 6);
    feed_xy(r, 14, 0, 7);
    cr_assert_eq(r->ncent, 2);
    json_t *j = dump_json(r->t, r->pl, NULL);
    cr_assert_eq(json_integer_value(json_object_get(j, "reseeds")), 0);
    json_t *models = json_object_get(j, "models");
    cr_assert_eq(json_array_size(models), 1);
    json_t *m = json_array_get(models, 0);
    cr_assert(json_is_null(json_object_get(m, "key")));
    cr_assert(json_is_true(json_object_get(m, "ready")));
    cr_assert_eq(json_integer_value(json_object_get(m, "init_buffered")), 0);
    cr_assert_null(json_object_get(m, "scaler"), "no scaler without standardize");
    const char *rng = json_string_value(json_object_get(m, "rng"));
    cr_assert(rng && strlen(rng) == 64 && strspn(rng, "0123456789abcdef") == 64, "rng %s", rng ? rng : "(null)");
    /* the model the centroids port reported, and the hand-computed update (decay_per_batch_by_hand) */
    assert_model_equals(m, &r->cent[1]);
    json_t *c = json_object_get(m, "centroids"), *w = json_object_get(m, "weights");
    cr_assert_float_eq(json_number_value(json_array_get(json_array_get(c, (size_t)A), 0)), 5.0 / 3.0, 1e-15);
    cr_assert_float_eq(json_number_value(json_array_get(json_array_get(c, (size_t)B), 0)), 12.5, 1e-15);
    cr_assert_float_eq(json_number_value(json_array_get(w, (size_t)A)), 3.0, 0);
    cr_assert_float_eq(json_number_value(json_array_get(w, (size_t)B)), 2.0, 0);
    json_decref(j);
    run_free(r);
}

Test(kmeans_dump, key_scope_sorted_buffering_and_scaler) {
    /* Keys created in the order b, "", a; the dump lists them "", "a", "b". A null key is dead-lettered
     * (processor/core/key.h) and makes no model. */
    run_t *r = run_new("s: string?, x: double, y: double, ts: long",
                       "features: [x, y], k: 2, init_size: 4, batch: 100, scope: key, key: s, standardize: true");
    static const double bx[4] = {0, 2, 10, 12};
    char line[128];
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof(line), "{\"s\": \"b\", \"x\": %g, \"y\": 0, \"ts\": %d}", bx[i], i);
        feed(r, line);
        if (i == 0) {
            feed(r, "{\"s\": \"\", \"x\": 1, \"y\": 1, \"ts\": 0}");
            feed(r, "{\"s\": null, \"x\": 1, \"y\": 1, \"ts\": 0}");
        }
    }
    feed(r, "{\"s\": \"a\", \"x\": 5, \"y\": 5, \"ts\": 9}");
    feed(r, "{\"s\": \"a\", \"x\": 6, \"y\": 5, \"ts\": 9}");
    cr_assert_eq(r->ncent, 1);
    weir_buf_t t1 = {0}, t2 = {0};
    json_t *j = dump_json(r->t, r->pl, &t1);
    json_t *models = json_object_get(j, "models");
    cr_assert_eq(json_array_size(models), 3);
    json_t *mn = json_array_get(models, 0), *ma = json_array_get(models, 1), *mb = json_array_get(models, 2);
    cr_assert_str_eq(json_string_value(json_object_get(mn, "key")), "");
    cr_assert_eq(r->nreject, 1);
    cr_assert_str_eq(r->reject, "kmeans: node 'km': key 's' is null");
    cr_assert_str_eq(json_string_value(json_object_get(ma, "key")), "a");
    cr_assert_str_eq(json_string_value(json_object_get(mb, "key")), "b");
    /* still buffering: no centroids yet */
    cr_assert(json_is_false(json_object_get(ma, "ready")));
    cr_assert_eq(json_integer_value(json_object_get(ma, "init_buffered")), 2);
    cr_assert_eq(json_integer_value(json_object_get(mn, "init_buffered")), 1);
    cr_assert_eq(json_integer_value(json_object_get(ma, "model_version")), 0);
    cr_assert(json_is_null(json_object_get(ma, "centroids")));
    /* b: initialised on {0, 2, 10, 12} x {0}: c = {1, 11}, n = {2, 2}, scaler mean (6, 0), var (26, 0), n 4 */
    cr_assert(json_is_true(json_object_get(mb, "ready")));
    cr_assert_str_eq(r->cent[0].key, "b");
    assert_model_equals(mb, &r->cent[0]);
    int A = find_centroid(&r->cent[0], 1, 0), B = find_centroid(&r->cent[0], 11, 0);
    cr_assert(A >= 0 && B >= 0);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(mb, "weights"), (size_t)A)), 2.0, 0);
    json_t *sc = json_object_get(mb, "scaler");
    cr_assert(json_is_object(sc));
    cr_assert_eq(json_integer_value(json_object_get(sc, "n")), 4);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(sc, "mean"), 0)), 6.0, 1e-12);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(sc, "mean"), 1)), 0.0, 0);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(sc, "var"), 0)), 26.0, 1e-12);
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(sc, "var"), 1)), 0.0, 0);
    /* read-only: a second dump is the same text */
    json_decref(dump_json(r->t, r->pl, &t2));
    cr_assert(t1.len == t2.len && !memcmp(t1.p, t2.p, t1.len));
    json_decref(j);
    weir_buf_free(&t1);
    weir_buf_free(&t2);
    run_free(r);
}

/* Restore snap into a brand-new task of r's pipeline; its dump must be want, byte for byte. */
static void assert_restored_dump(run_t *r, const weir_buf_t *snap, const weir_buf_t *want) {
    weir_task_t *t = weir_task_new(r->pl, on_sink, on_reject, r);
    char errstr[WEIR_ERRSTR_SIZE];
    cr_assert_eq(weir_task_restore(t, snap->p, snap->len, NULL, errstr, sizeof(errstr)), WEIR_OK, "%s", errstr);
    weir_buf_t got = {0};
    json_decref(dump_json(t, r->pl, &got));
    cr_assert_eq(got.len, want->len, "dump after restore: %.*s\nbefore: %.*s", (int)got.len, (const char *)got.p,
                 (int)want->len, (const char *)want->p);
    cr_assert(memcmp(got.p, want->p, want->len) == 0, "dump differs after restore");
    weir_buf_free(&got);
    weir_task_destroy(t);
}

Test(kmeans_dump, matches_the_centroids_port_and_survives_restore) {
    run_t *r = run_new(SF, "features: [x, y, \"z + 1\"], k: 3, init_size: 40, batch: 11, half_life: 5, "
                           "scope: key, key: s, standardize: true");
    char line[256];
    weir_buf_t text = {0}, snap = {0};
    for (int i = 0; i < 1000; i++) {
        if (i == 50 || i == 999) { /* mid-initialisation (held records), then with updated models */
            json_decref(dump_json(r->t, r->pl, &text));
            weir_buf_reset(&snap);
            cr_assert_eq(weir_task_snapshot(r->t, &snap), WEIR_OK);
            assert_restored_dump(r, &snap, &text);
        }
        gen_blobs(i, line, sizeof(line));
        feed(r, line);
    }
    /* every key's model equals the latest model it put out (batch: 11 of its records, emit every update) */
    json_t *j = dump_json(r->t, r->pl, &text);
    json_t *models = json_object_get(j, "models");
    cr_assert_eq(json_array_size(models), 3);
    for (int k = 0; k < 3; k++) {
        json_t *m = json_array_get(models, (size_t)k);
        char key[8];
        snprintf(key, sizeof(key), "k%d", k);
        cr_assert_str_eq(json_string_value(json_object_get(m, "key")), key);
        const centroids_out_t *last = NULL;
        for (int c = 0; c < r->ncent; c++)
            if (!strcmp(r->cent[c].key, key))
                last = &r->cent[c];
        cr_assert_not_null(last);
        cr_assert_gt(last->version, 10);
        assert_model_equals(m, last);
        cr_assert(json_is_object(json_object_get(m, "scaler")));
    }
    cr_assert(json_is_integer(json_object_get(j, "reseeds")));
    json_decref(j);
    /* and after the end of input */
    finish(r);
    json_decref(dump_json(r->t, r->pl, &text));
    weir_buf_reset(&snap);
    cr_assert_eq(weir_task_snapshot(r->t, &snap), WEIR_OK);
    assert_restored_dump(r, &snap, &text);
    weir_buf_free(&text);
    weir_buf_free(&snap);
    run_free(r);
}

/* ---- speed-related paths: output thinning, number formatting, the kernel ---- */

Test(kmeans_records, emit_centroids_every_thins_the_model_output) {
    run_t *all = run_new(SF, "features: [x, y, z], k: 4, init_size: 200, batch: 37, decay: 0.9");
    run_t *some = run_new(SF, "features: [x, y, z], k: 4, init_size: 200, batch: 37, decay: 0.9, "
                              "emit_centroids_every: 5");
    char line[256];
    for (int i = 0; i < 1000; i++) {
        gen_blobs(i, line, sizeof(line));
        feed(all, line);
        feed(some, line);
    }
    finish(all);
    finish(some);
    /* versions 1 .. 23 (200 init + 800 / 37 = 21 full batches + the end); thinned: 1, 5, 10, 15, 20 and the last */
    cr_assert_eq(all->ncent, 23);
    cr_assert_eq(some->ncent, 6);
    static const int want[] = {1, 5, 10, 15, 20, 23};
    for (int i = 0; i < 6; i++) {
        const centroids_out_t *a = &all->cent[want[i] - 1], *b = &some->cent[i];
        cr_assert_eq(b->version, want[i]);
        cr_assert_eq(a->version, b->version);
        cr_assert(!memcmp(a->c, b->c, sizeof(a->c)) && !memcmp(a->w, b->w, sizeof(a->w)));
        cr_assert_eq(a->inertia, b->inertia);
    }
    /* the per-record output is the same */
    cr_assert_eq(all->nassign, some->nassign);
    cr_assert(!memcmp(all->cluster, some->cluster, sizeof(int64_t) * (size_t)all->nassign));
    cr_assert(!memcmp(all->distance, some->distance, sizeof(double) * (size_t)all->nassign));
    run_free(all);
    run_free(some);
    char *bad = pipeline_yaml(XY, "features: [x], k: 2, emit_centroids_every: 0");
    cr_assert(compile_error(bad));
    free(bad);
}

static uint64_t xs64(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* kmeans_nearest against a sequential scalar scan: every k around the 8-, 16-, 32- and 64-lane blocks, both
 * metrics, with duplicate centroids (ties: lowest index). isa caps the kernel (WEIR_KMEANS_SIMD): the kernel is
 * picked at the first call, and each Criterion test runs in a process of its own. */
static void check_nearest_scan(const char *isa) {
    setenv("WEIR_KMEANS_SIMD", isa, 1);
    uint64_t st = 12345;
    const int d = 5;
    for (int k = 1; k <= 140; k++)
        for (int metric = 0; metric < 2; metric++) {
            int kp = (k + KMEANS_LANES - 1) / KMEANS_LANES * KMEANS_LANES;
            double *c = calloc((size_t)k * d, sizeof(double)), *zt = calloc((size_t)kp * d, sizeof(double));
            for (int i = 0; i < k * d; i++)
                c[i] = (double)(xs64(&st) % 7) - 3.0; /* few values: many exact ties */
            for (int i = 0; i < k; i++)
                for (int j = 0; j < d; j++)
                    zt[j * kp + i] = c[i * d + j];
            for (int t = 0; t < 200; t++) {
                double z[5], raw;
                for (int j = 0; j < d; j++)
                    z[j] = (double)(xs64(&st) % 9) - 4.0 + (t & 1 ? 0.25 : 0.0);
                int got = kmeans_nearest(zt, kp, z, k, d, (kmeans_metric_t)metric, &raw);
                int best = 0;
                double bv = 0;
                for (int i = 0; i < k; i++) {
                    double a = 0;
                    for (int j = 0; j < d; j++) {
                        double u = metric ? z[j] * c[i * d + j] : (z[j] - c[i * d + j]) * (z[j] - c[i * d + j]);
                        a += u;
                    }
                    if (metric)
                        a = 1.0 - a;
                    if (i == 0 || a < bv) {
                        bv = a;
                        best = i;
                    }
                }
                cr_assert_eq(got, best, "k=%d metric %d: %d vs %d (%s)", k, metric, got, best, kmeans_simd_name());
                cr_assert_eq(raw, bv);
            }
            free(c);
            free(zt);
        }
}

Test(kmeans_kernel, nearest_equals_a_scalar_scan) {
    check_nearest_scan("avx512"); /* the widest the CPU has */
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f"))
        cr_assert_str_eq(kmeans_simd_name(), "avx512f");
#endif
}

Test(kmeans_kernel, nearest_equals_a_scalar_scan_avx2) {
    check_nearest_scan("avx2");
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2"))
        cr_assert_str_eq(kmeans_simd_name(), "avx2");
#endif
}

Test(kmeans_kernel, nearest_equals_a_scalar_scan_baseline) {
    check_nearest_scan("baseline");
    cr_assert_str_eq(kmeans_simd_name(), "baseline");
}

Test(kmeans_snapshot, restore_is_bit_identical_with_evictions) {
    stream_cfg_t s = {SF ", window_end: long", "features: [x, y], k: 2, init_size: 6, scope: key, key: s, max_keys: 4",
                      gen_windows_7keys, 600, 40};
    check_identity(&s);
}
