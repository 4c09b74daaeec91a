/**
 * kmeans: streaming k-means over numeric feature expressions (DESIGN.md §7),
 * one model per task or one per key.
 *
 * Per model: the first `init_size` points are held back (with their records)
 * until k-means++ seeding and a few Lloyd iterations on them give model
 * version 1; then every held record is emitted with its assignment. After
 * that each record is assigned to the nearest centroid of the current model
 * and emitted at once, and it joins the open mini-batch; when the batch
 * closes (`batch: N` records, or `batch: window` when the input window
 * changes or the watermark passes its end) the model is updated with Spark
 * MLlib's rule c' = (c n a + sum x)/(n a + m), n' = n a + m, dead clusters are
 * re-seeded by splitting the largest, and the centroids are emitted on the
 * `centroids` port. See operators/kmeans/README.md and docs/kmeans.md.
 *
 * Output ports:
 *   0            the input record + `cluster` (long) + `distance` (double)
 *   1 centroids  [key,] model_version, k, centroids (JSON text: records have
 *                no array type yet), weights (JSON text), inertia_batch, reseeded
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "expr.h"
#include "key.h"
#include "keymap.h"
#include "numfmt.h"
#include "kmeans_model.h"
#include "operator.h"

#define KMEANS_SNAPSHOT_VERSION 2 /* 2 added per model the last update's inertia and re-seeds; 1 is still read */
#define KMEANS_MAX_K 4096
#define KMEANS_MAX_INIT (1 << 24)

typedef struct kmeans_conf {
    /* filled by the config map */
    int64_t k;
    double decay;     /* NAN when not given */
    double half_life; /* NAN when not given */
    const char *time_unit;
    const char *scope;
    const char *key_field; /* text of key: (an expression), NULL: the record key */
    bool standardize;
    int64_t init_size; /* -1: max(10 k, 100) */
    int64_t init_iterations;
    int64_t init_runs;
    int64_t seed;
    const char *distance;
    double dead_fraction;
    int64_t emit_every; /* emit_centroids_every */
    int64_t max_keys;   /* scope key: models per task at most (0 = no limit) */
    /* compiled */
    int d;                   /* number of features */
    weir_expr_t **features;  /* d compiled expressions */
    int *feature_slot;       /* per feature: input slot when it is a bare numeric field, else -1 */
    bool all_fields;         /* every feature_slot >= 0: read slots, evaluate no expression */
    char **null_reason;      /* per feature: "null feature 'x'" (built once: no formatting per record) */
    char **nonfinite_reason; /* per feature: "non-finite feature 'x'" */
    int64_t batch_n;         /* > 0: records per batch; 0: batch by input window */
    int window_end_slot;     /* slot of window_end (batch: window), else -1 */
    bool per_key;            /* scope: key */
    weir_key_spec_t key;     /* scope key: the key (key.h: an expression; absent: the record key) */
    int nin;                 /* fields of the input row type */
    kmeans_params_t params;  /* what each model reads */
} kmeans_conf_t;

/* One model: the task's, or one key's; the value (a pointer) of its key in ctx->models. */
typedef struct km_slot {
    kmeans_model_t m;
    uint32_t id;         /* its id in ctx->models: the key bytes are there (ids are reused after an eviction:
                            not an order) */
    weir_record_t *held; /* records waiting for initialisation (up to init_size; room grown by doubling) */
    int nheld, held_cap;
    int64_t max_ts; /* latest event time seen by this model */
    bool win_set;   /* batch: window: the open batch has a window_end */
    int64_t win_end;
    bool pending;        /* in ctx->pending */
    double last_inertia; /* inertia_batch and re-seeds of the latest update (emit_centroids_every > 1) */
    int last_reseeded;
} km_slot_t;

typedef struct kmeans_ctx {
    const weir_plan_t *plan;
    const kmeans_conf_t *conf;
    weir_keymap_t models; /* key bytes -> km_slot_t * (owned), creation order; scope task: one, under "" */
    km_slot_t **pending;  /* batch: window: models with an open windowed batch, in order */
    int npending, pending_cap;
    int64_t pending_min;       /* <= every pending win_end (lower bound; O(1) watermark check) */
    double *x;                 /* d raw features of the record in hand */
    weir_record_t out;         /* port 0, reused */
    weir_record_t cent;        /* port 1, reused */
    weir_buf_t cbuf, wbuf;     /* JSON text of centroids and weights, reused */
    weir_arena_t scratch;      /* string temporaries of feature expressions */
    char keybuf[WEIR_KEY_BUF]; /* a number key as text */
    uint64_t reseeds;          /* dead clusters re-seeded, all models */
    uint64_t keys_evicted;     /* models evicted by max_keys (this task, since start) */
    bool bounded;              /* scope key with max_keys: keep ctx->models in LRU order */
} kmeans_ctx_t;

static const weir_config_map_t kmeans_config_map[] = {
    {WEIR_CM_CUSTOM, "features", NULL, true, 0, "list of numeric fields or expressions: the feature vector"},
    {WEIR_CM_LONG, "k", NULL, true, offsetof(kmeans_conf_t, k), "number of clusters (>= 1)"},
    {WEIR_CM_DOUBLE, "decay", NULL, false, offsetof(kmeans_conf_t, decay),
     "forgetfulness a in (0, 1] per time unit (Spark MLlib's decayFactor); default 1 = no forgetting"},
    {WEIR_CM_DOUBLE, "half_life", NULL, false, offsetof(kmeans_conf_t, half_life),
     "instead of decay: time units after which a point's weight halves (a = 0.5^(1/half_life))"},
    {WEIR_CM_STR, "time_unit", "batches", false, offsetof(kmeans_conf_t, time_unit),
     "unit of decay and half_life: batches (a per update) or points (a^m for m points)"},
    {WEIR_CM_CUSTOM, "batch", NULL, false, 0,
     "N (update every N records of a model) or window (update when the input window_end changes or "
     "the watermark passes it); default window when the input has window_end, else 100"},
    {WEIR_CM_STR, "scope", NULL, false, offsetof(kmeans_conf_t, scope),
     "global (one model over every record: the engine routes them through a one-partition repartition; the "
     "default without key), key (one model per key; the default with key) or task (one model per input "
     "partition: partial models, no repartition)"},
    {WEIR_CM_STR, "key", NULL, false, offsetof(kmeans_conf_t, key_field),
     "expression naming the model's key (a field name is one); implies scope key; scope key without it: the "
     "record key; null: dead-lettered"},
    {WEIR_CM_BOOL, "standardize", "false", false, offsetof(kmeans_conf_t, standardize),
     "scale features by their running standard deviation"},
    {WEIR_CM_LONG, "init_size", NULL, false, offsetof(kmeans_conf_t, init_size),
     "points buffered for k-means++ initialisation; default max(10 k, 100)"},
    {WEIR_CM_LONG, "init_iterations", "100", false, offsetof(kmeans_conf_t, init_iterations),
     "at most this many Lloyd iterations on the init buffer after each seeding (stops when stable)"},
    {WEIR_CM_LONG, "init_runs", "10", false, offsetof(kmeans_conf_t, init_runs),
     "k-means++ seedings of the init buffer; the lowest inertia wins (scikit-learn's n_init)"},
    {WEIR_CM_LONG, "seed", "1", false, offsetof(kmeans_conf_t, seed), "random seed (k-means++)"},
    {WEIR_CM_STR, "distance", "euclidean", false, offsetof(kmeans_conf_t, distance), "euclidean or cosine"},
    {WEIR_CM_DOUBLE, "dead_fraction", "1e-8", false, offsetof(kmeans_conf_t, dead_fraction),
     "a cluster whose weight falls below this fraction of the largest is re-seeded"},
    {WEIR_CM_LONG, "emit_centroids_every", "1", false, offsetof(kmeans_conf_t, emit_every),
     "emit the model on the centroids port after every N-th update (and version 1, and the final model at end "
     "of input); default 1 = after every update"},
    {WEIR_CM_LONG, "max_keys", "1000000", false, offsetof(kmeans_conf_t, max_keys),
     "scope key: models per task at most; a new key beyond it evicts the least recently updated model, "
     "flushed first as at end of input (its final model on the centroids port) (0 = no limit)"},
    {0},
};

/* ---- compile time ---- */

static void kmeans_plan_destroy(void *p) {
    kmeans_conf_t *conf = p;
    if (!conf)
        return;
    for (int i = 0; i < conf->d; i++) {
        weir_expr_destroy(conf->features[i]);
        free(conf->null_reason[i]);
        free(conf->nonfinite_reason[i]);
    }
    free(conf->features);
    free(conf->feature_slot);
    free(conf->null_reason);
    free(conf->nonfinite_reason);
    weir_key_spec_free(&conf->key);
}

static char *str_printf(const char *fmt, const char *arg) {
    size_t n = strlen(fmt) + strlen(arg) + 1;
    char *s = weir_malloc(n);
    snprintf(s, n, fmt, arg);
    return s;
}

static const weir_cfg_t *at_key(const weir_plan_t *plan, const char *key) {
    const weir_cfg_t *c = weir_cfg_get(plan->cfg, key);
    return c ? c : plan->cfg;
}

static int configure_features(weir_plan_t *plan, kmeans_conf_t *conf, char *errstr, size_t errstr_size) {
    const weir_cfg_t *f = weir_cfg_get(plan->cfg, "features");
    if (f->kind != WEIR_CFG_SEQ || f->n == 0)
        return weir_cfg_error(f, errstr, errstr_size,
                              "node '%s': features: expected a non-empty list of numeric fields or expressions",
                              plan->name);
    size_t n = f->n;
    conf->features = weir_calloc(n, sizeof(*conf->features));
    conf->feature_slot = weir_calloc(n, sizeof(int));
    conf->null_reason = weir_calloc(n, sizeof(char *));
    conf->nonfinite_reason = weir_calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const weir_cfg_t *item = f->items[i];
        char key[64];
        snprintf(key, sizeof(key), "features[%zu]", i);
        weir_expr_t *e = weir_plan_expr(plan, item, key, plan->input, errstr, errstr_size);
        if (!e)
            return WEIR_ERR;
        conf->features[conf->d] = e;
        conf->null_reason[conf->d] = str_printf("null feature '%s'", item->scalar);
        conf->nonfinite_reason[conf->d] = str_printf("non-finite feature '%s'", item->scalar);
        conf->d++;
        weir_type_t t = weir_expr_type(e);
        if (t != WEIR_LONG && t != WEIR_DOUBLE)
            return weir_cfg_error(item, errstr, errstr_size,
                                  "node '%s': %s: '%s' is %s; features must be numeric (long or double)", plan->name,
                                  key, item->scalar, weir_type_name(t));
        int slot = weir_rowtype_find(plan->input, item->scalar);
        conf->feature_slot[i] = slot;
    }
    conf->all_fields = true;
    for (int i = 0; i < conf->d; i++)
        conf->all_fields &= conf->feature_slot[i] >= 0;
    return WEIR_OK;
}

static int configure_batch(weir_plan_t *plan, kmeans_conf_t *conf, char *errstr, size_t errstr_size) {
    const weir_cfg_t *b = weir_cfg_get(plan->cfg, "batch");
    int we = weir_rowtype_find(plan->input, "window_end");
    bool has_we = we >= 0 && plan->input->fields[we].type == WEIR_LONG;
    conf->window_end_slot = -1;
    if (!b) {
        conf->batch_n = has_we ? 0 : 100;
    } else if (b->kind == WEIR_CFG_SCALAR && !strcmp(b->scalar, "window")) {
        if (!has_we)
            return weir_cfg_error(b, errstr, errstr_size,
                                  "node '%s': batch: window needs an input with a long 'window_end' field "
                                  "(the output of a window node); use batch: N to update every N records",
                                  plan->name);
        conf->batch_n = 0;
    } else {
        if (weir_cfg_as_long(b, &conf->batch_n, errstr, errstr_size))
            return weir_cfg_error(b, errstr, errstr_size, "node '%s': batch: expected a number of records or 'window'",
                                  plan->name);
        if (conf->batch_n < 1)
            return weir_cfg_error(b, errstr, errstr_size, "node '%s': batch: must be >= 1", plan->name);
    }
    if (conf->batch_n == 0)
        conf->window_end_slot = we;
    return WEIR_OK;
}

/* Before the engine applies kmeans_config_map: "not given" for the keys without a default. */
static void kmeans_conf_init(void *p) {
    kmeans_conf_t *conf = p;
    conf->decay = NAN;
    conf->half_life = NAN;
    conf->init_size = -1;
}

static int kmeans_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    kmeans_conf_t *conf = plan->conf;
    conf->nin = plan->input->nfields;
    if (conf->k < 1 || conf->k > KMEANS_MAX_K)
        return weir_cfg_error(at_key(plan, "k"), errstr, errstr_size,
                              "node '%s': k: must be between 1 and %d, got %lld", plan->name, KMEANS_MAX_K,
                              (long long)conf->k);
    if (configure_features(plan, conf, errstr, errstr_size))
        return WEIR_ERR;
    if (!isnan(conf->decay) && !isnan(conf->half_life))
        return weir_cfg_error(at_key(plan, "half_life"), errstr, errstr_size,
                              "node '%s': give either decay or half_life, not both", plan->name);
    if (!isnan(conf->decay) && !(conf->decay > 0.0 && conf->decay <= 1.0))
        return weir_cfg_error(at_key(plan, "decay"), errstr, errstr_size, "node '%s': decay: must be in (0, 1], got %g",
                              plan->name, conf->decay);
    if (!isnan(conf->half_life) && !(conf->half_life > 0.0))
        return weir_cfg_error(at_key(plan, "half_life"), errstr, errstr_size, "node '%s': half_life: must be > 0",
                              plan->name);
    double a = !isnan(conf->decay) ? conf->decay : !isnan(conf->half_life) ? pow(0.5, 1.0 / conf->half_life) : 1.0;
    bool per_point;
    if (!strcmp(conf->time_unit, "batches"))
        per_point = false;
    else if (!strcmp(conf->time_unit, "points"))
        per_point = true;
    else
        return weir_cfg_error(at_key(plan, "time_unit"), errstr, errstr_size,
                              "node '%s': time_unit: expected batches or points, got '%s'", plan->name,
                              conf->time_unit);
    if (configure_batch(plan, conf, errstr, errstr_size))
        return WEIR_ERR;
    if (!conf->scope)
        conf->scope = conf->key_field ? "key" : "global";
    if (!strcmp(conf->scope, "key"))
        conf->per_key = true;
    else if (strcmp(conf->scope, "task") && strcmp(conf->scope, "global"))
        return weir_cfg_error(at_key(plan, "scope"), errstr, errstr_size,
                              "node '%s': scope: expected global, key or task, got '%s'", plan->name, conf->scope);
    if (conf->key_field && !conf->per_key)
        return weir_cfg_error(at_key(plan, "key"), errstr, errstr_size,
                              "node '%s': key: needs scope: key (scope is %s)", plan->name, conf->scope);
    if (conf->per_key && weir_key_spec_init(&conf->key, plan, errstr, errstr_size))
        return WEIR_ERR;
    /* what the engine must guarantee about the records reaching the node */
    plan->partitioning = conf->per_key                   ? WEIR_PART_KEY
                         : strcmp(conf->scope, "global") ? WEIR_PART_ANY
                                                         : WEIR_PART_GLOBAL;
    plan->key = conf->per_key ? &conf->key : NULL;
    if (conf->init_size < 0)
        conf->init_size = conf->k * 10 > 100 ? conf->k * 10 : 100;
    if (conf->init_size < conf->k || conf->init_size > KMEANS_MAX_INIT)
        return weir_cfg_error(at_key(plan, "init_size"), errstr, errstr_size,
                              "node '%s': init_size: must be between k (%lld) and %d", plan->name, (long long)conf->k,
                              KMEANS_MAX_INIT);
    if (conf->max_keys < 0 || conf->max_keys > UINT32_MAX / 2)
        return weir_cfg_error(at_key(plan, "max_keys"), errstr, errstr_size,
                              "node '%s': max_keys: must be between 0 (no limit) and %u", plan->name, UINT32_MAX / 2);
    if (conf->init_iterations < 0 || conf->init_iterations > 10000)
        return weir_cfg_error(at_key(plan, "init_iterations"), errstr, errstr_size,
                              "node '%s': init_iterations: must be between 0 and 10000", plan->name);
    if (conf->init_runs < 1 || conf->init_runs > 1000)
        return weir_cfg_error(at_key(plan, "init_runs"), errstr, errstr_size,
                              "node '%s': init_runs: must be between 1 and 1000", plan->name);
    kmeans_metric_t metric;
    if (!strcmp(conf->distance, "euclidean"))
        metric = KMEANS_EUCLIDEAN;
    else if (!strcmp(conf->distance, "cosine"))
        metric = KMEANS_COSINE;
    else
        return weir_cfg_error(at_key(plan, "distance"), errstr, errstr_size,
                              "node '%s': distance: expected euclidean or cosine, got '%s'", plan->name,
                              conf->distance);
    if (!(conf->dead_fraction >= 0.0 && conf->dead_fraction < 1.0))
        return weir_cfg_error(at_key(plan, "dead_fraction"), errstr, errstr_size,
                              "node '%s': dead_fraction: must be in [0, 1)", plan->name);
    if (conf->emit_every < 1)
        return weir_cfg_error(at_key(plan, "emit_centroids_every"), errstr, errstr_size,
                              "node '%s': emit_centroids_every: must be >= 1", plan->name);
    conf->params = (kmeans_params_t){
        .k = (int)conf->k,
        .d = conf->d,
        .metric = metric,
        .standardize = conf->standardize,
        .decay = a,
        .decay_per_point = per_point,
        .dead_fraction = conf->dead_fraction,
        .init_size = (int)conf->init_size,
        .init_iterations = (int)conf->init_iterations,
        .init_runs = (int)conf->init_runs,
    };
    /* Port 0: the input + cluster + distance. */
    plan->nports = 2;
    weir_rowtype_t *out = weir_rowtype_clone(plan->input);
    plan->ports[0].rt = out;
    static const char *const added[] = {"cluster", "distance"};
    for (int i = 0; i < 2; i++)
        if (weir_rowtype_add(out, added[i], i ? WEIR_DOUBLE : WEIR_LONG, false) < 0)
            return weir_cfg_error(plan->cfg, errstr, errstr_size,
                                  "node '%s': the input already has a field named '%s'; drop or rename it with a "
                                  "map node first",
                                  plan->name, added[i]);
    /* Port 1: the model after every update. */
    weir_rowtype_t *c = weir_rowtype_new();
    plan->ports[1].suffix = "centroids";
    plan->ports[1].rt = c;
    if (conf->per_key)
        weir_rowtype_add(c, "key", WEIR_STRING, true);
    weir_rowtype_add(c, "model_version", WEIR_LONG, false);
    weir_rowtype_add(c, "k", WEIR_LONG, false);
    weir_rowtype_add(c, "centroids", WEIR_STRING, false);
    weir_rowtype_add(c, "weights", WEIR_STRING, false);
    weir_rowtype_add(c, "inertia_batch", WEIR_DOUBLE, false);
    weir_rowtype_add(c, "reseeded", WEIR_LONG, false);
    return WEIR_OK;
}

static void kmeans_describe(const weir_plan_t *plan, FILE *fp) {
    const kmeans_conf_t *conf = plan->conf;
    const kmeans_params_t *p = &conf->params;
    fprintf(fp, "    features (%d): ", conf->d);
    for (int i = 0; i < conf->d; i++) {
        fprintf(fp, "%s", i ? ", " : "");
        weir_expr_print(conf->features[i], plan->input, fp);
    }
    fprintf(fp, "\n    k %d, %s distance%s, decay %.17g per %s, ", p->k,
            p->metric == KMEANS_COSINE ? "cosine" : "euclidean", p->standardize ? " (standardized)" : "", p->decay,
            p->decay_per_point ? "point" : "batch");
    if (conf->batch_n)
        fprintf(fp, "batch every %lld records", (long long)conf->batch_n);
    else
        fprintf(fp, "batch per input window (window_end#%d)", conf->window_end_slot);
    fprintf(fp, "\n    scope %s", conf->scope);
    if (conf->key.expr && conf->key.slot >= 0)
        fprintf(fp, " from field %s", plan->input->fields[conf->key.slot].name);
    else if (conf->key.expr) {
        fprintf(fp, " from ");
        weir_expr_print(conf->key.expr, plan->input, fp);
    }
    fprintf(fp, ", init %d points, %d k-means++ runs + <= %d Lloyd iterations, seed %lld, dead fraction %g\n",
            p->init_size, p->init_runs, p->init_iterations, (long long)conf->seed, p->dead_fraction);
}

/* ---- models and the key map ---- */

/* FNV-1a of the key bytes: only the per-key seed derivation (kept so that every key's random stream, hence its
 * k-means++ seeding, is what it was); the map hashes with weir_keymap_hash. */
static uint64_t key_seed_hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static inline km_slot_t *slot_at(const kmeans_ctx_t *ctx, uint32_t id) {
    return *(km_slot_t **)weir_keymap_val(&ctx->models, id);
}

/* The key bytes of a model (NUL-terminated; scope task: ""). */
static inline const char *slot_key(const kmeans_ctx_t *ctx, const km_slot_t *s, size_t *n) {
    return weir_keymap_key(&ctx->models, s->id, n);
}

/* A new model under key bytes that are not in ctx->models yet. */
static km_slot_t *slot_add(kmeans_ctx_t *ctx, const char *key, size_t key_len, uint64_t h) {
    const kmeans_conf_t *conf = ctx->conf;
    km_slot_t *s = weir_calloc(1, sizeof(*s));
    s->id = weir_keymap_add(&ctx->models, key, key_len, h);
    *(km_slot_t **)weir_keymap_val(&ctx->models, s->id) = s;
    s->max_ts = WEIR_TS_NONE;
    /* Each key gets its own deterministic stream: the seed mixed with the key's hash. */
    uint64_t seed = (uint64_t)conf->seed;
    if (conf->per_key)
        seed = kmeans_splitmix64(seed ^ key_seed_hash(key, key_len));
    kmeans_model_init(&s->m, &conf->params, seed);
    return s;
}

static void slot_free_held(km_slot_t *s) {
    if (!s->held)
        return;
    for (int i = 0; i < s->nheld; i++)
        weir_record_free(&s->held[i]);
    free(s->held);
    s->held = NULL;
    s->nheld = 0;
    s->held_cap = 0;
}

static void slot_free_val(void *val, void *arg) {
    (void)arg;
    km_slot_t *s = *(km_slot_t **)val;
    if (!s)
        return;
    kmeans_model_free(&s->m);
    slot_free_held(s);
    free(s);
}

static void slot_evict(kmeans_ctx_t *ctx, weir_emitter_t *em, km_slot_t *s);

/* A model for a new key, evicting the least recently updated ones first while max_keys is reached
 * (the flush may evaluate expressions in ctx->scratch, where the key bytes may live: copied first). */
static km_slot_t *slot_add_bounded(kmeans_ctx_t *ctx, weir_emitter_t *em, const char *kp, size_t kn, uint64_t h) {
    uint64_t max = (uint64_t)ctx->conf->max_keys;
    if (!ctx->bounded || weir_keymap_count(&ctx->models) < max)
        return slot_add(ctx, kp, kn, h);
    char *copy = weir_malloc(kn + 1);
    memcpy(copy, kp, kn);
    while (weir_keymap_count(&ctx->models) >= max)
        slot_evict(ctx, em, slot_at(ctx, weir_keymap_first(&ctx->models)));
    km_slot_t *s = slot_add(ctx, copy, kn, h);
    free(copy);
    return s;
}

/* The model of a record in *out. @returns NULL, or the reason to reject the record (its key is null). */
static const char *slot_for(kmeans_ctx_t *ctx, const weir_record_t *in, km_slot_t **out, weir_emitter_t *em) {
    const kmeans_conf_t *conf = ctx->conf;
    if (!conf->per_key) {
        *out = slot_at(ctx, 0);
        return NULL;
    }
    const char *kp;
    size_t kn;
    const char *why = weir_key_eval(&conf->key, in, &ctx->scratch, ctx->keybuf, &kp, &kn);
    if (!why) {
        uint64_t h = weir_keymap_hash(kp, kn);
        uint32_t id = weir_keymap_find(&ctx->models, kp, kn, h);
        if (id == WEIR_KEYMAP_NONE) {
            *out = slot_add_bounded(ctx, em, kp, kn, h);
        } else {
            if (ctx->bounded)
                weir_keymap_touch(&ctx->models, id);
            *out = slot_at(ctx, id);
        }
    }
    if (ctx->scratch.head)
        weir_arena_reset(&ctx->scratch);
    return why;
}

/* ---- run time ---- */

static void ctx_clear_models(kmeans_ctx_t *ctx) {
    weir_keymap_clear(&ctx->models, slot_free_val, NULL);
    ctx->npending = 0;
    ctx->pending_min = INT64_MAX;
}

static void ctx_reset_models(kmeans_ctx_t *ctx) {
    ctx_clear_models(ctx);
    if (!ctx->conf->per_key)
        slot_add(ctx, "", 0, weir_keymap_hash("", 0));
}

static void *kmeans_init(const weir_plan_t *plan) {
    kmeans_ctx_t *ctx = weir_calloc(1, sizeof(*ctx));
    ctx->plan = plan;
    ctx->conf = plan->conf;
    ctx->x = weir_calloc((size_t)ctx->conf->d, sizeof(double));
    ctx->bounded = ctx->conf->per_key && ctx->conf->max_keys > 0;
    weir_record_init(&ctx->out, plan->ports[0].rt);
    ctx->out.v[ctx->conf->nin] = weir_v_long(0);       /* cluster */
    ctx->out.v[ctx->conf->nin + 1] = weir_v_double(0); /* distance */
    weir_record_init(&ctx->cent, plan->ports[1].rt);
    ctx->pending_min = INT64_MAX;
    weir_keymap_init(&ctx->models, sizeof(km_slot_t *));
    ctx_reset_models(ctx);
    return ctx;
}

static void kmeans_destroy(void *vctx) {
    kmeans_ctx_t *ctx = vctx;
    if (!ctx)
        return;
    weir_keymap_free(&ctx->models, slot_free_val, NULL);
    free(ctx->pending);
    free(ctx->x);
    weir_record_free(&ctx->out);
    weir_record_free(&ctx->cent);
    weir_buf_free(&ctx->cbuf);
    weir_buf_free(&ctx->wbuf);
    weir_arena_free(&ctx->scratch);
    free(ctx);
}

static void emit_assignment(kmeans_ctx_t *ctx, weir_emitter_t *em, const weir_record_t *in, int cluster,
                            double distance) {
    const int nin = ctx->conf->nin;
    weir_record_t *out = &ctx->out;
    memcpy(out->v, in->v, (size_t)nin * sizeof(weir_value_t));
    /* The types of the two appended values were set once (kmeans_init); only the payloads change. Assigning
     * whole weir_value_t literals went through a stack temporary (a store-forwarding stall each). */
    out->v[nin].u.i = cluster;
    out->v[nin + 1].u.d = distance;
    out->key = in->key;
    out->key_len = in->key_len;
    out->ts = in->ts;
    out->topic = in->topic;
    out->partition = in->partition;
    out->offset = in->offset;
    weir_emit(em, 0, out);
}

/* Append `[v0,v1,...]` (shortest round-trip numbers) to b. */
static void put_numbers(weir_buf_t *b, const double *v, int n) {
    weir_buf_reserve(b, (size_t)n * (WEIR_FMT_DOUBLE_MAX + 1) + 2);
    char *o = (char *)b->p + b->len, *start = o;
    *o++ = '[';
    for (int i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        o += weir_fmt_double(v[i], o);
    }
    *o++ = ']';
    b->len += (size_t)(o - start);
}

static void emit_centroids(kmeans_ctx_t *ctx, weir_emitter_t *em, km_slot_t *s, double inertia, int reseeded) {
    const kmeans_params_t *p = &ctx->conf->params;
    weir_buf_reset(&ctx->cbuf);
    weir_buf_reset(&ctx->wbuf);
    weir_buf_putc(&ctx->cbuf, '[');
    for (int c = 0; c < p->k; c++) {
        if (c)
            weir_buf_putc(&ctx->cbuf, ',');
        put_numbers(&ctx->cbuf, s->m.c + (size_t)c * (size_t)p->d, p->d);
    }
    weir_buf_putc(&ctx->cbuf, ']');
    put_numbers(&ctx->wbuf, s->m.w, p->k);
    weir_record_t *r = &ctx->cent;
    int f = 0;
    size_t kn;
    const char *kb = slot_key(ctx, s, &kn);
    if (ctx->conf->per_key)
        r->v[f++] = weir_v_str(kb, kn);
    r->v[f++] = weir_v_long(s->m.version);
    r->v[f++] = weir_v_long(p->k);
    r->v[f++] = weir_v_str((const char *)ctx->cbuf.p, ctx->cbuf.len);
    r->v[f++] = weir_v_str((const char *)ctx->wbuf.p, ctx->wbuf.len);
    r->v[f++] = weir_v_double(inertia);
    r->v[f++] = weir_v_long(reseeded);
    r->key = ctx->conf->per_key ? kb : NULL;
    r->key_len = ctx->conf->per_key ? kn : 0;
    r->ts = s->max_ts;
    r->topic = NULL;
    r->partition = -1;
    r->offset = -1;
    weir_emit(em, 1, r);
}

/* Initialise a model from its buffer; emit version 1, then the held records. */
static void slot_initialize(kmeans_ctx_t *ctx, weir_emitter_t *em, km_slot_t *s) {
    double inertia = kmeans_model_initialize(&s->m);
    s->last_inertia = inertia;
    s->last_reseeded = 0;
    emit_centroids(ctx, em, s, inertia, 0);
    for (int i = 0; i < s->nheld; i++) {
        double dist;
        kmeans_model_project(&s->m, kmeans_model_init_point(&s->m, i));
        int c = kmeans_model_assign(&s->m, &dist);
        emit_assignment(ctx, em, &s->held[i], c, dist);
    }
    slot_free_held(s);
    kmeans_model_drop_init(&s->m);
}

/* Whether model_version v goes out on the centroids port (emit_centroids_every); the final one always does. */
static bool version_emitted(const kmeans_ctx_t *ctx, int64_t v) { return v == 1 || v % ctx->conf->emit_every == 0; }

static void slot_close_batch(kmeans_ctx_t *ctx, weir_emitter_t *em, km_slot_t *s) {
    if (!s->m.ready || s->m.bn == 0)
        return;
    double inertia = s->m.binertia;
    int reseeded = kmeans_model_update(&s->m);
    if (reseeded) {
        size_t kn;
        const char *kb = slot_key(ctx, s, &kn);
        bool keyed = ctx->conf->per_key;
        ctx->reseeds += (uint64_t)reseeded;
        weir_log(WEIR_LOG_INFO, "kmeans",
                 "node '%s'%s%.*s: re-seeded %d dead cluster%s by splitting the largest (model version %lld, "
                 "%llu re-seeds in this task)",
                 ctx->plan->name, keyed ? " key " : "", keyed ? (int)kn : 0, kb, reseeded, reseeded > 1 ? "s" : "",
                 (long long)s->m.version, (unsigned long long)ctx->reseeds);
    }
    s->last_inertia = inertia;
    s->last_reseeded = reseeded;
    if (version_emitted(ctx, s->m.version))
        emit_centroids(ctx, em, s, inertia, reseeded);
}

static void pending_add(kmeans_ctx_t *ctx, km_slot_t *s) {
    if (s->win_end < ctx->pending_min)
        ctx->pending_min = s->win_end;
    if (s->pending)
        return;
    if (ctx->npending == ctx->pending_cap) {
        ctx->pending_cap = ctx->pending_cap ? ctx->pending_cap * 2 : 8;
        ctx->pending = weir_realloc(ctx->pending, (size_t)ctx->pending_cap * sizeof(*ctx->pending));
    }
    ctx->pending[ctx->npending++] = s;
    s->pending = true;
}

/* Feature j's value f as a double in *x. @returns NULL or the reason to reject. */
static inline const char *feature_value(const kmeans_conf_t *conf, int j, const weir_value_t *f, double *x) {
    double xj;
    if (f->type == WEIR_DOUBLE)
        xj = f->u.d;
    else if (f->type == WEIR_LONG)
        xj = (double)f->u.i;
    else
        return conf->null_reason[j];
    if (!isfinite(xj))
        return conf->nonfinite_reason[j];
    *x = xj;
    return NULL;
}

/* Read the feature vector into ctx->x. @returns NULL or the reason to reject. */
static const char *read_features(kmeans_ctx_t *ctx, const weir_record_t *in) {
    const kmeans_conf_t *conf = ctx->conf;
    const int d = conf->d;
    double *restrict x = ctx->x;
    const weir_value_t *restrict v = in->v;
    if (conf->all_fields) {
        /* Every feature is a bare field: read the slots, no expression to evaluate. */
        const int *restrict slot = conf->feature_slot;
        for (int j = 0; j < d; j++) {
            const char *why = feature_value(conf, j, &v[slot[j]], &x[j]);
            if (why)
                return why;
        }
    } else {
        for (int j = 0; j < d; j++) {
            weir_value_t e;
            const weir_value_t *f;
            if (conf->feature_slot[j] >= 0) {
                f = &v[conf->feature_slot[j]];
            } else {
                weir_expr_eval(conf->features[j], in, &ctx->scratch, &e);
                f = &e;
            }
            const char *why = feature_value(conf, j, f, &x[j]);
            if (why)
                return why;
        }
        if (ctx->scratch.head)
            weir_arena_reset(&ctx->scratch);
    }
    if (conf->params.metric == KMEANS_COSINE) {
        double n2 = 0.0;
        for (int j = 0; j < d; j++)
            n2 += x[j] * x[j];
        if (!(n2 > 0.0))
            return "zero feature vector has no direction (distance: cosine)";
    }
    return NULL;
}

static void hold_record(kmeans_ctx_t *ctx, km_slot_t *s, const weir_record_t *in) {
    if (s->nheld == s->held_cap) {
        int init_size = ctx->conf->params.init_size, cap = s->held_cap ? 2 * s->held_cap : 4;
        s->held_cap = cap < init_size ? cap : init_size;
        s->held = weir_realloc(s->held, (size_t)s->held_cap * sizeof(weir_record_t));
    }
    weir_record_t *h = &s->held[s->nheld++];
    weir_record_init(h, ctx->plan->input);
    /* The topic is borrowed from the runtime: own it, the record may wait long. Compact: an arena chunk of
     * the bytes needed, not 4 KiB (a key explosion holds one record per key). */
    weir_record_copy_compact(h, in, in->topic);
}

static int kmeans_process(void *vctx, const weir_record_t *in, weir_emitter_t *em) {
    kmeans_ctx_t *ctx = vctx;
    const kmeans_conf_t *conf = ctx->conf;
    const char *why = read_features(ctx, in);
    if (why) {
        if (ctx->scratch.head)
            weir_arena_reset(&ctx->scratch);
        em->reject(em, in, why);
        return WEIR_OK;
    }
    km_slot_t *s;
    if ((why = slot_for(ctx, in, &s, em))) {
        em->reject(em, in, why);
        return WEIR_OK;
    }
    if (in->ts != WEIR_TS_NONE && (s->max_ts == WEIR_TS_NONE || in->ts > s->max_ts))
        s->max_ts = in->ts;
    kmeans_model_t *m = &s->m;
    if (!m->ready) {
        hold_record(ctx, s, in);
        if (kmeans_model_buffer(m, ctx->x))
            slot_initialize(ctx, em, s);
        return WEIR_OK;
    }
    if (conf->window_end_slot >= 0) {
        const weir_value_t *we = &in->v[conf->window_end_slot];
        if (we->type == WEIR_LONG) {
            /* A new window closes the batch of the previous one before this record is assigned. */
            if (s->win_set && we->u.i != s->win_end && m->bn > 0)
                slot_close_batch(ctx, em, s);
            s->win_set = true;
            s->win_end = we->u.i;
            pending_add(ctx, s);
        }
    }
    double dist;
    int c = kmeans_model_add(m, ctx->x, &dist);
    if (c < 0) {
        em->reject(em, in, "feature vector equals the running mean: no direction (distance: cosine)");
        return WEIR_OK;
    }
    emit_assignment(ctx, em, in, c, dist);
    if (conf->batch_n > 0 && m->bn >= (uint64_t)conf->batch_n)
        slot_close_batch(ctx, em, s);
    return WEIR_OK;
}

/* Evict a model (max_keys): flush it as end of input does (initialise it if it is still buffering, close its
 * batch, emit its final model on the centroids port), then forget its key. */
static void slot_evict(kmeans_ctx_t *ctx, weir_emitter_t *em, km_slot_t *s) {
    if (!s->m.ready && s->m.init_n > 0)
        slot_initialize(ctx, em, s);
    slot_close_batch(ctx, em, s);
    if (s->m.ready && !version_emitted(ctx, s->m.version))
        emit_centroids(ctx, em, s, s->last_inertia, s->last_reseeded);
    if (s->pending) {
        int keep = 0;
        for (int i = 0; i < ctx->npending; i++)
            if (ctx->pending[i] != s)
                ctx->pending[keep++] = ctx->pending[i];
        ctx->npending = keep;
    }
    uint32_t id = s->id;
    slot_free_val(weir_keymap_val(&ctx->models, id), NULL);
    weir_keymap_del(&ctx->models, id);
    if (weir_plan_count_evicted(ctx->plan, 1, &ctx->keys_evicted))
        weir_log(WEIR_LOG_WARN, "kmeans",
                 "node '%s': max_keys (%lld) reached: evicting the least recently updated models, each flushed "
                 "as at end of input (logged once; see weir_evicted_keys_total)",
                 ctx->plan->name, (long long)ctx->conf->max_keys);
}

static int kmeans_on_watermark(void *vctx, int64_t wm, weir_emitter_t *em) {
    kmeans_ctx_t *ctx = vctx;
    if (wm == WEIR_WM_END) {
        /* End of input: initialise models still buffering, close every open batch. */
        for (uint32_t id = weir_keymap_first(&ctx->models); id != WEIR_KEYMAP_NONE && !weir_stop;
             id = weir_keymap_next(&ctx->models, id)) {
            km_slot_t *s = slot_at(ctx, id);
            if (!s->m.ready && s->m.init_n > 0)
                slot_initialize(ctx, em, s);
            slot_close_batch(ctx, em, s);
            if (s->m.ready && !version_emitted(ctx, s->m.version)) /* the final model */
                emit_centroids(ctx, em, s, s->last_inertia, s->last_reseeded);
            s->win_set = false;
            s->pending = false;
        }
        ctx->npending = 0;
        ctx->pending_min = INT64_MAX;
        return WEIR_OK;
    }
    if (wm < ctx->pending_min)
        return WEIR_OK; /* the common case: O(1) */
    int keep = 0;
    int64_t min = INT64_MAX;
    for (int i = 0; i < ctx->npending; i++) {
        km_slot_t *s = ctx->pending[i];
        if (s->win_set && s->win_end <= wm) {
            slot_close_batch(ctx, em, s);
            s->win_set = false;
            s->pending = false;
            continue;
        }
        if (s->win_end < min)
            min = s->win_end;
        ctx->pending[keep++] = s;
    }
    ctx->npending = keep;
    ctx->pending_min = min;
    return WEIR_OK;
}

/* ---- snapshot ---- */

static void write_value(weir_writer_t *w, const weir_value_t *v) {
    weir_w_u8(w, (uint8_t)v->type);
    switch (v->type) {
    case WEIR_NULL: break;
    case WEIR_BOOL: weir_w_u8(w, v->u.b ? 1 : 0); break;
    case WEIR_LONG: weir_w_i64(w, v->u.i); break;
    case WEIR_DOUBLE: weir_w_f64(w, v->u.d); break;
    case WEIR_STRING:
    case WEIR_BYTES: weir_w_bytes(w, v->u.s.p, v->u.s.n); break;
    }
}

static void write_record(weir_writer_t *w, const weir_record_t *rec) {
    weir_w_u8(w, rec->key ? 1 : 0);
    weir_w_bytes(w, rec->key ? rec->key : "", rec->key ? rec->key_len : 0);
    weir_w_i64(w, rec->ts);
    weir_w_str(w, rec->topic);
    weir_w_u32(w, (uint32_t)rec->partition);
    weir_w_i64(w, rec->offset);
    weir_w_u32(w, (uint32_t)rec->rt->nfields);
    for (int i = 0; i < rec->rt->nfields; i++)
        write_value(w, &rec->v[i]);
}

static void read_record(weir_reader_t *r, weir_record_t *rec) {
    size_t n;
    bool has_key = weir_r_u8(r) != 0;
    const uint8_t *key = weir_r_bytes(r, &n);
    if (has_key && key) {
        rec->key = weir_arena_strndup(&rec->arena, (const char *)key, n);
        rec->key_len = n;
    }
    rec->ts = weir_r_i64(r);
    uint32_t tlen = weir_r_u32(r);
    if (tlen != 0xffffffffu) {
        const uint8_t *t = weir_r_raw(r, tlen);
        if (t)
            rec->topic = weir_arena_strndup(&rec->arena, (const char *)t, tlen);
    }
    rec->partition = (int32_t)weir_r_u32(r);
    rec->offset = weir_r_i64(r);
    uint32_t nf = weir_r_u32(r);
    if (r->err)
        return;
    if (nf != (uint32_t)rec->rt->nfields) {
        weir_r_fail(r, "held record has %u fields, the input has %d", nf, rec->rt->nfields);
        return;
    }
    for (int i = 0; i < rec->rt->nfields && !r->err; i++) {
        weir_type_t t = (weir_type_t)weir_r_u8(r);
        if (t != WEIR_NULL && t != rec->rt->fields[i].type) {
            weir_r_fail(r, "held record field '%s' is %s in the snapshot, %s in the pipeline", rec->rt->fields[i].name,
                        weir_type_name(t), weir_type_name(rec->rt->fields[i].type));
            return;
        }
        weir_value_t *v = &rec->v[i];
        v->type = t;
        switch (t) {
        case WEIR_NULL: break;
        case WEIR_BOOL: v->u.b = weir_r_u8(r) != 0; break;
        case WEIR_LONG: v->u.i = weir_r_i64(r); break;
        case WEIR_DOUBLE: v->u.d = weir_r_f64(r); break;
        case WEIR_STRING:
        case WEIR_BYTES: {
            const uint8_t *p = weir_r_bytes(r, &n);
            v->u.s.p = p ? weir_arena_strndup(&rec->arena, (const char *)p, n) : "";
            v->u.s.n = p ? n : 0;
            break;
        }
        }
    }
}

static int kmeans_snapshot(void *vctx, weir_writer_t *w) {
    kmeans_ctx_t *ctx = vctx;
    const kmeans_params_t *p = &ctx->conf->params;
    weir_w_frame_begin(w, "kmeans", KMEANS_SNAPSHOT_VERSION);
    /* What the state's shape depends on: restore refuses a different configuration. */
    weir_w_u32(w, (uint32_t)p->k);
    weir_w_u32(w, (uint32_t)p->d);
    weir_w_u8(w, (uint8_t)p->metric);
    weir_w_u8(w, p->standardize ? 1 : 0);
    weir_w_u8(w, ctx->conf->per_key ? 1 : 0);
    weir_w_u32(w, (uint32_t)p->init_size);
    weir_w_u64(w, ctx->reseeds);
    weir_w_u32(w, weir_keymap_count(&ctx->models));
    /* Models in the map's order (creation, or recency when bounded: a restore rebuilds it); pos[id] = position. */
    uint32_t *pos = weir_malloc(((size_t)ctx->models.used + 1) * sizeof(*pos)), npos = 0;
    for (uint32_t id = weir_keymap_first(&ctx->models); id != WEIR_KEYMAP_NONE;
         id = weir_keymap_next(&ctx->models, id)) {
        const km_slot_t *s = slot_at(ctx, id);
        pos[id] = npos++;
        size_t kn;
        const char *kb = slot_key(ctx, s, &kn);
        weir_w_u8(w, ctx->conf->per_key ? 1 : 0); /* "has a key": every model of scope key */
        weir_w_bytes(w, kb, kn);
        weir_w_i64(w, s->max_ts);
        weir_w_u8(w, s->win_set ? 1 : 0);
        weir_w_i64(w, s->win_end);
        weir_w_f64(w, s->last_inertia);
        weir_w_u32(w, (uint32_t)s->last_reseeded);
        kmeans_model_write(&s->m, w);
        weir_w_u32(w, (uint32_t)s->nheld);
        for (int h = 0; h < s->nheld; h++)
            write_record(w, &s->held[h]);
    }
    /* Pending windowed batches in order (their order is the order they close in). */
    weir_w_u32(w, (uint32_t)ctx->npending);
    for (int i = 0; i < ctx->npending; i++)
        weir_w_u32(w, pos[ctx->pending[i]->id]); /* its position in the order written above */
    free(pos);
    weir_w_i64(w, ctx->pending_min);
    weir_w_frame_end(w);
    return WEIR_OK;
}

static int restore_body(kmeans_ctx_t *ctx, weir_reader_t *r, uint16_t version) {
    const kmeans_params_t *p = &ctx->conf->params;
    uint32_t k = weir_r_u32(r), d = weir_r_u32(r);
    uint8_t metric = weir_r_u8(r), standardize = weir_r_u8(r), per_key = weir_r_u8(r);
    uint32_t init_size = weir_r_u32(r);
    if (r->err)
        return WEIR_ERR;
    if (k != (uint32_t)p->k || d != (uint32_t)p->d || metric != (uint8_t)p->metric ||
        standardize != (p->standardize ? 1 : 0) || per_key != (ctx->conf->per_key ? 1 : 0) ||
        init_size != (uint32_t)p->init_size) {
        weir_r_fail(r,
                    "snapshot was taken with k=%u, %u features, distance %s, standardize %u, scope %s, init_size %u; "
                    "the node now has k=%d, %d features, distance %s, standardize %d, scope %s, init_size %d",
                    k, d, metric ? "cosine" : "euclidean", standardize, per_key ? "key" : "task", init_size, p->k, p->d,
                    p->metric ? "cosine" : "euclidean", p->standardize, ctx->conf->per_key ? "key" : "task",
                    p->init_size);
        return WEIR_ERR;
    }
    ctx->reseeds = weir_r_u64(r);
    uint32_t nslots = weir_r_u32(r);
    if (r->err)
        return WEIR_ERR;
    if (!ctx->conf->per_key && nslots != 1) {
        weir_r_fail(r, "scope task snapshot holds %u models", nslots);
        return WEIR_ERR;
    }
    ctx_clear_models(ctx);
    for (uint32_t i = 0; i < nslots && !r->err; i++) {
        (void)weir_r_u8(r); /* has a key: version 2 of scope key wrote 0 for records without one: the key "" now */
        size_t n;
        const uint8_t *key = weir_r_bytes(r, &n);
        if (r->err)
            break;
        if (!ctx->conf->per_key)
            n = 0;
        uint64_t h = weir_keymap_hash(key, n);
        if (n > WEIR_KEYMAP_MAX_KEY || weir_keymap_find(&ctx->models, key, n, h) != WEIR_KEYMAP_NONE) {
            weir_r_fail(r, "model %u: bad or repeated key", i);
            break;
        }
        km_slot_t *s = slot_add(ctx, (const char *)key, n, h);
        s->max_ts = weir_r_i64(r);
        s->win_set = weir_r_u8(r) != 0;
        s->win_end = weir_r_i64(r);
        if (version >= 2) {
            s->last_inertia = weir_r_f64(r);
            s->last_reseeded = (int)weir_r_u32(r);
        } else {
            s->last_inertia = NAN; /* version 1 emitted every update: only emit_centroids_every > 1 reads it */
        }
        kmeans_model_read(&s->m, r);
        uint32_t nheld = weir_r_u32(r);
        if (r->err)
            break;
        if (nheld != (uint32_t)s->m.init_n) {
            weir_r_fail(r, "model %u holds %u records for %d buffered points", i, nheld, s->m.init_n);
            break;
        }
        if (nheld) {
            s->held = weir_calloc(nheld, sizeof(weir_record_t));
            s->held_cap = (int)nheld;
            for (uint32_t h = 0; h < nheld && !r->err; h++) {
                weir_record_init(&s->held[h], ctx->plan->input);
                s->nheld++;
                read_record(r, &s->held[h]);
            }
        }
    }
    uint32_t npending = weir_r_u32(r);
    for (uint32_t i = 0; i < npending && !r->err; i++) {
        uint32_t j = weir_r_u32(r);
        if (!r->err && (j >= weir_keymap_count(&ctx->models) || slot_at(ctx, j)->pending)) {
            weir_r_fail(r, "bad pending model index %u", j);
            break;
        }
        if (!r->err) {
            pending_add(ctx, slot_at(ctx, j));
        }
    }
    ctx->pending_min = weir_r_i64(r);
    if (!r->err && r->pos != r->len)
        weir_r_fail(r, "%zu unexpected bytes after the kmeans state", r->len - r->pos);
    return r->err ? WEIR_ERR : WEIR_OK;
}

static int kmeans_restore(void *vctx, weir_reader_t *r, char *errstr, size_t errstr_size) {
    kmeans_ctx_t *ctx = vctx;
    uint16_t version;
    weir_reader_t body;
    if (weir_r_frame_open(r, "kmeans", &version, &body))
        return weir_err(errstr, errstr_size, "node '%s': %s", ctx->plan->name, r->errstr);
    if (version < 1 || version > KMEANS_SNAPSHOT_VERSION)
        return weir_err(errstr, errstr_size,
                        "node '%s': unsupported kmeans snapshot version %u (this build reads versions 1 to %u)",
                        ctx->plan->name, version, KMEANS_SNAPSHOT_VERSION);
    if (restore_body(ctx, &body, version)) {
        ctx_reset_models(ctx); /* leave a usable, empty state behind */
        return weir_err(errstr, errstr_size, "node '%s': kmeans snapshot: %s", ctx->plan->name, body.errstr);
    }
    return WEIR_OK;
}

/* ---- state dump (`weir state dump`) ---- */

static void dump_model(const kmeans_ctx_t *ctx, uint32_t id, weir_buf_t *out) {
    const km_slot_t *s = slot_at(ctx, id);
    size_t kn;
    const char *kb = slot_key(ctx, s, &kn);
    const kmeans_model_t *m = &s->m;
    const kmeans_params_t *p = &ctx->conf->params;
    weir_buf_puts(out, "{\"key\":");
    if (ctx->conf->per_key)
        weir_json_append_str(out, kb, kn);
    else
        weir_buf_puts(out, "null");
    weir_buf_printf(out, ",\"ready\":%s,\"model_version\":%lld,\"k\":%d,\"centroids\":", m->ready ? "true" : "false",
                    (long long)m->version, p->k);
    if (m->ready) {
        weir_buf_putc(out, '[');
        for (int c = 0; c < p->k; c++) {
            if (c)
                weir_buf_putc(out, ',');
            put_numbers(out, m->c + (size_t)c * (size_t)p->d, p->d);
        }
        weir_buf_puts(out, "],\"weights\":");
        put_numbers(out, m->w, p->k);
    } else {
        weir_buf_puts(out, "null,\"weights\":null");
    }
    weir_buf_printf(out, ",\"init_buffered\":%d", m->ready ? 0 : m->init_n);
    if (p->standardize) {
        /* The merged scaler (what assignment uses); the open batch's statistics join it when the batch closes. */
        weir_buf_puts(out, ",\"scaler\":{\"mean\":");
        put_numbers(out, m->sc_mean, p->d);
        weir_buf_puts(out, ",\"var\":[");
        for (int j = 0; j < p->d; j++) {
            char num[WEIR_FMT_DOUBLE_MAX];
            if (j)
                weir_buf_putc(out, ',');
            double var = m->sc_n ? m->sc_m2[j] / (double)m->sc_n : 0.0;
            weir_buf_append(out, num, weir_fmt_double(var, num));
        }
        weir_buf_printf(out, "],\"n\":%llu}", (unsigned long long)m->sc_n);
    }
    weir_buf_printf(out, ",\"rng\":\"%016llx%016llx%016llx%016llx\"}", (unsigned long long)m->rng.s[0],
                    (unsigned long long)m->rng.s[1], (unsigned long long)m->rng.s[2], (unsigned long long)m->rng.s[3]);
}

/* {"models": [...sorted by key...], "reseeds": N}; read-only, O(state) (+ sorting the model pointers). */
static int kmeans_dump(void *vctx, weir_buf_t *out) {
    const kmeans_ctx_t *ctx = vctx;
    uint32_t *order = weir_keymap_sorted_ids(&ctx->models), n = weir_keymap_count(&ctx->models);
    weir_buf_puts(out, "{\"models\":[");
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            weir_buf_putc(out, ',');
        dump_model(ctx, order[i], out);
    }
    weir_buf_printf(out, "],\"reseeds\":%llu}", (unsigned long long)ctx->reseeds);
    free(order);
    return WEIR_OK;
}

const weir_operator_class_t weir_kmeans_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "kmeans",
    .description = "streaming k-means (k-means++ init, decayed mini-batch updates) per task or per key",
    .config_map = kmeans_config_map,
    .conf_size = sizeof(kmeans_conf_t),
    .conf_init = kmeans_conf_init,
    .configure = kmeans_configure,
    .plan_destroy = kmeans_plan_destroy,
    .describe = kmeans_describe,
    .init = kmeans_init,
    .process = kmeans_process,
    .on_watermark = kmeans_on_watermark,
    .snapshot = kmeans_snapshot,
    .restore = kmeans_restore,
    .destroy = kmeans_destroy,
    .dump = kmeans_dump,
};
