/**
 * window: tumbling, sliding and session windows on event time, per key
 * (DESIGN.md §4 and §7, issue 3). See README.md in this folder for the
 * semantics (boundaries, firing, lateness, early results) and the memory
 * per key and window.
 *
 * How a record flows:
 *   process(): event time -> late? (late output) -> key bytes -> hash probe
 *              -> pane (tumbling/sliding: width gcd(size, slide)) or session
 *              -> update the aggregates in place (no allocation)
 *              -> if the key's next fire time got earlier: push a timer.
 *   on_watermark(): pop every timer whose time <= watermark, in (time, key
 *              creation order); fire what is due for that key, reschedule it.
 *              Nothing due: one comparison with the heap's top.
 * Each record is aggregated once, into one pane, whatever size/slide is; a
 * sliding window is assembled when it fires from a per-key two-stacks cache
 * over the panes (slide_window), O(1) merges per window.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "window_int.h"

typedef struct window_ctx {
    const weir_plan_t *plan;
    const window_conf_t *conf;
    wstate_t st;           /* keys, panes/sessions, timers */
    int64_t wm;            /* last watermark seen (WINDOW_WM_NONE before any) */
    weir_record_t out;     /* reused for every emitted window */
    weir_arena_t scratch;  /* string temporaries of the key and argument expressions */
    weir_value_t *args;    /* per aggregate: the argument of the record in hand */
    wagg_state_t *acc;     /* per aggregate: a window merged from its panes */
    wslide_t *early_slide; /* sliding + early results: scratch two-stacks cache */
    int32_t *idx;          /* sliding: pane indices of a block being folded */
    size_t idx_cap;
    char keybuf[WEIR_KEY_BUF]; /* key bytes of a numeric or boolean key */
    char *id_prefix;           /* "<pipeline>/<node>/" of the output ids */
    size_t id_prefix_len;
    uint64_t late;          /* records later than allowed_lateness */
    uint64_t keys_rejected; /* records refused by max_open_windows (a key alone over it) */
    uint64_t keys_evicted;  /* keys evicted by max_keys / max_open_windows (this task, since start) */
    bool bounded;           /* max_keys or max_open_windows set: keep the keymap in LRU order */
    bool evicting;          /* emit_out: results of an evicted key (final false, id + "/evicted") */
} window_ctx_t;

static const weir_config_map_t window_config_map[] = {
    {WEIR_CM_STR, "type", "tumbling", false, offsetof(window_conf_t, type_src), "tumbling | sliding | session"},
    {WEIR_CM_DURATION, "size", NULL, false, offsetof(window_conf_t, size), "window length (tumbling, sliding)"},
    {WEIR_CM_DURATION, "slide", NULL, false, offsetof(window_conf_t, slide),
     "sliding: distance between window starts (<= size)"},
    {WEIR_CM_DURATION, "gap", NULL, false, offsetof(window_conf_t, gap),
     "session: a session closes after this much event time without a record"},
    {WEIR_CM_DURATION, "allowed_lateness", "0", false, offsetof(window_conf_t, lateness),
     "a window fires (final) when the watermark passes end + allowed_lateness"},
    {WEIR_CM_CUSTOM, "key", NULL, false, 0,
     "expression grouping the records (default: the record key; none: one group); null: dead-lettered"},
    {WEIR_CM_CUSTOM, "aggregate", NULL, true, 0,
     "map of output field -> count() | count(x) | sum(x) | mean(x) | min(x) | max(x) | stddev(x) | "
     "variance(x) | first(x) | last(x)"},
    {WEIR_CM_LONG, "max_keys", "5000000", false, offsetof(window_conf_t, max_keys),
     "keys with open windows per task at most; a new key beyond it evicts the least recently updated key, "
     "whose open windows are emitted at once (final: false, id + \"/evicted\") (0 = no limit)"},
    {WEIR_CM_LONG, "max_open_windows", "20000000", false, offsetof(window_conf_t, max_open_windows),
     "panes (tumbling, sliding) or sessions open per task at most; beyond it the least recently updated keys "
     "are evicted as for max_keys (0 = no limit)"},
    {WEIR_CM_BOOL, "emit_early", "false", false, offsetof(window_conf_t, emit_early),
     "with allowed_lateness > 0: emit at the window end (final: false), again for each late record, "
     "and final at end + allowed_lateness"},
    {WEIR_CM_BOOL, "count_nulls", "false", false, offsetof(window_conf_t, count_nulls),
     "add a field <name>_nulls per aggregate: the null values it skipped"},
    {0},
};

/* ---- time arithmetic (all values within +-2^62: no overflow) ---- */

static inline int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}
static inline int64_t align_down(int64_t t, int64_t step) { return floor_div(t, step) * step; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* Start of the last (latest) window containing t. */
static inline int64_t last_start(const window_conf_t *c, int64_t t) { return align_down(t, c->slide); }
/* Start of the first (earliest) window containing t. */
static inline int64_t first_start(const window_conf_t *c, int64_t t) {
    return align_down(t - c->size, c->slide) + c->slide;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ---- configuration ---- */

static void window_plan_destroy(void *p) {
    window_conf_t *conf = p;
    if (!conf)
        return;
    for (int i = 0; conf->aggs && i < conf->naggs; i++) {
        free(conf->aggs[i].arg_src);
        weir_expr_destroy(conf->aggs[i].arg);
    }
    free(conf->aggs);
    weir_key_spec_free(&conf->key);
}

static const char *const reserved_names[] = {"key", "window_start", "window_end", "last_ts", "final", "id"};

static bool is_reserved(const char *name) {
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(reserved_names); i++)
        if (!strcmp(reserved_names[i], name))
            return true;
    return false;
}

static int check_duration(const weir_plan_t *plan, const char *key, int64_t v, bool need, char *errstr,
                          size_t errstr_size) {
    const weir_cfg_t *at = weir_cfg_get(plan->cfg, key);
    if (!at && need)
        return weir_cfg_error(plan->cfg, errstr, errstr_size, "node '%s': window type needs '%s'", plan->name, key);
    if (at && !need)
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': '%s' does not apply to this window type", plan->name,
                              key);
    if (at && (v <= 0 || v > ((int64_t)1 << 50)))
        return weir_cfg_error(at, errstr, errstr_size, "node '%s': %s must be > 0 and at most 2^50 ms", plan->name,
                              key);
    return WEIR_OK;
}

/* Output row type: key, [key field], window_start, window_end, [last_ts], aggregates [+ _nulls], final, id. */
static int build_output(weir_plan_t *plan, window_conf_t *conf, const char *key_field, const weir_cfg_t *aggc,
                        char *errstr, size_t errstr_size) {
    weir_rowtype_t *rt = weir_rowtype_new();
    plan->ports[0].rt = rt;
    plan->ports[1].suffix = "late";
    plan->ports[1].rt = weir_rowtype_clone(plan->input);
    plan->nports = 2;
    conf->slot_key = weir_rowtype_add(rt, "key", WEIR_STRING, false);
    if (key_field && strcmp(key_field, "key")) {
        if (is_reserved(key_field))
            return weir_cfg_error(weir_cfg_get(plan->cfg, "key"), errstr, errstr_size,
                                  "node '%s': key field '%s' clashes with an output field of the window", plan->name,
                                  key_field);
        conf->key_out_slot = weir_rowtype_add(rt, key_field, conf->key.type, false);
    }
    conf->slot_start = weir_rowtype_add(rt, "window_start", WEIR_LONG, false);
    conf->slot_end = weir_rowtype_add(rt, "window_end", WEIR_LONG, false);
    if (conf->type == WINDOW_SESSION)
        conf->slot_last_ts = weir_rowtype_add(rt, "last_ts", WEIR_LONG, false);
    for (int i = 0; i < conf->naggs; i++) {
        wagg_spec_t *a = &conf->aggs[i];
        const weir_cfg_t *at = aggc->items[i];
        weir_type_t t;
        bool nullable;
        wagg_out_type(a, &t, &nullable);
        if (is_reserved(a->name) || (a->out_slot = weir_rowtype_add(rt, a->name, t, nullable)) < 0)
            return weir_cfg_error(at, errstr, errstr_size, "node '%s': aggregate.%s: output field '%s' already exists",
                                  plan->name, a->name, a->name);
        if (conf->count_nulls && a->arg) {
            char nn[300];
            snprintf(nn, sizeof(nn), "%s_nulls", a->name);
            if (is_reserved(nn) || (a->nulls_slot = weir_rowtype_add(rt, nn, WEIR_LONG, false)) < 0)
                return weir_cfg_error(at, errstr, errstr_size,
                                      "node '%s': aggregate.%s: output field '%s' already exists", plan->name, a->name,
                                      nn);
        }
    }
    conf->slot_final = weir_rowtype_add(rt, "final", WEIR_BOOL, false);
    conf->slot_id = weir_rowtype_add(rt, "id", WEIR_STRING, false);
    return WEIR_OK;
}

static int window_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    window_conf_t *conf = plan->conf; /* window_config_map applied by the engine */
    conf->key_out_slot = -1;
    conf->slot_last_ts = -1;
    const weir_cfg_t *type_at = weir_cfg_get(plan->cfg, "type");
    if (!strcmp(conf->type_src, "tumbling"))
        conf->type = WINDOW_TUMBLING;
    else if (!strcmp(conf->type_src, "sliding") || !strcmp(conf->type_src, "hopping"))
        conf->type = WINDOW_SLIDING;
    else if (!strcmp(conf->type_src, "session"))
        conf->type = WINDOW_SESSION;
    else
        return weir_cfg_error(type_at ? type_at : plan->cfg, errstr, errstr_size,
                              "node '%s': type: expected tumbling, sliding or session, got '%s'", plan->name,
                              conf->type_src);
    bool session = conf->type == WINDOW_SESSION;
    if (check_duration(plan, "size", conf->size, !session, errstr, errstr_size) ||
        check_duration(plan, "slide", conf->slide, conf->type == WINDOW_SLIDING, errstr, errstr_size) ||
        check_duration(plan, "gap", conf->gap, session, errstr, errstr_size))
        return WEIR_ERR;
    if (conf->lateness < 0 || conf->lateness > ((int64_t)1 << 50))
        return weir_cfg_error(weir_cfg_get(plan->cfg, "allowed_lateness"), errstr, errstr_size,
                              "node '%s': allowed_lateness must be >= 0 and at most 2^50 ms", plan->name);
    if (conf->max_keys < 0 || conf->max_keys > UINT32_MAX / 2)
        return weir_cfg_error(weir_cfg_get(plan->cfg, "max_keys"), errstr, errstr_size,
                              "node '%s': max_keys must be between 0 (no limit) and %u", plan->name, UINT32_MAX / 2);
    if (conf->max_open_windows < 0 || conf->max_open_windows > UINT32_MAX / 2)
        return weir_cfg_error(weir_cfg_get(plan->cfg, "max_open_windows"), errstr, errstr_size,
                              "node '%s': max_open_windows must be between 0 (no limit) and %u", plan->name,
                              UINT32_MAX / 2);
    if (conf->type == WINDOW_TUMBLING)
        conf->slide = conf->size;
    if (conf->type == WINDOW_SLIDING && conf->slide > conf->size)
        return weir_cfg_error(weir_cfg_get(plan->cfg, "slide"), errstr, errstr_size,
                              "node '%s': slide (%" PRId64 " ms) must not exceed size (%" PRId64 " ms)", plan->name,
                              conf->slide, conf->size);
    conf->pane = session ? 0 : gcd64(conf->size, conf->slide);
    if (!session && conf->size / conf->pane > WINDOW_MAX_PANES) {
        const weir_cfg_t *at = weir_cfg_get(plan->cfg, conf->type == WINDOW_SLIDING ? "slide" : "size");
        return weir_cfg_error(
            at ? at : plan->cfg, errstr, errstr_size,
            "node '%s': slide: size %" PRId64 " ms in panes of gcd(size, slide) = %" PRId64 " ms makes %" PRId64
            " panes per window (and up to %" PRId64 " windows per record); the limit is %d (docs/windows.md)",
            plan->name, conf->size, conf->pane, conf->size / conf->pane, conf->size / conf->slide, WINDOW_MAX_PANES);
    }
    conf->early = conf->emit_early && conf->lateness > 0;

    if (weir_key_spec_init(&conf->key, plan, errstr, errstr_size))
        return WEIR_ERR;
    plan->partitioning = WEIR_PART_KEY; /* every record of a key in one task */
    plan->key = &conf->key;
    const char *key_field = conf->key.slot >= 0 ? plan->input->fields[conf->key.slot].name : NULL;
    const weir_cfg_t *aggc = weir_cfg_get(plan->cfg, "aggregate");
    if (aggc->kind != WEIR_CFG_MAP || aggc->n == 0)
        return weir_cfg_error(aggc, errstr, errstr_size,
                              "node '%s': aggregate: expected a map of name: FUNCTION(expression)", plan->name);
    conf->aggs = weir_calloc(aggc->n, sizeof(*conf->aggs));
    for (size_t i = 0; i < aggc->n; i++) {
        aggc->used[i] = true;
        wagg_spec_t *a = &conf->aggs[i];
        conf->naggs = (int)i + 1;
        if (wagg_parse(plan, aggc->items[i], aggc->keys[i], a, errstr, errstr_size))
            return WEIR_ERR;
        a->arg_ref = (int)i;
        for (size_t j = 0; a->arg && j < i; j++)
            if (conf->aggs[j].arg && !strcmp(conf->aggs[j].arg_src, a->arg_src)) {
                a->arg_ref = (int)j;
                break;
            }
    }
    return build_output(plan, conf, key_field, aggc, errstr, errstr_size);
}

static void window_describe(const weir_plan_t *plan, FILE *fp) {
    const window_conf_t *c = plan->conf;
    static const char *const names[] = {"tumbling", "sliding", "session"};
    fprintf(fp, "    %s", names[c->type]);
    if (c->type != WINDOW_SESSION)
        fprintf(fp, " size %" PRId64 " ms", c->size);
    if (c->type == WINDOW_SLIDING)
        fprintf(fp, " slide %" PRId64 " ms (panes of %" PRId64 " ms)", c->slide, c->pane);
    if (c->type == WINDOW_SESSION)
        fprintf(fp, " gap %" PRId64 " ms", c->gap);
    fprintf(fp, ", allowed lateness %" PRId64 " ms%s, max_keys %" PRId64 ", max_open_windows %" PRId64 "\n",
            c->lateness, c->early ? ", early results" : "", c->max_keys, c->max_open_windows);
    fprintf(fp, "    key: ");
    if (c->key.expr)
        weir_expr_print(c->key.expr, plan->input, fp);
    else
        fprintf(fp, "(none: one group)");
    fprintf(fp, "\n");
    for (int i = 0; i < c->naggs; i++) {
        const wagg_spec_t *a = &c->aggs[i];
        fprintf(fp, "    %s#%d = %s(", a->name, a->out_slot, wagg_kind_name(a->kind));
        if (a->arg)
            weir_expr_print(a->arg, plan->input, fp);
        fprintf(fp, ")\n");
    }
}

/* ---- per-task state ---- */

static void *window_init(const weir_plan_t *plan) {
    window_ctx_t *ctx = weir_calloc(1, sizeof(*ctx));
    ctx->plan = plan;
    ctx->conf = plan->conf;
    wstate_init(&ctx->st, ctx->conf->naggs, ctx->conf->type == WINDOW_SLIDING);
    if (ctx->conf->type == WINDOW_SLIDING)
        ctx->early_slide = weir_calloc(1, ctx->st.slide_size);
    ctx->wm = WINDOW_WM_NONE;
    ctx->bounded = ctx->conf->max_keys || ctx->conf->max_open_windows;
    weir_record_init(&ctx->out, plan->ports[0].rt);
    ctx->id_prefix_len = strlen(plan->pipeline) + strlen(plan->name) + 2;
    ctx->id_prefix = weir_malloc(ctx->id_prefix_len + 1);
    snprintf(ctx->id_prefix, ctx->id_prefix_len + 1, "%s/%s/", plan->pipeline, plan->name);
    ctx->args = weir_calloc((size_t)ctx->conf->naggs + 1, sizeof(*ctx->args));
    ctx->acc = weir_calloc((size_t)ctx->conf->naggs + 1, sizeof(*ctx->acc));
    return ctx;
}

static void window_destroy(void *vctx) {
    window_ctx_t *ctx = vctx;
    if (!ctx)
        return;
    wstate_free(&ctx->st);
    weir_record_free(&ctx->out);
    weir_arena_free(&ctx->scratch);
    free(ctx->args);
    free(ctx->acc);
    free(ctx->early_slide);
    free(ctx->id_prefix);
    free(ctx->idx);
    free(ctx);
}

/* ---- emitting ---- */

/* The key under its own field name, typed, from its canonical bytes. */
static weir_value_t key_typed(const window_conf_t *c, const char *p, size_t n) {
    char buf[64];
    switch (c->key.type) {
    case WEIR_LONG:
    case WEIR_DOUBLE:
        if (n >= sizeof(buf))
            return weir_v_null();
        memcpy(buf, p, n);
        buf[n] = '\0';
        return c->key.type == WEIR_LONG ? weir_v_long(strtoll(buf, NULL, 10)) : weir_v_double(strtod(buf, NULL));
    case WEIR_BOOL: return weir_v_bool(n == 4);
    case WEIR_BYTES: {
        weir_value_t v = weir_v_str(p, n);
        v.type = WEIR_BYTES;
        return v;
    }
    default: return weir_v_str(p, n);
    }
}

/* The output values of aggregate a over a window of `rows` records: its result and,
 * if nulls is not NULL, the nulls it skipped (`<name>_nulls`). Shared by emit_out and
 * window_dump, so that a dump shows exactly what firing the window now would emit. */
static inline void agg_out(const wagg_spec_t *a, const wagg_state_t *s, int64_t rows, weir_value_t *res,
                           weir_value_t *nulls) {
    wagg_result(a, s, rows, res);
    if (nulls)
        *nulls = weir_v_long(rows - s->n);
}

#define EVICTED_SUFFIX "/evicted"

static void emit_out(window_ctx_t *ctx, uint32_t k, int64_t start, int64_t end, int64_t last_ts, int64_t rows,
                     const wagg_state_t *agg, bool final, weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    weir_record_t *o = &ctx->out;
    if (o->arena.head)
        weir_arena_reset(&o->arena);
    size_t kn;
    const char *kb = weir_keymap_key(&ctx->st.keys, k, &kn);
    o->v[c->slot_key] = weir_v_str(kb, kn);
    if (c->key_out_slot >= 0)
        o->v[c->key_out_slot] = key_typed(c, kb, kn);
    o->v[c->slot_start] = weir_v_long(start);
    o->v[c->slot_end] = weir_v_long(end);
    if (c->slot_last_ts >= 0)
        o->v[c->slot_last_ts] = weir_v_long(last_ts);
    for (int i = 0; i < c->naggs; i++) {
        const wagg_spec_t *a = &c->aggs[i];
        agg_out(a, &agg[i], rows, &o->v[a->out_slot], a->nulls_slot >= 0 ? &o->v[a->nulls_slot] : NULL);
    }
    o->v[c->slot_final] = weir_v_bool(final && !ctx->evicting);
    /* Deterministic id: pipeline/node/key/window_start (a replay re-emits the same ids);
     * "/evicted" after it for the partial result of an evicted key. */
    /* Hand-rolled (snprintf was ~10 % of the cost of an output at size/slide 60). */
    size_t cap = ctx->id_prefix_len + kn + 24 + sizeof(EVICTED_SUFFIX);
    char *id = weir_arena_alloc(&o->arena, cap), *q = id;
    memcpy(q, ctx->id_prefix, ctx->id_prefix_len);
    q += ctx->id_prefix_len;
    memcpy(q, kb, kn);
    q += kn;
    *q++ = '/';
    char digits[24];
    int nd = 0;
    uint64_t u = start < 0 ? 0 - (uint64_t)start : (uint64_t)start;
    do {
        digits[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (start < 0)
        *q++ = '-';
    while (nd)
        *q++ = digits[--nd];
    if (ctx->evicting) {
        memcpy(q, EVICTED_SUFFIX, sizeof(EVICTED_SUFFIX) - 1);
        q += sizeof(EVICTED_SUFFIX) - 1;
    }
    o->v[c->slot_id] = weir_v_str(id, (size_t)(q - id));
    o->key = kb;
    o->key_len = kn;
    o->ts = end - 1; /* the window's last instant, as Flink's maxTimestamp() */
    o->topic = NULL;
    o->partition = -1;
    o->offset = -1;
    weir_emit(em, 0, o);
}

/*
 * Sliding windows: two stacks over panes (README.md). Blocks of `size` are
 * aligned to the epoch; window [s, s + size) = front ⊕ back where
 *   front = suffix of block b0 = align(s, size) from the first pane >= s,
 *           right fold: suf(p) = p ⊕ suf(next pane in the block);
 *   back  = prefix of block b1 = b0 + size up to s + size, left fold.
 * Both are pure functions of the panes, so the cached values (suffixes in the
 * panes, the back in the key's wslide_t) are bit-identical to a recomputation:
 * a restored task (whose cache starts empty) emits exactly the same doubles.
 * Final windows fire in increasing s, so per key each pane is folded once into
 * the suffixes of its block and once into a back: O(1) merges per pane plus one
 * per window, whatever size/slide is. A record that lands in a cached range
 * (out of order beyond the watermark, or with allowed_lateness) invalidates it.
 */

/* Recompute the suffixes of block b0 from pane q (the first pane >= s) and reset
 * the back to the empty prefix of block b0 + size. */
static void slide_rebuild(window_ctx_t *ctx, wslide_t *sl, int32_t q, int64_t b0) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    int64_t b1 = b0 + c->size;
    size_t n = 0;
    int32_t i = q;
    for (; i >= 0 && wstate_win(st, i)->start < b1; i = wstate_win(st, i)->next) {
        if (n == ctx->idx_cap) {
            ctx->idx_cap = ctx->idx_cap ? ctx->idx_cap * 2 : 64;
            ctx->idx = weir_realloc(ctx->idx, ctx->idx_cap * sizeof(*ctx->idx));
        }
        ctx->idx[n++] = i;
    }
    const wagg_state_t *after = NULL; /* suffix of the following pane */
    int64_t after_rows = 0;
    while (n-- > 0) {
        wwin_t *w = wstate_win(st, ctx->idx[n]);
        wagg_state_t *suf = wstate_suf(st, w);
        memcpy(suf, w->agg, (size_t)c->naggs * sizeof(*suf));
        if (after)
            for (int a = 0; a < c->naggs; a++)
                wagg_merge(&c->aggs[a], &suf[a], &after[a]);
        after_rows += w->rows;
        *wstate_suf_rows(st, w) = after_rows;
        after = suf;
    }
    sl->fblk = b0;
    sl->bblk = b1;
    sl->bupto = b1;
    sl->brows = 0;
    sl->bnext = i;
    memset(sl->bagg, 0, (size_t)c->naggs * sizeof(*sl->bagg));
}

/* The aggregate of window [s, s + size) of key k into ctx->acc; @returns its rows.
 * `sl`: the key's cache (final windows, increasing s) or a scratch one (early windows). */
static int64_t slide_window(window_ctx_t *ctx, uint32_t k, wslide_t *sl, int64_t s) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    int64_t b0 = align_down(s, c->size), b1 = b0 + c->size, e = s + c->size;
    int32_t q = wstate_key(st, k)->head;
    while (q >= 0 && wstate_win(st, q)->start < s)
        q = wstate_win(st, q)->next;
    if (sl->fblk != b0 || sl->bblk != b1 || sl->bupto > e)
        slide_rebuild(ctx, sl, q, b0);
    while (sl->bnext >= 0) {
        wwin_t *w = wstate_win(st, sl->bnext);
        if (w->start >= e)
            break;
        sl->brows += w->rows;
        for (int a = 0; a < c->naggs; a++)
            wagg_merge(&c->aggs[a], &sl->bagg[a], &w->agg[a]);
        sl->bnext = w->next;
    }
    sl->bupto = e;
    int64_t rows = sl->brows;
    if (q >= 0 && wstate_win(st, q)->start < b1) {
        wwin_t *w = wstate_win(st, q);
        memcpy(ctx->acc, wstate_suf(st, w), (size_t)c->naggs * sizeof(*ctx->acc));
        rows += *wstate_suf_rows(st, w);
    } else {
        memset(ctx->acc, 0, (size_t)c->naggs * sizeof(*ctx->acc));
    }
    for (int a = 0; a < c->naggs; a++)
        wagg_merge(&c->aggs[a], &ctx->acc[a], &sl->bagg[a]);
    return rows;
}

/* A record updated (or created) pane i at p of key k: drop the cached ranges it is in. */
static void slide_touch(window_ctx_t *ctx, uint32_t k, int32_t i, int64_t p, bool created) {
    const window_conf_t *c = ctx->conf;
    wslide_t *sl = wstate_slide(&ctx->st, k);
    if (sl->fblk != WINDOW_NEVER && p >= sl->fblk && p < sl->fblk + c->size)
        sl->fblk = WINDOW_NEVER;
    if (sl->bblk == WINDOW_NEVER)
        return;
    if (p < sl->bupto) {
        if (p >= sl->bblk)
            sl->bblk = WINDOW_NEVER;
    } else if (created && (sl->bnext < 0 || p < wstate_win(&ctx->st, sl->bnext)->start)) {
        sl->bnext = i; /* the new first pane after the back */
    }
}

/* Emit window [s, s + size) of key k (tumbling: its one pane; sliding: two stacks). */
static void emit_pane_window(window_ctx_t *ctx, uint32_t k, int64_t s, bool final, weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    if (c->type == WINDOW_SLIDING) {
        /* Early windows run ahead of the final ones: a scratch cache keeps the key's intact. */
        wslide_t *sl = final ? wstate_slide(st, k) : ctx->early_slide;
        if (!final)
            sl->fblk = sl->bblk = WINDOW_NEVER;
        int64_t rows = slide_window(ctx, k, sl, s);
        if (rows)
            emit_out(ctx, k, s, s + c->size, 0, rows, ctx->acc, final, em);
        return;
    }
    for (int32_t i = wstate_key(st, k)->head; i >= 0;) {
        const wwin_t *q = wstate_win(st, i);
        i = q->next;
        if (q->start < s)
            continue;
        if (q->start >= s + c->size)
            break;
        if (q->rows)
            emit_out(ctx, k, s, s + c->size, 0, q->rows, q->agg, final, em);
        return;
    }
}

static void emit_session(window_ctx_t *ctx, uint32_t k, const wwin_t *w, bool final, weir_emitter_t *em) {
    emit_out(ctx, k, w->start, w->last_ts + ctx->conf->gap, w->last_ts, w->rows, w->agg, final, em);
}

static void window_late(window_ctx_t *ctx, const weir_record_t *in, weir_emitter_t *em) {
    ctx->late++;
    weir_emit(em, 1, in);
    if (!ctx->plan->port_used[1])
        em->reject(em, in, "late");
}

/* ---- scheduling ---- */

/* Tumbling/sliding: the next final window and the next early window of a key. */
static void pane_next(const window_ctx_t *ctx, const wkey_t *key, int64_t *sf, int64_t *tf, int64_t *se, int64_t *te) {
    const window_conf_t *c = ctx->conf;
    const wstate_t *st = &ctx->st;
    *tf = *te = WINDOW_NEVER;
    if (key->head < 0)
        return;
    int64_t p0 = wstate_win(st, key->head)->start;
    *sf = max64(key->fired_upto + c->slide, first_start(c, p0));
    *tf = *sf + c->size + c->lateness;
    if (!c->early)
        return;
    int64_t cand = max64(key->early_upto + c->slide, first_start(c, p0));
    for (int32_t i = key->head; i >= 0;) {
        const wwin_t *q = wstate_win(st, i);
        if (last_start(c, q->start) >= cand) {
            *se = max64(cand, first_start(c, q->start));
            *te = *se + c->size;
            return;
        }
        i = q->next;
    }
}

static int64_t key_next_fire(const window_ctx_t *ctx, const wkey_t *key) {
    const window_conf_t *c = ctx->conf;
    if (c->type != WINDOW_SESSION) {
        int64_t sf = 0, tf, se = 0, te;
        pane_next(ctx, key, &sf, &tf, &se, &te);
        return tf < te ? tf : te;
    }
    int64_t t = WINDOW_NEVER;
    for (int32_t i = key->head; i >= 0;) {
        const wwin_t *w = wstate_win(&ctx->st, i);
        int64_t end = w->last_ts + c->gap;
        int64_t f = c->early && !w->early_done ? end : end + c->lateness;
        if (f < t)
            t = f;
        i = w->next;
    }
    return t;
}

static void key_reschedule(window_ctx_t *ctx, uint32_t k) {
    wkey_t *key = wstate_key(&ctx->st, k);
    int64_t nf = key_next_fire(ctx, key);
    if (nf < key->sched) {
        key->sched = nf;
        wstate_timer_push(&ctx->st, nf, k);
    }
}

/* ---- process ---- */

static void eval_args(window_ctx_t *ctx, const weir_record_t *in) {
    const window_conf_t *c = ctx->conf;
    for (int i = 0; i < c->naggs; i++) {
        const wagg_spec_t *a = &c->aggs[i];
        if (!a->arg)
            continue;
        if (a->arg_ref != i)
            ctx->args[i] = ctx->args[a->arg_ref];
        else if (a->arg_slot >= 0)
            ctx->args[i] = in->v[a->arg_slot];
        else
            weir_expr_eval(a->arg, in, &ctx->scratch, &ctx->args[i]);
    }
}

static void win_add(window_ctx_t *ctx, wwin_t *w, int64_t ts) {
    const window_conf_t *c = ctx->conf;
    w->rows++;
    for (int i = 0; i < c->naggs; i++)
        wagg_update(&c->aggs[i], &w->agg[i], c->aggs[i].arg ? &ctx->args[i] : NULL, ts);
}

/* ---- bounds: max_keys, max_open_windows ---- */

static void pane_fire(window_ctx_t *ctx, uint32_t k, int64_t t, weir_emitter_t *em);
static void session_fire(window_ctx_t *ctx, uint32_t k, int64_t t, weir_emitter_t *em);

/* Evict key k: emit every open window now (final false, id + "/evicted": it may be
 * incomplete), then forget the key. Its timers go stale (key deleted). */
static void key_evict(window_ctx_t *ctx, uint32_t k, const char *why, weir_emitter_t *em) {
    wstate_t *st = &ctx->st;
    ctx->evicting = true;
    if (ctx->conf->type == WINDOW_SESSION)
        session_fire(ctx, k, WINDOW_NEVER - 1, em);
    else
        pane_fire(ctx, k, WINDOW_NEVER - 1, em);
    ctx->evicting = false;
    while (wstate_key(st, k)->head >= 0)
        wstate_win_del(st, k, wstate_key(st, k)->head);
    wstate_key_del(st, k);
    if (weir_plan_count_evicted(ctx->plan, 1, &ctx->keys_evicted))
        weir_log(WEIR_LOG_WARN, "window",
                 "node '%s': %s reached: evicting the least recently updated keys, their open windows "
                 "emitted with final false and id suffix %s (logged once; see weir_evicted_keys_total)",
                 ctx->plan->name, why, EVICTED_SUFFIX);
}

/* Before a new window of key k: evict least recently updated keys (never k) while
 * max_open_windows is reached. false: k alone holds them all (the record is rejected). */
static bool win_room(window_ctx_t *ctx, uint32_t k, const weir_record_t *in, weir_emitter_t *em) {
    const int64_t max = ctx->conf->max_open_windows;
    while (max && ctx->st.nwin >= (uint64_t)max) {
        uint32_t lru = weir_keymap_first(&ctx->st.keys);
        if (lru == k)
            lru = weir_keymap_next(&ctx->st.keys, lru);
        if (lru == WEIR_KEYMAP_NONE) {
            if (!ctx->keys_rejected++)
                weir_log(WEIR_LOG_WARN, "window",
                         "node '%s': one key holds max_open_windows (%" PRId64 ") windows: its records that "
                         "need another are dead-lettered (logged once)",
                         ctx->plan->name, max);
            em->reject(em, in, "window: max_open_windows reached by one key");
            return false;
        }
        key_evict(ctx, lru, "max_open_windows", em);
    }
    return true;
}

/* Find or create key (max_keys: evicting the least recently updated ones first);
 * with a bound, the key becomes the most recently updated. */
static uint32_t key_get(window_ctx_t *ctx, const char *kp, size_t kn, uint64_t h, weir_emitter_t *em) {
    uint32_t k = weir_keymap_find(&ctx->st.keys, kp, kn, h);
    if (k != WEIR_KEYMAP_NONE) {
        if (ctx->bounded)
            weir_keymap_touch(&ctx->st.keys, k);
        return k;
    }
    while (ctx->conf->max_keys && weir_keymap_count(&ctx->st.keys) >= (uint64_t)ctx->conf->max_keys)
        key_evict(ctx, weir_keymap_first(&ctx->st.keys), "max_keys", em);
    return wstate_key_add(&ctx->st, kp, kn, h);
}

static void pane_process(window_ctx_t *ctx, const weir_record_t *in, int64_t ts, const char *kp, size_t kn,
                         weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    if (last_start(c, ts) + c->size + c->lateness <= ctx->wm) {
        window_late(ctx, in, em);
        return;
    }
    int64_t k = key_get(ctx, kp, kn, weir_keymap_hash(kp, kn), em);
    wkey_t *key = wstate_key(st, (uint32_t)k);
    /* Windows closed by the watermark are done for this key too (new keys, and keys idle for a while). */
    key->fired_upto = max64(key->fired_upto, last_start(c, ctx->wm - c->size - c->lateness));
    if (c->early)
        key->early_upto = max64(key->early_upto, last_start(c, ctx->wm - c->size));
    int64_t p = align_down(ts, c->pane);
    int32_t i = key->tail;
    while (i >= 0 && wstate_win(st, i)->start > p)
        i = wstate_win(st, i)->prev;
    bool created = false;
    if (i < 0 || wstate_win(st, i)->start != p) {
        if (!win_room(ctx, (uint32_t)k, in, em)) {
            if (!key->nwin)
                wstate_key_del(st, (uint32_t)k);
            return;
        }
        int32_t before = i >= 0 ? wstate_win(st, i)->next : key->head;
        i = wstate_win_new(st, (uint32_t)k, p, before);
        created = true;
    }
    eval_args(ctx, in);
    win_add(ctx, wstate_win(st, i), ts);
    if (c->type == WINDOW_SLIDING)
        slide_touch(ctx, (uint32_t)k, i, p, created);
    if (c->early) {
        /* Windows of this pane already emitted early: emit their update now. */
        int64_t hi = key->early_upto < last_start(c, p) ? key->early_upto : last_start(c, p);
        for (int64_t s = max64(key->fired_upto + c->slide, first_start(c, p)); s <= hi; s += c->slide)
            emit_pane_window(ctx, (uint32_t)k, s, false, em);
    }
    if (created)
        key_reschedule(ctx, (uint32_t)k);
}

static void session_process(window_ctx_t *ctx, const weir_record_t *in, int64_t ts, const char *kp, size_t kn,
                            weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    uint64_t h = weir_keymap_hash(kp, kn);
    uint32_t found = weir_keymap_find(&st->keys, kp, kn, h);
    int64_t k = found == WEIR_KEYMAP_NONE ? -1 : (int64_t)found;
    if (k >= 0 && ctx->bounded)
        weir_keymap_touch(&st->keys, found);
    int64_t hi = ts + c->gap; /* the record alone is the session [ts, ts + gap) */
    int32_t into = -1, before = -1;
    if (k >= 0) {
        for (int32_t i = wstate_key(st, (uint32_t)k)->head; i >= 0;) {
            wwin_t *w = wstate_win(st, i);
            int32_t next = w->next;
            if (w->start >= hi) {
                before = i;
                break;
            }
            if (ts < w->last_ts + c->gap) { /* overlaps: merge (sessions are sorted and disjoint) */
                if (into < 0) {
                    into = i;
                } else {
                    wwin_t *d = wstate_win(st, into);
                    d->rows += w->rows;
                    if (w->last_ts > d->last_ts)
                        d->last_ts = w->last_ts;
                    for (int a = 0; a < c->naggs; a++)
                        wagg_merge(&c->aggs[a], &d->agg[a], &w->agg[a]);
                    wstate_win_del(st, (uint32_t)k, i);
                }
            }
            i = next;
        }
    }
    if (into < 0) {
        if (hi + c->lateness <= ctx->wm) {
            window_late(ctx, in, em);
            return;
        }
        if (k < 0)
            k = key_get(ctx, kp, kn, h, em);
        if (!win_room(ctx, (uint32_t)k, in, em)) {
            if (!wstate_key(st, (uint32_t)k)->nwin)
                wstate_key_del(st, (uint32_t)k);
            return;
        }
        into = wstate_win_new(st, (uint32_t)k, ts, before);
    }
    wwin_t *w = wstate_win(st, into);
    if (ts < w->start)
        w->start = ts;
    if (ts > w->last_ts)
        w->last_ts = ts;
    eval_args(ctx, in);
    win_add(ctx, w, ts);
    if (c->early) {
        w->early_done = w->last_ts + c->gap <= ctx->wm;
        if (w->early_done)
            emit_session(ctx, (uint32_t)k, w, false, em);
    }
    key_reschedule(ctx, (uint32_t)k);
}

static int window_process(void *vctx, const weir_record_t *in, weir_emitter_t *em) {
    window_ctx_t *ctx = vctx;
    int64_t ts = in->ts;
    const char *kp, *why;
    size_t kn;
    if (ts == WEIR_TS_NONE)
        em->reject(em, in, "window: record has no event time");
    else if (ts <= -WINDOW_TS_LIMIT || ts >= WINDOW_TS_LIMIT)
        em->reject(em, in, "window: event time out of range");
    else if ((why = weir_key_eval(&ctx->conf->key, in, &ctx->scratch, ctx->keybuf, &kp, &kn)))
        em->reject(em, in, why);
    else if (ctx->conf->type == WINDOW_SESSION)
        session_process(ctx, in, ts, kp, kn, em);
    else
        pane_process(ctx, in, ts, kp, kn, em);
    if (ctx->scratch.head)
        weir_arena_reset(&ctx->scratch);
    return WEIR_OK;
}

/* ---- firing ---- */

static void pane_fire(window_ctx_t *ctx, uint32_t k, int64_t t, weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    for (;;) {
        wkey_t *key = wstate_key(st, k);
        int64_t sf = 0, tf, se = 0, te;
        pane_next(ctx, key, &sf, &tf, &se, &te);
        if (tf <= t && tf <= te) {
            emit_pane_window(ctx, k, sf, true, em);
            key->fired_upto = sf;
            key->early_upto = max64(key->early_upto, sf);
            /* Panes whose last window is done are no longer needed. */
            while (key->head >= 0 && last_start(c, wstate_win(st, key->head)->start) <= sf)
                wstate_win_del(st, k, key->head);
        } else if (te <= t) {
            /* Not when its final result is due in this same watermark step. */
            if (se + c->size + c->lateness > ctx->wm)
                emit_pane_window(ctx, k, se, false, em);
            key->early_upto = se;
        } else {
            break;
        }
    }
}

static void session_fire(window_ctx_t *ctx, uint32_t k, int64_t t, weir_emitter_t *em) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    for (int32_t i = wstate_key(st, k)->head; i >= 0;) {
        wwin_t *w = wstate_win(st, i);
        int32_t next = w->next;
        int64_t end = w->last_ts + c->gap;
        if (end + c->lateness <= t) {
            emit_session(ctx, k, w, true, em);
            wstate_win_del(st, k, i);
        } else if (c->early && !w->early_done && end <= t) {
            if (end + c->lateness > ctx->wm) /* not when the final result is due in this step */
                emit_session(ctx, k, w, false, em);
            w->early_done = 1;
        }
        i = next;
    }
}

static int window_on_watermark(void *vctx, int64_t wm, weir_emitter_t *em) {
    window_ctx_t *ctx = vctx;
    wstate_t *st = &ctx->st;
    if (wm > ctx->wm)
        ctx->wm = wm;
    wtimer_t tm;
    /* weir_stop: a stop interrupts a long firing between two keys; the timers left fire at the next watermark. */
    while (!weir_stop && wstate_timer_pop(st, ctx->wm, &tm)) {
        /* Keys fire in heap order, i.e. at random in memory: start loading the next ones
         * now. The next top is one of the two children of this top, whose keys were
         * prefetched one step ago, so its first pane can be prefetched too. */
        if (st->nheap && st->heap[0].t <= ctx->wm) {
            const wkey_t *nk = wstate_key(st, st->heap[0].key);
            if (nk->head >= 0)
                __builtin_prefetch(wstate_win(st, nk->head));
            for (size_t j = 1; j < 3 && j < st->nheap; j++)
                __builtin_prefetch(weir_keymap_ent(&st->keys, st->heap[j].key));
        }
        weir_keymap_ent_t *ent = weir_keymap_ent(&st->keys, tm.key);
        wkey_t *key = wstate_key(st, tm.key);
        if (tm.key >= st->keys.used || !ent->live || key->seq != tm.seq || key->sched != tm.t)
            continue; /* stale: the key was rescheduled or deleted */
        if (ctx->conf->type == WINDOW_SESSION)
            session_fire(ctx, tm.key, tm.t, em);
        else
            pane_fire(ctx, tm.key, tm.t, em);
        key = wstate_key(st, tm.key);
        if (key->head < 0) {
            wstate_key_del(st, tm.key);
            continue;
        }
        key->sched = key_next_fire(ctx, key);
        wstate_timer_push(st, key->sched, tm.key);
    }
    return WEIR_OK;
}

/* ---- snapshot ---- */

static void write_fingerprint(const window_conf_t *c, weir_writer_t *w) {
    weir_w_u8(w, (uint8_t)c->type);
    weir_w_i64(w, c->size);
    weir_w_i64(w, c->slide);
    weir_w_i64(w, c->gap);
    weir_w_i64(w, c->lateness);
    weir_w_u8(w, c->early);
    weir_w_u32(w, (uint32_t)c->naggs);
    for (int i = 0; i < c->naggs; i++) {
        weir_w_u8(w, (uint8_t)c->aggs[i].kind);
        weir_w_u8(w, c->aggs[i].is_long);
        weir_w_u8(w, c->aggs[i].arg != NULL);
    }
}

static int window_snapshot(void *vctx, weir_writer_t *w) {
    window_ctx_t *ctx = vctx;
    const window_conf_t *c = ctx->conf;
    const wstate_t *st = &ctx->st;
    weir_w_frame_begin(w, "window", WINDOW_SNAPSHOT_VERSION);
    write_fingerprint(c, w);
    weir_w_i64(w, ctx->wm);
    weir_w_u64(w, st->next_seq);
    weir_w_u64(w, ctx->late);
    weir_w_u64(w, ctx->keys_rejected);
    weir_w_u64(w, weir_keymap_count(&st->keys));
    /* Keys in first-seen order (weir_keymap iteration): independent of hashing. */
    for (uint32_t k = weir_keymap_first(&st->keys); k != WEIR_KEYMAP_NONE; k = weir_keymap_next(&st->keys, k)) {
        const wkey_t *key = wstate_key(st, k);
        size_t kn;
        const char *kb = weir_keymap_key(&st->keys, k, &kn);
        weir_w_bytes(w, kb, kn);
        weir_w_u64(w, key->seq);
        weir_w_i64(w, key->sched);
        weir_w_i64(w, key->fired_upto);
        weir_w_i64(w, key->early_upto);
        weir_w_u32(w, key->nwin);
        for (int32_t i = key->head; i >= 0;) {
            const wwin_t *x = wstate_win(st, i);
            weir_w_i64(w, x->start);
            weir_w_i64(w, x->last_ts);
            weir_w_i64(w, x->rows);
            weir_w_u8(w, (uint8_t)x->early_done);
            for (int a = 0; a < c->naggs; a++) {
                weir_w_i64(w, x->agg[a].n);
                weir_w_i64(w, x->agg[a].v.i);
                weir_w_i64(w, x->agg[a].w.ts);
            }
            i = x->next;
        }
    }
    weir_w_frame_end(w);
    return WEIR_OK;
}

/* Restored times: within twice the accepted event-time range (windows start
 * up to a slide before their first record and sessions end a gap after it),
 * or the one special value the field may hold. */
#define RESTORED_TIME_LIMIT (2 * WINDOW_TS_LIMIT)
/* Restored record counts (rows, per-aggregate n): far above any real count,
 * and summing 2^23 panes of them (a 400 MB snapshot) still cannot overflow. */
#define RESTORED_COUNT_LIMIT ((int64_t)1 << 40)

static inline bool restored_time_ok(int64_t t, int64_t special) {
    return (special != 0 && t == special) || (t > -RESTORED_TIME_LIMIT && t < RESTORED_TIME_LIMIT);
}

static int restore_body(window_ctx_t *ctx, weir_reader_t *r, char *errstr, size_t errstr_size) {
    const window_conf_t *c = ctx->conf;
    wstate_t *st = &ctx->st;
    /* The configuration must be the one the state was built with. */
    weir_buf_t fp = {0};
    weir_writer_t fw = {.buf = &fp};
    write_fingerprint(c, &fw);
    const uint8_t *have = weir_r_raw(r, fp.len);
    bool same = have && !memcmp(have, fp.p, fp.len);
    weir_buf_free(&fp);
    if (!same)
        return weir_err(errstr, errstr_size,
                        "node '%s': window snapshot was taken with a different window configuration "
                        "(type, size, slide, gap, lateness or aggregates changed)",
                        ctx->plan->name);
    int64_t wm = weir_r_i64(r);
    if (!r->err && wm < WINDOW_WM_NONE)
        weir_r_fail(r, "watermark %" PRId64 " out of range", wm);
    uint64_t next_seq = weir_r_u64(r);
    uint64_t late = weir_r_u64(r);
    uint64_t rejected = weir_r_u64(r);
    uint64_t nkeys = weir_r_u64(r);
    size_t win_bytes = 25 + (size_t)c->naggs * 24;
    if (!r->err && nkeys > (r->len - r->pos) / (4 + 8 * 4 + 4 + win_bytes))
        weir_r_fail(r, "key count %" PRIu64 " does not fit the snapshot", nkeys);
    for (uint64_t n = 0; n < nkeys && !r->err; n++) {
        size_t kn;
        const uint8_t *kp = weir_r_bytes(r, &kn);
        uint64_t seq = weir_r_u64(r);
        int64_t sched = weir_r_i64(r);
        int64_t fired = weir_r_i64(r);
        int64_t early = weir_r_i64(r);
        uint32_t nwin = weir_r_u32(r);
        if (r->err)
            break;
        uint64_t h = weir_keymap_hash(kp, kn);
        if (kn > WEIR_KEYMAP_MAX_KEY || nwin == 0 || nwin > (r->len - r->pos) / win_bytes || seq == 0 ||
            weir_keymap_find(&st->keys, kp, kn, h) != WEIR_KEYMAP_NONE) {
            weir_r_fail(r, "bad key record %" PRIu64, n);
            break;
        }
        if (!restored_time_ok(sched, WINDOW_NEVER) || !restored_time_ok(fired, WINDOW_WM_NONE) ||
            !restored_time_ok(early, WINDOW_WM_NONE)) {
            weir_r_fail(r, "key record %" PRIu64 ": time out of range", n);
            break;
        }
        uint32_t k = wstate_key_add(st, kp, kn, h);
        wkey_t *key = wstate_key(st, k);
        key->seq = seq;
        key->sched = sched;
        key->fired_upto = fired;
        key->early_upto = early;
        int64_t prev_start = 0;
        for (uint32_t j = 0; j < nwin && !r->err; j++) {
            int64_t start = weir_r_i64(r);
            int64_t last_ts = weir_r_i64(r);
            int64_t rows = weir_r_i64(r);
            uint8_t early_done = weir_r_u8(r);
            /* What the operator itself maintains: times within the accepted
             * event-time range (so the time arithmetic cannot overflow),
             * panes on the pane grid, starts ascending, counts in range. */
            if (!restored_time_ok(start, 0) || !restored_time_ok(last_ts, 0) || (j > 0 && start <= prev_start) ||
                (c->type != WINDOW_SESSION && start % c->pane != 0) || rows < 0 || rows > RESTORED_COUNT_LIMIT ||
                early_done > 1) {
                weir_r_fail(r, "key record %" PRIu64 ": window %" PRIu32 " is inconsistent", n, j);
                break;
            }
            prev_start = start;
            wwin_t *x = wstate_win(st, wstate_win_new(st, k, start, -1));
            x->last_ts = last_ts;
            x->rows = rows;
            x->early_done = early_done;
            for (int a = 0; a < c->naggs; a++) {
                x->agg[a].n = weir_r_i64(r);
                x->agg[a].v.i = weir_r_i64(r);
                x->agg[a].w.ts = weir_r_i64(r);
                if (!r->err && (x->agg[a].n < 0 || x->agg[a].n > RESTORED_COUNT_LIMIT ||
                                ((c->aggs[a].kind == WAGG_FIRST || c->aggs[a].kind == WAGG_LAST) &&
                                 !restored_time_ok(x->agg[a].w.ts, 0))))
                    weir_r_fail(r, "key record %" PRIu64 ": window %" PRIu32 ": aggregate %d is inconsistent", n, j, a);
            }
        }
        if (r->err)
            break;
        if (sched != WINDOW_NEVER)
            wstate_timer_push(st, sched, k);
    }
    if (!r->err && r->pos != r->len)
        weir_r_fail(r, "%zu trailing bytes", r->len - r->pos);
    if (r->err)
        return weir_err(errstr, errstr_size, "node '%s': window snapshot: %s", ctx->plan->name, r->errstr);
    st->next_seq = next_seq;
    ctx->wm = wm;
    ctx->late = late;
    ctx->keys_rejected = rejected;
    return WEIR_OK;
}

static int window_restore(void *vctx, weir_reader_t *r, char *errstr, size_t errstr_size) {
    window_ctx_t *ctx = vctx;
    uint16_t version;
    weir_reader_t body;
    if (weir_r_frame_expect(r, ctx->plan->name, "window", WINDOW_SNAPSHOT_VERSION, &version, &body, errstr,
                            errstr_size))
        return WEIR_ERR;
    wstate_clear(&ctx->st);
    if (restore_body(ctx, &body, errstr, errstr_size)) {
        wstate_clear(&ctx->st); /* a failed restore leaves an empty, usable operator */
        ctx->wm = WINDOW_WM_NONE;
        return WEIR_ERR;
    }
    return WEIR_OK;
}

/* ---- state dump (`weir state dump`) ----
 *
 * Read-only: the two-stacks cache of the keys (suffixes in the panes, the back in
 * wslide_t) and the ctx scratch (acc, idx) are not touched; the same folds are
 * recomputed into local buffers, in the same order as slide_window, so every
 * value is bit-identical to what firing the window now would emit. Cost: sorting
 * the keys (O(K log K)), then per key O(panes + windows) merges. */

typedef struct dump_scratch {
    const wwin_t **pane; /* the key's panes, ascending start */
    wagg_state_t *suf;   /* naggs states per pane of the front block (right fold) */
    int64_t *suf_rows;
    size_t cap;         /* panes */
    wagg_state_t *back; /* naggs: left fold of the back block */
    wagg_state_t *acc;  /* naggs: the window */
} dump_scratch_t;

static void dump_window(const window_ctx_t *ctx, weir_buf_t *out, bool *first, uint32_t k, int64_t start, int64_t end,
                        const int64_t *last_ts, int64_t rows, const wagg_state_t *agg) {
    const window_conf_t *c = ctx->conf;
    weir_buf_puts(out, *first ? "{\"key\":" : ",{\"key\":");
    *first = false;
    size_t kn;
    const char *kb = weir_keymap_key(&ctx->st.keys, k, &kn);
    weir_json_append_str(out, kb, kn);
    weir_buf_printf(out, ",\"window_start\":%" PRId64 ",\"window_end\":%" PRId64, start, end);
    if (last_ts)
        weir_buf_printf(out, ",\"last_ts\":%" PRId64, *last_ts);
    weir_buf_puts(out, ",\"aggregates\":{");
    for (int i = 0; i < c->naggs; i++) {
        const wagg_spec_t *a = &c->aggs[i];
        weir_value_t v, nulls;
        agg_out(a, &agg[i], rows, &v, a->nulls_slot >= 0 ? &nulls : NULL);
        if (i)
            weir_buf_putc(out, ',');
        weir_json_append_str(out, a->name, strlen(a->name));
        weir_buf_putc(out, ':');
        weir_json_append_value(out, &v);
        if (a->nulls_slot >= 0) {
            char nn[300];
            int len = snprintf(nn, sizeof(nn), "%s_nulls", a->name);
            weir_buf_putc(out, ',');
            weir_json_append_str(out, nn, len < (int)sizeof(nn) ? (size_t)len : sizeof(nn) - 1);
            weir_buf_putc(out, ':');
            weir_json_append_value(out, &nulls);
        }
    }
    weir_buf_puts(out, "}}");
}

/* Every open window [s, s + size) of a tumbling/sliding key, ascending s, as slide_window
 * would compute it (tumbling: one pane per window, the fold is a copy). Windows without
 * records are skipped (they emit nothing): s jumps over gaps between panes. */
static void dump_pane_key(const window_ctx_t *ctx, weir_buf_t *out, bool *first, uint32_t k, dump_scratch_t *sc) {
    const window_conf_t *c = ctx->conf;
    const wstate_t *st = &ctx->st;
    const wkey_t *key = wstate_key(st, k);
    size_t na = (size_t)c->naggs, n = 0;
    if (key->head < 0)
        return;
    if (key->nwin > sc->cap) {
        sc->cap = key->nwin;
        sc->pane = weir_realloc(sc->pane, sc->cap * sizeof(*sc->pane));
        sc->suf = weir_realloc(sc->suf, sc->cap * na * sizeof(*sc->suf));
        sc->suf_rows = weir_realloc(sc->suf_rows, sc->cap * sizeof(*sc->suf_rows));
    }
    for (int32_t i = key->head; i >= 0 && n < sc->cap; i = wstate_win(st, i)->next)
        sc->pane[n++] = wstate_win(st, i);
    const wwin_t *const *pn = sc->pane;
    /* The next window to fire (pane_next): windows before it are final already. */
    int64_t s = max64(key->fired_upto + c->slide, first_start(c, pn[0]->start));
    int64_t fblk = WINDOW_NEVER;       /* block whose suffixes are in sc->suf */
    size_t j = 0, fbase = 0, fend = 0; /* j: first pane >= s; front panes [fbase, fend) */
    size_t bnext = 0;                  /* the back covers the panes [fend, bnext) */
    int64_t brows = 0;
    for (;;) {
        while (j < n && pn[j]->start < s)
            j++;
        if (j == n)
            break;
        int64_t e = s + c->size;
        if (pn[j]->start >= e) { /* no record in [s, e): next window holding pane j */
            s = first_start(c, pn[j]->start);
            continue;
        }
        int64_t b0 = align_down(s, c->size), b1 = b0 + c->size;
        if (fblk != b0) {
            fblk = b0;
            fbase = fend = j;
            while (fend < n && pn[fend]->start < b1)
                fend++;
            int64_t after_rows = 0;
            for (size_t p = fend; p-- > fbase;) {
                wagg_state_t *suf = sc->suf + (p - fbase) * na;
                memcpy(suf, pn[p]->agg, na * sizeof(*suf));
                if (p + 1 < fend)
                    for (size_t a = 0; a < na; a++)
                        wagg_merge(&c->aggs[a], &suf[a], &sc->suf[(p + 1 - fbase) * na + a]);
                after_rows += pn[p]->rows;
                sc->suf_rows[p - fbase] = after_rows;
            }
            bnext = fend;
            brows = 0;
            memset(sc->back, 0, na * sizeof(*sc->back));
        }
        for (; bnext < n && pn[bnext]->start < e; bnext++) {
            brows += pn[bnext]->rows;
            for (size_t a = 0; a < na; a++)
                wagg_merge(&c->aggs[a], &sc->back[a], &pn[bnext]->agg[a]);
        }
        int64_t rows = brows;
        if (j < fend) {
            memcpy(sc->acc, sc->suf + (j - fbase) * na, na * sizeof(*sc->acc));
            rows += sc->suf_rows[j - fbase];
        } else {
            memset(sc->acc, 0, na * sizeof(*sc->acc));
        }
        for (size_t a = 0; a < na; a++)
            wagg_merge(&c->aggs[a], &sc->acc[a], &sc->back[a]);
        if (rows)
            dump_window(ctx, out, first, k, s, e, NULL, rows, sc->acc);
        s += c->slide;
    }
}

static int window_dump(void *vctx, weir_buf_t *out) {
    const window_ctx_t *ctx = vctx;
    const window_conf_t *c = ctx->conf;
    const wstate_t *st = &ctx->st;
    weir_buf_puts(out, "{\"watermark\":");
    if (ctx->wm == WINDOW_WM_NONE)
        weir_buf_puts(out, "null");
    else
        weir_buf_printf(out, "%" PRId64, ctx->wm);
    weir_buf_printf(out,
                    ",\"late\":%" PRIu64 ",\"keys_rejected\":%" PRIu64 ",\"keys_evicted\":%" PRIu64 ",\"keys\":%" PRIu32
                    ",\"windows\":[",
                    ctx->late, ctx->keys_rejected, ctx->keys_evicted, weir_keymap_count(&st->keys));
    uint32_t *keys = weir_keymap_sorted_ids(&st->keys), nk = weir_keymap_count(&st->keys);
    dump_scratch_t sc = {0};
    sc.back = weir_calloc((size_t)c->naggs + 1, sizeof(*sc.back));
    sc.acc = weir_calloc((size_t)c->naggs + 1, sizeof(*sc.acc));
    bool first = true;
    for (uint32_t i = 0; i < nk; i++) {
        const wkey_t *key = wstate_key(st, keys[i]);
        if (c->type != WINDOW_SESSION) {
            dump_pane_key(ctx, out, &first, keys[i], &sc);
            continue;
        }
        /* Sessions are sorted and disjoint: one window each, as emit_session emits it. */
        for (int32_t w = key->head; w >= 0;) {
            const wwin_t *x = wstate_win(st, w);
            dump_window(ctx, out, &first, keys[i], x->start, x->last_ts + c->gap, &x->last_ts, x->rows, x->agg);
            w = x->next;
        }
    }
    weir_buf_puts(out, "]}");
    free(keys);
    free(sc.pane);
    free(sc.suf);
    free(sc.suf_rows);
    free(sc.back);
    free(sc.acc);
    return WEIR_OK;
}

const weir_operator_class_t weir_window_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "window",
    .description = "tumbling, sliding and session windows on event time with per-key aggregates",
    .config_map = window_config_map,
    .conf_size = sizeof(window_conf_t),
    .configure = window_configure,
    .plan_destroy = window_plan_destroy,
    .describe = window_describe,
    .init = window_init,
    .process = window_process,
    .on_watermark = window_on_watermark,
    .snapshot = window_snapshot,
    .restore = window_restore,
    .destroy = window_destroy,
    .dump = window_dump,
};
