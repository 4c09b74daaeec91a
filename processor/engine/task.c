/* Task: one graph instance; depth-first, synchronous dispatch of records. */
#include "task.h"

#include <stdlib.h>
#include <string.h>

/* 1: max_ts, watermark, sink counters. 2: + repartition counters and
 * upstream watermarks / sequence numbers (stages, docs/keyby.md). */
#define TASK_SNAPSHOT_VERSION 2

struct weir_task {
    const weir_pipeline_t *pl;
    void **ctx;              /**< per node */
    struct task_emitter *em; /**< per node */
    weir_sink_fn sink_fn;
    weir_reject_fn reject_fn;
    void *opaque;           /**< passed to sink_fn and reject_fn */
    int64_t max_ts;         /**< largest event time seen, or WEIR_TS_NONE */
    int64_t watermark;      /**< current watermark (WEIR_TS_NONE before the first record) */
    int64_t last_record_ms; /**< processing time of the last record (idle detection) */
    uint64_t idle_seen_in;  /**< records_in at the last idle tick (records arrived since?) */
    weir_task_stats_t stats;
    uint64_t *sink_seq; /**< per sink: outputs handed to it so far (checkpointed) */
    /* stages (docs/keyby.md) */
    int stage;                     /**< -1: every node (file mode), else only that stage's nodes */
    weir_repartition_fn repart_fn; /**< records crossing into another stage */
    uint64_t *repart_seq;          /**< per stage: records sent to it so far (checkpointed) */
    int nup;                       /**< downstream task: upstream tasks */
    int64_t *up_wm;                /**< per upstream: its last watermark (WEIR_TS_NONE: not heard) */
    uint64_t *up_next;             /**< per upstream: the next sequence number expected (checkpointed) */
    int64_t *up_seen_ms;           /**< per upstream: processing time it was last heard from */
    uint64_t dropped;              /**< duplicates dropped (replays of upstream tasks) */
};

struct task_emitter {
    weir_emitter_t em; /* first: the operator sees this */
    weir_task_t *task;
    int node;
};

static inline bool in_stage(const weir_task_t *t, int node) {
    return t->stage < 0 || t->pl->nodes[node].stage == t->stage;
}

/* Deliver rec to node j: here, or across the repartition when j runs in another stage. */
static inline void deliver(weir_task_t *t, int j, const weir_record_t *rec) {
    if (in_stage(t, j)) {
        t->pl->nodes[j].plan.cls->process(t->ctx[j], rec, &t->em[j].em);
    } else {
        int st = t->pl->nodes[j].stage;
        t->repart_fn(t->opaque, st, t->repart_seq[st]++, rec);
    }
}

static void task_emit(weir_emitter_t *em, int port, const weir_record_t *rec) {
    struct task_emitter *te = (struct task_emitter *)em;
    weir_task_t *t = te->task;
    const weir_node_t *n = &t->pl->nodes[te->node];
    t->stats.node_out[te->node]++;
    const weir_edge_list_t *down = &n->nodes[port];
    for (int i = 0; i < down->n; i++)
        deliver(t, down->items[i], rec);
    const weir_edge_list_t *sinks = &n->sinks[port];
    for (int i = 0; i < sinks->n; i++) {
        t->stats.sink_out++;
        /* A task's outputs to a sink are numbered; with the state the number is
         * checkpointed, so a replay numbers the same outputs the same way. */
        uint64_t seq = t->sink_seq[sinks->items[i]]++;
        t->sink_fn(t->opaque, sinks->items[i], seq, rec);
    }
}

static void task_reject(weir_emitter_t *em, const weir_record_t *rec, const char *reason) {
    struct task_emitter *te = (struct task_emitter *)em;
    weir_task_t *t = te->task;
    t->stats.rejected++;
    if (t->reject_fn)
        t->reject_fn(t->opaque, t->pl->nodes[te->node].plan.name, rec, reason);
}

weir_task_t *weir_task_new(const weir_pipeline_t *pl, weir_sink_fn sink_fn, weir_reject_fn reject_fn, void *opaque) {
    return weir_task_new_stage(pl, -1, sink_fn, reject_fn, NULL, opaque);
}

weir_task_t *weir_task_new_stage(const weir_pipeline_t *pl, int stage, weir_sink_fn sink_fn, weir_reject_fn reject_fn,
                                 weir_repartition_fn repart_fn, void *opaque) {
    weir_task_t *t = weir_calloc(1, sizeof(*t));
    t->pl = pl;
    t->stage = stage;
    t->repart_fn = repart_fn;
    t->repart_seq = weir_calloc((size_t)pl->nstages + 1, sizeof(uint64_t));
    t->sink_fn = sink_fn;
    t->reject_fn = reject_fn;
    t->opaque = opaque;
    t->max_ts = WEIR_TS_NONE;
    t->watermark = WEIR_TS_NONE;
    t->ctx = weir_calloc((size_t)pl->nnodes, sizeof(void *));
    t->em = weir_calloc((size_t)pl->nnodes, sizeof(struct task_emitter));
    t->stats.node_out = weir_calloc((size_t)pl->nnodes, sizeof(uint64_t));
    t->sink_seq = weir_calloc((size_t)pl->nsinks + 1, sizeof(uint64_t));
    for (int i = 0; i < pl->nnodes; i++) {
        t->em[i].em.emit = task_emit;
        t->em[i].em.reject = task_reject;
        t->em[i].em.opaque = t;
        t->em[i].task = t;
        t->em[i].node = i;
        if (in_stage(t, i))
            t->ctx[i] = pl->nodes[i].plan.cls->init(&pl->nodes[i].plan);
    }
    t->last_record_ms = weir_now_ms();
    return t;
}

void weir_task_destroy(weir_task_t *t) {
    if (!t)
        return;
    for (int i = 0; i < t->pl->nnodes; i++)
        if (t->ctx[i])
            t->pl->nodes[i].plan.cls->destroy(t->ctx[i]);
    free(t->ctx);
    free(t->em);
    free(t->stats.node_out);
    free(t->sink_seq);
    free(t->repart_seq);
    free(t->up_wm);
    free(t->up_next);
    free(t->up_seen_ms);
    free(t);
}

int weir_task_stage(const weir_task_t *t) { return t->stage; }

const weir_task_stats_t *weir_task_stats(const weir_task_t *t) { return &t->stats; }

int64_t weir_task_watermark(const weir_task_t *t) { return t->watermark; }

const weir_pipeline_t *weir_task_pipeline(const weir_task_t *t) { return t->pl; }

void *weir_task_node_state(const weir_task_t *t, int node) { return t->ctx[node]; }

void weir_task_advance(weir_task_t *t, int64_t wm) {
    if (t->watermark != WEIR_TS_NONE && wm <= t->watermark)
        return;
    t->watermark = wm;
    const weir_pipeline_t *pl = t->pl;
    for (int k = 0; k < pl->nnodes; k++) {
        int i = pl->order[k];
        if (t->ctx[i] && pl->nodes[i].plan.cls->on_watermark)
            pl->nodes[i].plan.cls->on_watermark(t->ctx[i], wm, &t->em[i].em);
    }
}

void weir_task_process(weir_task_t *t, const weir_record_t *rec) {
    const weir_pipeline_t *pl = t->pl;
    t->stats.records_in++;
    uint64_t rejected = t->stats.rejected;
    for (int i = 0; i < pl->nnodes; i++)
        if (pl->nodes[i].input_node == WEIR_SOURCE)
            deliver(t, i, rec);
    /* A record an operator dead-lettered does not move time either (issue 13): one bad event time must not
     * close every window. */
    if (t->stats.rejected != rejected)
        return;
    if (rec->ts != WEIR_TS_NONE && (t->max_ts == WEIR_TS_NONE || rec->ts > t->max_ts)) {
        t->max_ts = rec->ts;
        int64_t wm = rec->ts - pl->source.max_out_of_orderness_ms;
        if (t->watermark == WEIR_TS_NONE || wm > t->watermark)
            weir_task_advance(t, wm);
    }
}

bool weir_task_process_stage(weir_task_t *t, int up, uint64_t seq, const weir_record_t *rec) {
    if (up >= 0 && up < t->nup) {
        if (seq < t->up_next[up]) {
            t->dropped++;
            return false;
        }
        t->up_next[up] = seq + 1;
    }
    t->stats.records_in++;
    int head = t->pl->stages[t->stage].head;
    t->pl->nodes[head].plan.cls->process(t->ctx[head], rec, &t->em[head].em);
    return true;
}

void weir_task_set_upstreams(weir_task_t *t, int n) {
    t->nup = n;
    t->up_wm = weir_realloc(t->up_wm, (size_t)(n + 1) * sizeof(int64_t));
    t->up_next = weir_realloc(t->up_next, (size_t)(n + 1) * sizeof(uint64_t));
    t->up_seen_ms = weir_realloc(t->up_seen_ms, (size_t)(n + 1) * sizeof(int64_t));
    int64_t now = weir_now_ms();
    for (int i = 0; i < n; i++) {
        t->up_wm[i] = WEIR_TS_NONE;
        t->up_next[i] = 0;
        t->up_seen_ms[i] = now;
    }
}

/* The minimum watermark over the upstream tasks heard from within idle_timeout. */
static void upstream_advance(weir_task_t *t, int64_t now_ms) {
    int64_t idle = t->pl->source.idle_timeout_ms, min = INT64_MAX;
    bool any = false;
    for (int i = 0; i < t->nup; i++) {
        if (idle > 0 && now_ms - t->up_seen_ms[i] >= idle && t->up_wm[i] != WEIR_WM_END)
            continue; /* idle: not holding the others back */
        if (t->up_wm[i] == WEIR_TS_NONE)
            return; /* an active upstream without a watermark yet */
        any = true;
        if (t->up_wm[i] < min)
            min = t->up_wm[i];
    }
    if (any)
        weir_task_advance(t, min);
}

void weir_task_upstream_watermark(weir_task_t *t, int up, int64_t wm, int64_t now_ms) {
    if (up < 0 || up >= t->nup)
        return;
    t->up_seen_ms[up] = now_ms;
    if (t->up_wm[up] == WEIR_TS_NONE || wm > t->up_wm[up])
        t->up_wm[up] = wm;
    upstream_advance(t, now_ms);
}

void weir_task_idle_tick(weir_task_t *t, int64_t now_ms) {
    int64_t idle = t->pl->source.idle_timeout_ms;
    if (t->stage > 0) { /* a downstream task: an upstream task may have gone idle */
        if (idle > 0)
            upstream_advance(t, now_ms);
        return;
    }
    /* Records arrived since the last tick: the partition is active. Noting it
     * here (ticks come every 200 ms) keeps the clock off the per-record path. */
    if (t->stats.records_in != t->idle_seen_in) {
        t->idle_seen_in = t->stats.records_in;
        t->last_record_ms = now_ms;
        return;
    }
    if (idle <= 0 || now_ms - t->last_record_ms < idle || t->watermark == WEIR_TS_NONE)
        return;
    /* Advance event time by the processing time that passed since the last record. */
    int64_t wm = t->max_ts - t->pl->source.max_out_of_orderness_ms + (now_ms - t->last_record_ms);
    weir_task_advance(t, wm);
}

int weir_task_snapshot(weir_task_t *t, weir_buf_t *buf) {
    weir_writer_t w = {.buf = buf};
    uint32_t nn = 0;
    for (int i = 0; i < t->pl->nnodes; i++)
        nn += in_stage(t, i);
    weir_w_u32(&w, nn);
    /* The task's own state, CRC-checked like every operator's. */
    weir_w_frame_begin(&w, "task", TASK_SNAPSHOT_VERSION);
    weir_w_i64(&w, t->max_ts);
    weir_w_i64(&w, t->watermark);
    weir_w_u32(&w, (uint32_t)t->pl->nsinks);
    for (int i = 0; i < t->pl->nsinks; i++) {
        weir_w_str(&w, t->pl->sinks[i].label);
        weir_w_str(&w, t->pl->sinks[i].topic);
        weir_w_u64(&w, t->sink_seq[i]);
    }
    weir_w_u32(&w, (uint32_t)t->pl->nstages);
    for (int i = 0; i < t->pl->nstages; i++)
        weir_w_u64(&w, t->repart_seq[i]);
    weir_w_u32(&w, (uint32_t)t->nup);
    for (int i = 0; i < t->nup; i++) {
        weir_w_i64(&w, t->up_wm[i]);
        weir_w_u64(&w, t->up_next[i]);
    }
    weir_w_frame_end(&w);
    for (int i = 0; i < t->pl->nnodes; i++) {
        if (!in_stage(t, i))
            continue;
        weir_w_str(&w, t->pl->nodes[i].plan.name);
        const weir_operator_class_t *cls = t->pl->nodes[i].plan.cls;
        if (!cls->snapshot) { /* stateless: an empty frame, so every node has one */
            weir_w_frame_begin(&w, cls->name, WEIR_STATELESS_SNAPSHOT_VERSION);
            weir_w_frame_end(&w);
        } else if (cls->snapshot(t->ctx[i], &w)) {
            return WEIR_ERR;
        }
    }
    return WEIR_OK;
}

/* The task frame: max event time, watermark and the per-sink output counters. */
static int parse_task_frame(weir_reader_t *r, weir_task_snapshot_view_t *v) {
    uint16_t version;
    weir_reader_t body;
    if (weir_r_frame_open(r, "task", &version, &body))
        return WEIR_ERR;
    if (version != 1 && version != TASK_SNAPSHOT_VERSION) {
        weir_r_fail(r, "task snapshot version %u is not supported (this build reads %d)", version,
                    TASK_SNAPSHOT_VERSION);
        return WEIR_ERR;
    }
    v->max_ts = weir_r_i64(&body);
    v->watermark = weir_r_i64(&body);
    uint32_t ns = weir_r_u32(&body);
    if (!body.err && ns > body.len / 16) /* each counter takes 16 bytes at least */
        weir_r_fail(&body, "%u sink counters in %zu bytes", ns, body.len);
    v->sinks = weir_calloc((size_t)(body.err ? 0 : ns) + 1, sizeof(*v->sinks));
    for (uint32_t k = 0; k < ns && !body.err; k++) {
        weir_task_snapshot_sink_t *s = &v->sinks[v->nsinks++];
        s->label = weir_r_strdup(&body);
        s->topic = weir_r_strdup(&body);
        s->seq = weir_r_u64(&body);
    }
    if (version >= 2 && !body.err) {
        v->nstages = weir_r_u32(&body);
        if (!body.err && v->nstages > body.len / 8)
            weir_r_fail(&body, "%u stage counters in %zu bytes", v->nstages, body.len);
        v->repart_seq = weir_calloc((size_t)(body.err ? 0 : v->nstages) + 1, sizeof(uint64_t));
        for (uint32_t k = 0; k < v->nstages && !body.err; k++)
            v->repart_seq[k] = weir_r_u64(&body);
        v->nup = body.err ? 0 : weir_r_u32(&body);
        if (!body.err && v->nup > body.len / 16)
            weir_r_fail(&body, "%u upstream watermarks in %zu bytes", v->nup, body.len);
        v->up_wm = weir_calloc((size_t)(body.err ? 0 : v->nup) + 1, sizeof(int64_t));
        v->up_next = weir_calloc((size_t)(body.err ? 0 : v->nup) + 1, sizeof(uint64_t));
        for (uint32_t k = 0; k < v->nup && !body.err; k++) {
            v->up_wm[k] = weir_r_i64(&body);
            v->up_next[k] = weir_r_u64(&body);
        }
        if (body.err)
            v->nstages = v->nup = 0;
    }
    if (body.err) {
        weir_r_fail(r, "task frame: %s", body.errstr);
        return WEIR_ERR;
    }
    return WEIR_OK;
}

int weir_task_snapshot_parse(const void *p, size_t n, weir_task_snapshot_view_t *v) {
    memset(v, 0, sizeof(*v));
    v->bad_node = -1;
    weir_reader_t r;
    weir_reader_init(&r, p, n);
    v->node_count = weir_r_u32(&r);
    if (!r.err && v->node_count > 4096)
        weir_r_fail(&r, "too many nodes");
    if (r.err || parse_task_frame(&r, v)) {
        snprintf(v->errstr, sizeof(v->errstr), "%s", r.errstr);
        return WEIR_ERR;
    }
    v->nodes = weir_calloc((size_t)v->node_count + 1, sizeof(*v->nodes));
    for (uint32_t i = 0; i < v->node_count; i++) {
        weir_task_snapshot_node_t *node = &v->nodes[i];
        node->name = weir_r_strdup(&r);
        if (!r.err && !node->name)
            weir_r_fail(&r, "node without a name");
        if (!r.err)
            weir_r_frame_next(&r, &node->frame);
        if (r.err) {
            v->nnodes = node->name ? i + 1 : i;
            v->bad_node = (int)i;
            snprintf(v->errstr, sizeof(v->errstr), "%s", r.errstr);
            return WEIR_ERR;
        }
    }
    v->nnodes = v->node_count;
    v->trailing = r.len - r.pos;
    return WEIR_OK;
}

void weir_task_snapshot_view_free(weir_task_snapshot_view_t *v) {
    for (uint32_t i = 0; v->sinks && i < v->nsinks; i++) {
        free(v->sinks[i].label);
        free(v->sinks[i].topic);
    }
    for (uint32_t i = 0; v->nodes && i < v->node_count; i++)
        free(v->nodes[i].name);
    free(v->sinks);
    free(v->nodes);
    free(v->repart_seq);
    free(v->up_wm);
    free(v->up_next);
    memset(v, 0, sizeof(*v));
}

/* The fingerprint entry "op:crc" of node `name` in fp, copied to out; false if absent. */
static bool fp_entry(const char *fp, const char *name, char *out, size_t outn) {
    size_t nl = strlen(name);
    for (const char *p = fp; p && *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            snprintf(out, outn, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

static bool reset_names(const char *reset, const char *name) {
    if (!reset || !*reset)
        return false;
    if (!strcmp(reset, "all"))
        return true;
    size_t nl = strlen(name);
    for (const char *p = reset; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == nl && !strncmp(p, name, nl))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Restore one node from its frame; a stateless class (no restore) checks the empty frame. */
static int restore_node(weir_task_t *t, int i, const weir_frame_t *f, char *errstr, size_t errstr_size) {
    const weir_plan_t *plan = &t->pl->nodes[i].plan;
    weir_reader_t fr;
    weir_reader_init(&fr, f->start, f->len);
    if (plan->cls->restore)
        return plan->cls->restore(t->ctx[i], &fr, errstr, errstr_size);
    uint16_t version;
    weir_reader_t body;
    return weir_r_frame_expect(&fr, plan->name, plan->cls->name, WEIR_STATELESS_SNAPSHOT_VERSION, &version, &body,
                               errstr, errstr_size);
}

int weir_task_restore(weir_task_t *t, const void *p, size_t n, const weir_restore_opts_t *opts, char *errstr,
                      size_t errstr_size) {
    static const weir_restore_opts_t none = {0};
    if (!opts)
        opts = &none;
    const char *saved_fp = opts->saved_fp, *cur_fp = opts->cur_fp, *reset = opts->reset;
    const weir_pipeline_t *pl = t->pl;
    weir_task_snapshot_view_t v;
    int rc = WEIR_ERR;
    int *src = NULL;
    if (weir_task_snapshot_parse(p, n, &v)) {
        if (v.bad_node < 0)
            weir_err(errstr, errstr_size, "task snapshot header: %s", v.errstr);
        else
            weir_err(errstr, errstr_size, "task snapshot: node %d: %s", v.bad_node, v.errstr);
        goto done;
    }
    /* Check everything first, then restore: a refusal changes nothing. */
    for (uint32_t i = 0; i < v.nnodes; i++) {
        int at = weir_pipeline_find_node(pl, v.nodes[i].name);
        if (at >= 0 && !in_stage(t, at) && !reset_names(reset, v.nodes[i].name)) {
            weir_err(errstr, errstr_size,
                     "node '%s' has saved state in this partition's checkpoint but now runs in stage %d "
                     "(its records are repartitioned, docs/keyby.md); start with --reset-state %s (or all) to drop it",
                     v.nodes[i].name, pl->nodes[at].stage, v.nodes[i].name);
            goto done;
        }
        if (at < 0 && !reset_names(reset, v.nodes[i].name)) {
            weir_err(errstr, errstr_size,
                     "node '%s' has saved state but is no longer in the pipeline; start with --reset-state %s "
                     "(or all) to drop it",
                     v.nodes[i].name, v.nodes[i].name);
            goto done;
        }
    }
    /* A --reset-state name must be a node of the pipeline or of the checkpoint (a typo resets nothing). */
    if (reset && strcmp(reset, "all")) {
        for (const char *q = reset; *q;) {
            size_t len = strcspn(q, ",");
            bool known = false;
            for (int i = 0; i < pl->nnodes && !known; i++)
                known = strlen(pl->nodes[i].plan.name) == len && !strncmp(pl->nodes[i].plan.name, q, len);
            for (uint32_t k = 0; k < v.nnodes && !known; k++)
                known = strlen(v.nodes[k].name) == len && !strncmp(v.nodes[k].name, q, len);
            if (!known) {
                weir_err(errstr, errstr_size, "--reset-state: no node '%.*s' in the pipeline or in the checkpoint",
                         (int)len, q);
                goto done;
            }
            q += len + (q[len] == ',');
        }
    }
    src = weir_calloc((size_t)pl->nnodes + 1, sizeof(int));
    for (int i = 0; i < pl->nnodes; i++) {
        const char *name = pl->nodes[i].plan.name;
        src[i] = -1;
        if (!in_stage(t, i))
            continue;
        for (uint32_t k = 0; k < v.nnodes; k++)
            if (!strcmp(v.nodes[k].name, name))
                src[i] = (int)k;
        if (reset_names(reset, name)) {
            src[i] = -1;
            continue;
        }
        char was[128], now[128];
        bool had = saved_fp && fp_entry(saved_fp, name, was, sizeof(was));
        fp_entry(cur_fp, name, now, sizeof(now));
        if (src[i] < 0 && opts->partial)
            continue;
        if (src[i] < 0) {
            weir_err(errstr, errstr_size,
                     "node '%s' is new since the checkpoint (it has no saved state); start with --reset-state %s "
                     "(or all) to start it empty",
                     name, name);
            goto done;
        }
        if (saved_fp && (!had || strcmp(was, now))) {
            weir_err(errstr, errstr_size,
                     "node '%s' was reconfigured since the checkpoint (%s, now %s); its state cannot be restored; "
                     "start with --reset-state %s (or all) to start it empty",
                     name, had ? was : "unknown", now, name);
            goto done;
        }
    }
    for (int i = 0; i < pl->nnodes; i++)
        if (src[i] >= 0 && restore_node(t, i, &v.nodes[src[i]].frame, errstr, errstr_size))
            goto done;
    t->max_ts = v.max_ts;
    t->watermark = v.watermark;
    /* Sinks are matched by (node label, topic): adding or removing a sink keeps the others' numbering. */
    memset(t->sink_seq, 0, (size_t)pl->nsinks * sizeof(uint64_t));
    for (uint32_t k = 0; k < v.nsinks; k++)
        for (int i = 0; v.sinks[k].label && v.sinks[k].topic && i < pl->nsinks; i++)
            if (!strcmp(pl->sinks[i].label, v.sinks[k].label) && !strcmp(pl->sinks[i].topic, v.sinks[k].topic))
                t->sink_seq[i] = v.sinks[k].seq;
    /* Stages and upstream tasks are matched by index: a change of stages or of upstream partition counts
     * changes the fingerprint of the nodes involved, which is refused above unless they are reset. */
    for (uint32_t k = 0; k < v.nstages && (int)k < pl->nstages; k++)
        t->repart_seq[k] = v.repart_seq[k];
    for (uint32_t k = 0; k < v.nup && (int)k < t->nup; k++) {
        t->up_wm[k] = v.up_wm[k];
        t->up_next[k] = v.up_next[k];
    }
    rc = WEIR_OK;
done:
    free(src);
    weir_task_snapshot_view_free(&v);
    return rc;
}
