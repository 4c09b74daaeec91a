/*
 * The window operator: table-driven cases for every window type and
 * aggregate, idle partitions, snapshot/restore mid-stream, configuration
 * errors, and a reference test that compares every window of a few hundred
 * thousand out-of-order events with a second, straightforward implementation.
 *
 * Every case builds a real pipeline from YAML (weir_pipeline_load_string)
 * and drives a weir_task_t, so the runtime's watermark handling is covered.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "task.h"

/* ---- harness ---- */

/* Criterion runs each parameterized test in a re-executed worker, where
 * pointers inside parameter structs are not valid (PIE): the parameters are
 * indices into the static tables instead. */
static int param_idx[64];
static int *param_indices(size_t n) {
    for (size_t i = 0; i < n && i < WEIR_ARRAY_SIZE(param_idx); i++)
        param_idx[i] = (int)i;
    return param_idx;
}

typedef struct out_rec {
    int key; /* k<N> -> N; -1 for other keys */
    int64_t start, end, last_ts;
    bool final;
    int64_t n, c; /* count(), count(v) */
    double s, m, lo, hi, sd, f, l;
    bool m_null, lo_null, sd_null;
} out_rec_t;

typedef struct run {
    weir_pipeline_t *pl;
    weir_task_t *task;
    weir_buf_t log;  /* one line per output, late record or reject */
    bool full_json;  /* log main outputs as JSON (else compact) */
    out_rec_t *outs; /* parsed main outputs (when collect) */
    size_t nouts, cap;
    bool collect;
} run_t;

static void fmt_value(weir_buf_t *b, const weir_value_t *v) {
    switch (v->type) {
    case WEIR_NULL: weir_buf_puts(b, "~"); break;
    case WEIR_BOOL: weir_buf_puts(b, v->u.b ? "T" : "F"); break;
    case WEIR_LONG: weir_buf_printf(b, "%" PRId64, v->u.i); break;
    case WEIR_DOUBLE: weir_buf_printf(b, "%.10g", v->u.d); break;
    default: weir_buf_append(b, v->u.s.p, v->u.s.n); break;
    }
}

/* Compact form: "KEY [start,end) [last=T] agg=v ... final|early". */
static void fmt_window(weir_buf_t *b, const weir_record_t *r) {
    const weir_rowtype_t *rt = r->rt;
    int ks = weir_rowtype_find(rt, "key");
    fmt_value(b, &r->v[ks]);
    weir_buf_printf(b, " [%" PRId64 ",%" PRId64 ")", r->v[weir_rowtype_find(rt, "window_start")].u.i,
                    r->v[weir_rowtype_find(rt, "window_end")].u.i);
    int lt = weir_rowtype_find(rt, "last_ts");
    if (lt >= 0)
        weir_buf_printf(b, " last=%" PRId64, r->v[lt].u.i);
    for (int i = weir_rowtype_find(rt, lt >= 0 ? "last_ts" : "window_end") + 1; i < rt->nfields; i++) {
        if (!strcmp(rt->fields[i].name, "final") || !strcmp(rt->fields[i].name, "id"))
            continue;
        weir_buf_printf(b, " %s=", rt->fields[i].name);
        fmt_value(b, &r->v[i]);
    }
    weir_buf_puts(b, r->v[weir_rowtype_find(rt, "final")].u.b ? " final" : " early");
}

/* An input record as "k@ts". */
static void fmt_input(weir_buf_t *b, const weir_record_t *r) {
    fmt_value(b, &r->v[0]);
    weir_buf_printf(b, "@%" PRId64, r->ts);
}

static double num(const weir_value_t *v) { return v->type == WEIR_LONG ? (double)v->u.i : v->u.d; }

static void collect_out(run_t *run, const weir_record_t *r) {
    const weir_rowtype_t *rt = r->rt;
    if (run->nouts == run->cap) {
        run->cap = run->cap ? run->cap * 2 : 1024;
        run->outs = weir_realloc(run->outs, run->cap * sizeof(out_rec_t));
    }
    out_rec_t *o = &run->outs[run->nouts++];
    memset(o, 0, sizeof(*o));
    const weir_value_t *k = &r->v[weir_rowtype_find(rt, "key")];
    char kb[32] = "";
    if (k->u.s.n < sizeof(kb))
        memcpy(kb, k->u.s.p, k->u.s.n); /* not NUL-terminated */
    o->key = kb[0] == 'k' ? atoi(kb + 1) : -1;
    o->start = r->v[weir_rowtype_find(rt, "window_start")].u.i;
    o->end = r->v[weir_rowtype_find(rt, "window_end")].u.i;
    int lt = weir_rowtype_find(rt, "last_ts");
    o->last_ts = lt >= 0 ? r->v[lt].u.i : 0;
    o->final = r->v[weir_rowtype_find(rt, "final")].u.b;
    o->n = r->v[weir_rowtype_find(rt, "n")].u.i;
    o->c = r->v[weir_rowtype_find(rt, "c")].u.i;
    o->s = num(&r->v[weir_rowtype_find(rt, "s")]);
    const weir_value_t *m = &r->v[weir_rowtype_find(rt, "m")];
    const weir_value_t *lo = &r->v[weir_rowtype_find(rt, "lo")];
    const weir_value_t *sd = &r->v[weir_rowtype_find(rt, "sd")];
    o->m_null = m->type == WEIR_NULL;
    o->lo_null = lo->type == WEIR_NULL;
    o->sd_null = sd->type == WEIR_NULL;
    o->m = o->m_null ? 0 : num(m);
    o->lo = o->lo_null ? 0 : num(lo);
    o->hi = o->lo_null ? 0 : num(&r->v[weir_rowtype_find(rt, "hi")]);
    o->sd = o->sd_null ? 0 : num(sd);
    o->f = o->lo_null ? 0 : num(&r->v[weir_rowtype_find(rt, "f")]);
    o->l = o->lo_null ? 0 : num(&r->v[weir_rowtype_find(rt, "l")]);
}

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    run_t *run = opaque;
    const weir_sink_spec_t *sk = &run->pl->sinks[sink];
    if (sk->port == 1) {
        weir_buf_puts(&run->log, "late ");
        fmt_input(&run->log, rec);
    } else if (run->collect) {
        collect_out(run, rec);
        return;
    } else if (run->full_json) {
        char why[256];
        weir_encoder_t *enc = weir_encoder_new(WEIR_FMT_JSON, NULL, rec->rt, false, 0, why, sizeof(why));
        cr_assert_not_null(enc, "%s", why);
        cr_assert_eq(weir_encode(enc, rec, NULL, NULL, &run->log, why, sizeof(why)), WEIR_OK, "%s", why);
        weir_encoder_destroy(enc);
    } else {
        fmt_window(&run->log, rec);
    }
    weir_buf_putc(&run->log, '\n');
}

static void on_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    run_t *run = opaque;
    weir_buf_printf(&run->log, "reject %s: %s ", node, reason);
    fmt_input(&run->log, rec);
    weir_buf_putc(&run->log, '\n');
}

/* A pipeline: source {k, ts, v} -> window w (node_cfg is the rest of its flow map) -> sink [+ late sink]. */
static weir_pipeline_t *load(const char *node_cfg, const char *ooo, bool late_sink, char *errstr, size_t n) {
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "pipeline: p\n"
             "source:\n"
             "  fields: {k: string, ts: long, v: double?}\n"
             "  event_time: ts\n"
             "  watermark: {max_out_of_orderness: %s, idle_timeout: 1s}\n"
             "nodes:\n"
             "  - {name: w, op: window, %s}\n"
             "sinks:\n"
             "  - {input: w, kafka: {topic: out}}\n"
             "%s",
             ooo, node_cfg, late_sink ? "  - {late: w, kafka: {topic: late}}\n" : "");
    return weir_pipeline_load_string("test.yaml", yaml, errstr, n);
}

static void run_open(run_t *run, const char *node_cfg, const char *ooo, bool late_sink) {
    memset(run, 0, sizeof(*run));
    char err[WEIR_ERRSTR_SIZE];
    run->pl = load(node_cfg, ooo, late_sink, err, sizeof(err));
    cr_assert_not_null(run->pl, "%s", err);
    run->task = weir_task_new(run->pl, on_sink, on_reject, run);
}

static void run_close(run_t *run) {
    weir_task_destroy(run->task);
    weir_pipeline_destroy(run->pl);
    weir_buf_free(&run->log);
    free(run->outs);
}

static void feed(weir_task_t *t, const char *k, int64_t ts, bool vnull, double v) {
    weir_record_t rec;
    weir_record_init(&rec, weir_task_pipeline(t)->source.rt);
    rec.v[0] = weir_v_str(k, strlen(k));
    rec.v[1] = ts == WEIR_TS_NONE ? weir_v_null() : weir_v_long(ts);
    rec.v[2] = vnull ? weir_v_null() : weir_v_double(v);
    rec.ts = ts;
    weir_task_process(t, &rec);
    weir_record_free(&rec);
}

/*
 * The event language of the table: space-separated tokens
 *   a@1000=1.5   record key a, event time 1000, v 1.5   (a@1000=~ : v null, a@- : no event time)
 *   !wm=20000    advance the watermark        !end   end of input
 */
static void play(run_t *run, const char *events) {
    char *copy = weir_strdup(events), *save = NULL;
    for (char *tok = strtok_r(copy, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        if (!strcmp(tok, "!end")) {
            weir_task_advance(run->task, WEIR_WM_END);
        } else if (!strncmp(tok, "!wm=", 4)) {
            weir_task_advance(run->task, strtoll(tok + 4, NULL, 10));
        } else {
            char *at = strchr(tok, '@');
            cr_assert_not_null(at, "bad token %s", tok);
            *at = '\0';
            if (at[1] == '-') {
                feed(run->task, tok, WEIR_TS_NONE, true, 0);
                continue;
            }
            char *eq = strchr(at + 1, '=');
            int64_t ts = strtoll(at + 1, NULL, 10);
            bool vnull = eq && eq[1] == '~';
            feed(run->task, tok, ts, vnull, eq && !vnull ? strtod(eq + 1, NULL) : 0);
        }
    }
    free(copy);
}

static const char *log_str(run_t *run) {
    weir_buf_putc(&run->log, '\0');
    run->log.len--;
    return (const char *)run->log.p;
}

/* ---- the table ---- */

typedef struct window_case {
    const char *name;
    const char *cfg; /* the window node's keys */
    const char *ooo; /* max_out_of_orderness */
    bool late_sink;
    const char *events;
    const char *expect; /* the log, one line per output */
} window_case_t;

#define AGG_SV "aggregate: {n: count(), s: sum(v)}"

static const window_case_t cases[] = {
    {"tumbling_in_order", "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false,
     "a@1000=1 b@2000=2 a@9000=3 a@11000=4 !end",
     "a [0,10000) n=2 s=4 final\n"
     "b [0,10000) n=1 s=2 final\n"
     "a [10000,20000) n=1 s=4 final\n"},
    {"tumbling_out_of_order_within_bound", "key: k, type: tumbling, size: 10s, " AGG_SV, "5s", false,
     "a@1000=1 a@12000=2 a@8000=3 a@16000=4 a@11000=5 !end",
     "a [0,10000) n=2 s=4 final\n"
     "a [10000,20000) n=3 s=11 final\n"},
    {"record_exactly_on_boundary", "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false,
     "a@9999=1 a@10000=2 a@0=3 !end",
     "a [0,10000) n=1 s=1 final\n"
     "reject w: late a@0\n"
     "a [10000,20000) n=1 s=2 final\n"},
    {"late_to_dead_letter_without_late_sink", "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false,
     "a@1000=1 a@15000=2 a@2000=3 !end",
     "a [0,10000) n=1 s=1 final\n"
     "reject w: late a@2000\n"
     "a [10000,20000) n=1 s=2 final\n"},
    {"late_to_late_sink", "key: k, type: tumbling, size: 10s, " AGG_SV, "0", true, "a@1000=1 a@15000=2 a@2000=3 !end",
     "a [0,10000) n=1 s=1 final\n"
     "late a@2000\n"
     "a [10000,20000) n=1 s=2 final\n"},
    {"late_within_and_beyond_allowed_lateness", "key: k, type: tumbling, size: 10s, allowed_lateness: 5s, " AGG_SV, "0",
     true, "a@1000=1 a@12000=2 a@2000=3 a@15000=4 a@3000=5 !end",
     "a [0,10000) n=2 s=4 final\n"
     "late a@3000\n"
     "a [10000,20000) n=2 s=6 final\n"},
    {"emit_early_then_updates_then_final",
     "key: k, type: tumbling, size: 10s, allowed_lateness: 5s, emit_early: true, " AGG_SV, "0", true,
     "a@1000=1 a@12000=2 a@2000=3 a@14000=4 a@15000=5 a@4000=6 !end",
     "a [0,10000) n=1 s=1 early\n"
     "a [0,10000) n=2 s=4 early\n"
     "a [0,10000) n=2 s=4 final\n"
     "late a@4000\n"
     "a [10000,20000) n=3 s=11 final\n"},
    {"sliding_multiple", "key: k, type: sliding, size: 10s, slide: 5s, " AGG_SV, "0", false,
     "a@1000=1 a@6000=2 a@12000=3 !end",
     "a [-5000,5000) n=1 s=1 final\n"
     "a [0,10000) n=2 s=3 final\n"
     "a [5000,15000) n=2 s=5 final\n"
     "a [10000,20000) n=1 s=3 final\n"},
    {"sliding_not_a_multiple_panes_of_gcd", "key: k, type: sliding, size: 10s, slide: 4s, " AGG_SV, "0", false,
     "a@1000=1 a@9000=2 !end",
     "a [-8000,2000) n=1 s=1 final\n"
     "a [-4000,6000) n=1 s=1 final\n"
     "a [0,10000) n=2 s=3 final\n"
     "a [4000,14000) n=1 s=2 final\n"
     "a [8000,18000) n=1 s=2 final\n"},
    {"sliding_late_only_for_closed_windows", "key: k, type: sliding, size: 10s, slide: 5s, " AGG_SV, "0", true,
     "a@1000=1 a@11000=2 a@6000=3 a@100=4 !end",
     "a [-5000,5000) n=1 s=1 final\n"
     "a [0,10000) n=1 s=1 final\n"
     "late a@100\n"
     "a [5000,15000) n=2 s=5 final\n"
     "a [10000,20000) n=1 s=2 final\n"},
    {"session_fires_after_gap", "key: k, type: session, gap: 5s, " AGG_SV, "0", false,
     "a@1000=1 a@2000=2 a@10000=3 !end",
     "a [1000,7000) last=2000 n=2 s=3 final\n"
     "a [10000,15000) last=10000 n=1 s=3 final\n"},
    {"session_merge_by_bridging_record", "key: k, type: session, gap: 5s, " AGG_SV, "1m", false,
     "a@1000=1 a@9000=2 a@5000=3 b@5000=10 !end",
     "b [5000,10000) last=5000 n=1 s=10 final\n"
     "a [1000,14000) last=9000 n=3 s=6 final\n"},
    {"session_late", "key: k, type: session, gap: 5s, " AGG_SV, "0", false,
     "a@1000=1 a@20000=2 a@1500=3 a@16000=4 !end",
     "a [1000,6000) last=1000 n=1 s=1 final\n"
     "reject w: late a@1500\n"
     "a [16000,25000) last=20000 n=2 s=6 final\n"},
    {"session_emit_early", "key: k, type: session, gap: 5s, allowed_lateness: 10s, emit_early: true, " AGG_SV, "0",
     false, "a@1000=1 a@7000=2 a@3000=3 a@17000=4 !end",
     "a [1000,6000) last=1000 n=1 s=1 early\n"
     "a [1000,12000) last=7000 n=3 s=6 early\n"
     "a [1000,12000) last=7000 n=3 s=6 final\n"
     "a [17000,22000) last=17000 n=1 s=4 final\n"},
    {"nulls_skipped_and_counted",
     "key: k, type: tumbling, size: 10s, count_nulls: true, "
     "aggregate: {n: count(), c: count(v), m: mean(v), sd: stddev(v), lo: min(v), f: first(v), l: last(v)}",
     "0", false, "a@1000=~ a@2000=2 a@3000=~ b@1000=~ !end",
     "a [0,10000) n=3 c=1 c_nulls=2 m=2 m_nulls=2 sd=~ sd_nulls=2 lo=2 lo_nulls=2 f=2 f_nulls=2 l=2 l_nulls=2 final\n"
     "b [0,10000) n=1 c=0 c_nulls=1 m=~ m_nulls=1 sd=~ sd_nulls=1 lo=~ lo_nulls=1 f=~ f_nulls=1 l=~ l_nulls=1 final\n"},
    {"every_aggregate",
     "key: k, type: tumbling, size: 10s, "
     "aggregate: {n: count(), s: sum(v), m: mean(v), lo: min(v), hi: max(v), sd: stddev(v), var: variance(v), "
     "f: first(v), l: last(v), sl: sum(ts), ml: max(ts)}",
     "1m", false, "a@3000=3 a@1000=1 a@2000=2 a@2000=4 !end",
     "a [0,10000) n=4 s=10 m=2.5 lo=1 hi=4 sd=1.290994449 var=1.666666667 f=1 l=3 sl=8000 ml=3000 final\n"},
    {"first_last_ties_by_arrival", "key: k, type: tumbling, size: 10s, aggregate: {f: first(v), l: last(v)}", "1m",
     false, "a@2000=1 a@2000=2 a@1000=7 a@1000=8 a@2000=3 !end", "a [0,10000) f=7 l=3 final\n"},
    {"unkeyed_one_group", "type: tumbling, size: 10s, " AGG_SV, "0", false, "a@1000=1 b@2000=2 c@12000=4 !end",
     " [0,10000) n=2 s=3 final\n"
     " [10000,20000) n=1 s=4 final\n"},
    {"key_expression", "key: \"upper(k)\", type: tumbling, size: 10s, " AGG_SV, "0", false, "a@1000=1 A@2000=2 !end",
     "A [0,10000) n=2 s=3 final\n"},
    /* key: the one meaning (processor/core/key.h): a null key value is dead-lettered with the node and expression. */
    {"null_key_dead_lettered_with_reason", "key: v, type: tumbling, size: 10s, " AGG_SV, "0", false,
     "a@1000=1 a@2000=~ b@3000=1 a@4000=2 !end",
     "reject w: window: node 'w': key 'v' is null a@2000\n"
     "1 [0,10000) n=2 s=2 final\n"
     "2 [0,10000) n=1 s=2 final\n"},
    {"no_event_time_rejected", "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false, "a@- a@1000=1 !end",
     "reject w: window: record has no event time a@-9223372036854775808\n"
     "a [0,10000) n=1 s=1 final\n"},
    /* max_keys: a new key evicts the least recently updated one, whose open windows are emitted at
     * once with final false ("early" here; id + "/evicted": see window_bounds_evict). */
    {"max_keys_evicts_least_recently_updated", "key: k, type: tumbling, size: 10s, max_keys: 2, " AGG_SV, "0", false,
     "a@1000=1 b@1000=2 a@2000=3 c@1000=4 a@10000=5 b@11000=6 !end",
     "b [0,10000) n=1 s=2 early\n"
     "a [0,10000) n=2 s=4 final\n"
     "c [0,10000) n=1 s=4 final\n"
     "a [10000,20000) n=1 s=5 final\n"
     "b [10000,20000) n=1 s=6 final\n"},
    {"max_keys_session", "key: k, type: session, gap: 5s, max_keys: 1, " AGG_SV, "0", false,
     "a@1000=1 a@2000=2 b@2500=3 !end",
     "a [1000,7000) last=2000 n=2 s=3 early\n"
     "b [2500,7500) last=2500 n=1 s=3 final\n"},
    /* max_open_windows: panes of every key; the key of the record in hand is never the one evicted. */
    {"max_open_windows_evicts_other_keys",
     "key: k, type: tumbling, size: 10s, max_keys: 0, max_open_windows: 2, " AGG_SV, "1m", false,
     "a@1000=1 a@11000=2 b@1000=3 !end",
     "a [0,10000) n=1 s=1 early\n"
     "a [10000,20000) n=1 s=2 early\n"
     "b [0,10000) n=1 s=3 final\n"},
    {"max_open_windows_one_key_rejects", "key: k, type: tumbling, size: 10s, max_open_windows: 2, " AGG_SV, "1m", false,
     "a@1000=1 a@11000=2 a@21000=3 a@12000=4 !end",
     "reject w: window: max_open_windows reached by one key a@21000\n"
     "a [0,10000) n=1 s=1 final\n"
     "a [10000,20000) n=2 s=6 final\n"},
    {"explicit_watermarks", "key: k, type: tumbling, size: 10s, " AGG_SV, "1h", false,
     "a@1000=1 !wm=9999 b@2000=2 !wm=10000 a@3000=3 !end",
     "a [0,10000) n=1 s=1 final\n"
     "b [0,10000) n=1 s=2 final\n"
     "reject w: late a@3000\n"},
};

ParameterizedTestParameters(window, table) {
    return cr_make_param_array(int, param_indices(WEIR_ARRAY_SIZE(cases)), WEIR_ARRAY_SIZE(cases));
}

ParameterizedTest(int *idx, window, table) {
    const window_case_t *tc = &cases[*idx];
    run_t run;
    run_open(&run, tc->cfg, tc->ooo, tc->late_sink);
    play(&run, tc->events);
    cr_assert_str_eq(log_str(&run), tc->expect, "case %s:\n--- got ---\n%s--- want ---\n%s", tc->name, log_str(&run),
                     tc->expect);
    run_close(&run);
}

/* Without key: the record key groups (the Kafka message key); records without one form the group "". */
Test(window, unkeyed_groups_by_record_key) {
    run_t run;
    run_open(&run, "type: tumbling, size: 10s, " AGG_SV, "0", false);
    static const char *const rkeys[] = {"m1", NULL, "m2", "m1", NULL};
    for (int i = 0; i < 5; i++) {
        weir_record_t rec;
        weir_record_init(&rec, weir_task_pipeline(run.task)->source.rt);
        rec.v[0] = weir_v_str("f", 1);
        rec.v[1] = weir_v_long(1000 + i);
        rec.v[2] = weir_v_double(i + 1);
        rec.ts = 1000 + i;
        rec.key = rkeys[i];
        rec.key_len = rkeys[i] ? strlen(rkeys[i]) : 0;
        weir_task_process(run.task, &rec);
        weir_record_free(&rec);
    }
    weir_task_advance(run.task, WEIR_WM_END);
    cr_assert_str_eq(log_str(&run),
                     "m1 [0,10000) n=2 s=5 final\n"
                     " [0,10000) n=2 s=7 final\n"
                     "m2 [0,10000) n=1 s=3 final\n",
                     "%s", log_str(&run));
    run_close(&run);
}

Test(window, output_record_json_with_key_field_and_id) {
    run_t run;
    run_open(&run, "key: k, type: session, gap: 1s, aggregate: {n: count(), hi: max(ts)}", "0", false);
    run.full_json = true;
    play(&run, "s-1@1000=1 s-1@1500=2 !end");
    cr_assert_str_eq(log_str(&run),
                     "{\"key\":\"s-1\",\"k\":\"s-1\",\"window_start\":1000,\"window_end\":2500,\"last_ts\":1500,"
                     "\"n\":2,\"hi\":1500,\"final\":true,\"id\":\"p/w/s-1/1000\"}\n");
    run_close(&run);
}

Test(window, output_row_types) {
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 1s, aggregate: {n: count(), s: sum(ts), m: mean(ts), x: max(v)}", "0",
             true);
    const weir_plan_t *plan = &run.pl->nodes[0].plan;
    cr_assert_eq(plan->nports, 2);
    cr_assert_str_eq(plan->ports[1].suffix, "late");
    cr_assert(plan->port_used[0] && plan->port_used[1] && !plan->port_used[2]);
    const weir_rowtype_t *rt = plan->ports[0].rt;
    const char *want[] = {"key", "k", "window_start", "window_end", "n", "s", "m", "x", "final", "id"};
    const weir_type_t types[] = {WEIR_STRING, WEIR_STRING, WEIR_LONG,   WEIR_LONG, WEIR_LONG,
                                 WEIR_LONG,   WEIR_DOUBLE, WEIR_DOUBLE, WEIR_BOOL, WEIR_STRING};
    cr_assert_eq(rt->nfields, (int)WEIR_ARRAY_SIZE(want));
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(want); i++) {
        cr_assert_str_eq(rt->fields[i].name, want[i]);
        cr_assert_eq(rt->fields[i].type, types[i], "field %s", want[i]);
    }
    cr_assert(rt->fields[6].nullable && rt->fields[7].nullable && !rt->fields[5].nullable);
    cr_assert_eq(plan->ports[1].rt->nfields, 3);
    run_close(&run);
}

Test(window, idle_partition_advances_by_processing_time) {
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false);
    play(&run, "a@1000=1 a@2000=2");
    int64_t now = 1000000;
    weir_task_idle_tick(run.task, now); /* sees the records: active */
    weir_task_idle_tick(run.task, now + 500);
    cr_assert_str_eq(log_str(&run), "", "idle for 500 ms < 1 s: nothing fires");
    cr_assert_eq(weir_task_watermark(run.task), 2000);
    weir_task_idle_tick(run.task, now + 7000);
    cr_assert_eq(weir_task_watermark(run.task), 9000, "wm = max_ts + idle time");
    cr_assert_str_eq(log_str(&run), "");
    weir_task_idle_tick(run.task, now + 8000);
    cr_assert_str_eq(log_str(&run), "a [0,10000) n=2 s=3 final\n");
    /* A record arriving makes the partition active again. */
    play(&run, "a@10500=5");
    weir_task_idle_tick(run.task, now + 8200);
    weir_task_idle_tick(run.task, now + 8400);
    cr_assert_eq(weir_task_watermark(run.task), 10500);
    run_close(&run);
}

/* ---- configuration errors ---- */

typedef struct err_case {
    const char *cfg;
    const char *want; /* substring of the message */
} err_case_t;

static const err_case_t err_cases[] = {
    {"key: k, type: rolling, size: 10s, " AGG_SV, "test.yaml:7:41: node 'w': type: expected tumbling"},
    {"key: k, type: tumbling, " AGG_SV, "window type needs 'size'"},
    {"key: k, type: tumbling, size: 10s, slide: 5s, " AGG_SV, "'slide' does not apply"},
    {"key: k, type: sliding, size: 10s, slide: 20s, " AGG_SV, "must not exceed size"},
    {"key: k, type: session, " AGG_SV, "needs 'gap'"},
    {"key: k, type: tumbling, size: 10s", "missing required key 'aggregate'"},
    {"key: k, type: tumbling, size: 10s, aggregate: {n: median(v)}", "column 1: unknown function 'median'"},
    {"key: k, type: tumbling, size: 10s, aggregate: {n: \"sum(v +)\"}", "aggregate.n: column 8:"},
    {"key: k, type: tumbling, size: 10s, aggregate: {n: sum(k)}", "needs a numeric"},
    {"key: k, type: tumbling, size: 10s, aggregate: {n: sum()}", "sum() needs an argument"},
    {"key: k, type: tumbling, size: 10s, aggregate: {n: sum}", "expected FUNCTION(expression)"},
    {"key: k, type: tumbling, size: 10s, aggregate: {window_end: count()}", "output field 'window_end' already exists"},
    {"key: k, type: tumbling, size: 10s, aggregate: {k: count()}", "output field 'k' already exists"},
    {"key: nope, type: tumbling, size: 10s, " AGG_SV, "key: "},
    {"key: k, type: tumbling, size: 10s, sizes: 1, " AGG_SV, "unknown key 'sizes'"},
    /* issue 13: fan-out bounded (WINDOW_MAX_PANES); 1000d/1ms would fire 8.6e10 windows per record. */
    {"key: k, type: sliding, size: 1000d, slide: 1ms, " AGG_SV,
     "test.yaml:7:70: node 'w': slide: size 86400000000 ms in panes of gcd(size, slide) = 1 ms makes 86400000000 "
     "panes per window (and up to 86400000000 windows per record); the limit is 100000"},
    {"key: k, type: sliding, size: 100001ms, slide: 2ms, " AGG_SV, "makes 100001 panes per window"},
};

ParameterizedTestParameters(window, config_errors) {
    return cr_make_param_array(int, param_indices(WEIR_ARRAY_SIZE(err_cases)), WEIR_ARRAY_SIZE(err_cases));
}

ParameterizedTest(int *idx, window, config_errors) {
    const err_case_t *ec = &err_cases[*idx];
    char err[WEIR_ERRSTR_SIZE] = "";
    weir_pipeline_t *pl = load(ec->cfg, "0", false, err, sizeof(err));
    cr_assert_null(pl, "accepted: %s", ec->cfg);
    cr_assert(strstr(err, ec->want), "error for %s:\n  got:  %s\n  want: ...%s...", ec->cfg, err, ec->want);
    cr_assert(!strncmp(err, "test.yaml:", 10), "not placed: %s", err);
}

/* ---- generated streams ---- */

typedef struct ev {
    int key;
    int64_t ts;
    bool vnull;
    double v;
} ev_t;

static uint64_t rng_state;
static uint64_t rng(void) { /* xorshift64*: fixed seed, same stream everywhere */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* n events over nkeys keys, ~step ms apart, displaced backwards by up to jitter ms (so some are late). */
static ev_t *gen_events(size_t n, int nkeys, int64_t step, int64_t jitter, uint64_t seed) {
    rng_state = seed;
    ev_t *e = weir_malloc(n * sizeof(*e));
    for (size_t i = 0; i < n; i++) {
        e[i].key = (int)(rng() % (uint64_t)nkeys);
        e[i].ts = 1700000000000LL + (int64_t)i * step - (int64_t)(rng() % (uint64_t)(jitter + 1));
        if (rng() % 50 == 0) /* a tail of stragglers, late for every window type */
            e[i].ts -= (int64_t)(rng() % 15000);
        e[i].vnull = rng() % 10 == 0;
        /* Values with a large offset: a naive variance would lose precision. */
        e[i].v = 1e6 + (double)(rng() % 100000) / 100.0;
    }
    return e;
}

static void feed_ev(weir_task_t *t, const ev_t *e) {
    char k[16];
    snprintf(k, sizeof(k), "k%d", e->key);
    feed(t, k, e->ts, e->vnull, e->v);
}

#define REF_AGGS                                                                                                       \
    "aggregate: {n: count(), c: count(v), s: sum(v), m: mean(v), lo: min(v), hi: max(v), sd: stddev(v), "              \
    "f: first(v), l: last(v)}"

/* ---- the reference implementation ---- */

typedef struct member {
    int key;
    int64_t start;
    size_t ev; /* index into the events: arrival order */
} member_t;

static int member_cmp(const void *a, const void *b) {
    const member_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->ev < y->ev ? -1 : x->ev > y->ev;
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

/* Aggregate the members m[0..n) of one window, straightforwardly (two passes, long double). */
static out_rec_t ref_window(const ev_t *ev, const member_t *m, size_t n, int64_t end) {
    out_rec_t o = {.key = m[0].key, .start = m[0].start, .end = end, .final = true};
    long double sum = 0;
    int64_t ft = 0, lt = 0;
    size_t fi = 0, li = 0;
    o.n = (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        const ev_t *e = &ev[m[i].ev];
        if (e->ts > o.last_ts || i == 0)
            o.last_ts = e->ts;
        if (e->vnull)
            continue;
        if (!o.c || e->v < o.lo)
            o.lo = e->v;
        if (!o.c || e->v > o.hi)
            o.hi = e->v;
        if (!o.c || e->ts < ft) {
            ft = e->ts;
            fi = m[i].ev;
        }
        if (!o.c || e->ts >= lt) {
            lt = e->ts;
            li = m[i].ev;
        }
        sum += e->v;
        o.c++;
    }
    o.s = (double)sum;
    o.m_null = o.lo_null = o.c == 0;
    o.sd_null = o.c < 2;
    if (o.c) {
        long double mean = sum / o.c, ss = 0;
        o.m = (double)mean;
        for (size_t i = 0; i < n; i++)
            if (!ev[m[i].ev].vnull)
                ss += (ev[m[i].ev].v - mean) * (ev[m[i].ev].v - mean);
        if (o.c > 1)
            o.sd = (double)sqrtl(ss / (o.c - 1));
        o.f = ev[fi].v;
        o.l = ev[li].v;
    }
    return o;
}

/* Tumbling/sliding: each record joins every window containing it that the watermark has not closed. */
static out_rec_t *ref_panes(const ev_t *ev, size_t n, int64_t ooo, int64_t size, int64_t slide, int64_t late,
                            size_t *nout) {
    size_t cap = n * (size_t)((size + slide - 1) / slide + 1), nm = 0;
    member_t *m = weir_malloc(cap * sizeof(*m));
    int64_t max_ts = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        int64_t wm = max_ts == INT64_MIN ? INT64_MIN / 2 : max_ts - ooo;
        for (int64_t s = floordiv(ev[i].ts, slide) * slide; s > ev[i].ts - size; s -= slide)
            if (s + size + late > wm)
                m[nm++] = (member_t){ev[i].key, s, i};
        if (ev[i].ts > max_ts)
            max_ts = ev[i].ts;
    }
    qsort(m, nm, sizeof(*m), member_cmp);
    out_rec_t *out = weir_malloc((nm + 1) * sizeof(*out));
    *nout = 0;
    for (size_t i = 0; i < nm;) {
        size_t j = i;
        while (j < nm && m[j].key == m[i].key && m[j].start == m[i].start)
            j++;
        out[(*nout)++] = ref_window(ev, m + i, j - i, m[i].start + size);
        i = j;
    }
    free(m);
    return out;
}

/* Sessions, simulated per key with plain lists: close what the watermark passed, merge what overlaps. */
static out_rec_t *ref_sessions(const ev_t *ev, size_t n, int nkeys, int64_t ooo, int64_t gap, int64_t late,
                               size_t *nout) {
    typedef struct sess {
        int64_t start, last;
        size_t *evs;
        size_t nev, cap;
    } sess_t;
    sess_t **open = weir_calloc((size_t)nkeys, sizeof(sess_t *));
    size_t *nopen = weir_calloc((size_t)nkeys, sizeof(size_t));
    member_t *m = weir_malloc(n * sizeof(*m));
    size_t nm = 0;
    /* Closed sessions are recorded as members (key, start, ev); start is unique per key. */
    int64_t max_ts = INT64_MIN;
    for (size_t i = 0; i <= n; i++) {
        int64_t wm = i == n ? INT64_MAX : max_ts == INT64_MIN ? INT64_MIN / 2 : max_ts - ooo;
        for (int k = 0; k < nkeys; k++) {
            if (i < n && k != ev[i].key)
                continue;
            for (size_t s = 0; s < nopen[k];) {
                sess_t *x = &open[k][s];
                if (i == n || x->last + gap + late <= wm) {
                    for (size_t j = 0; j < x->nev; j++)
                        m[nm++] = (member_t){k, x->start, x->evs[j]};
                    free(x->evs);
                    open[k][s] = open[k][--nopen[k]];
                } else {
                    s++;
                }
            }
        }
        if (i == n)
            break;
        int k = ev[i].key;
        int64_t ts = ev[i].ts;
        sess_t *into = NULL;
        for (size_t s = 0; s < nopen[k];) {
            sess_t *x = &open[k][s];
            if (x->start < ts + gap && ts < x->last + gap) {
                if (!into) {
                    into = x;
                    s++;
                    continue;
                }
                /* merge x into `into` */
                if (x->start < into->start)
                    into->start = x->start;
                if (x->last > into->last)
                    into->last = x->last;
                into->evs = weir_realloc(into->evs, (into->nev + x->nev) * sizeof(size_t));
                memcpy(into->evs + into->nev, x->evs, x->nev * sizeof(size_t));
                into->nev += x->nev;
                free(x->evs);
                size_t idx = (size_t)(into - open[k]);
                open[k][s] = open[k][--nopen[k]];
                if (idx == nopen[k]) /* `into` was the last one and just moved */
                    into = &open[k][s];
            } else {
                s++;
            }
        }
        if (!into) {
            if (ts + gap + late > wm) {
                open[k] = weir_realloc(open[k], (nopen[k] + 1) * sizeof(sess_t));
                into = &open[k][nopen[k]++];
                *into = (sess_t){.start = ts, .last = ts};
            }
        }
        if (into) {
            if (ts < into->start)
                into->start = ts;
            if (ts > into->last)
                into->last = ts;
            into->evs = weir_realloc(into->evs, (into->nev + 1) * sizeof(size_t));
            into->evs[into->nev++] = i;
        }
        if (ts > max_ts)
            max_ts = ts;
    }
    qsort(m, nm, sizeof(*m), member_cmp);
    out_rec_t *out = weir_malloc((nm + 1) * sizeof(*out));
    *nout = 0;
    for (size_t i = 0; i < nm;) {
        size_t j = i;
        while (j < nm && m[j].key == m[i].key && m[j].start == m[i].start)
            j++;
        out_rec_t o = ref_window(ev, m + i, j - i, 0);
        o.end = o.last_ts + gap;
        out[(*nout)++] = o;
        i = j;
    }
    for (int k = 0; k < nkeys; k++)
        free(open[k]);
    free(open);
    free(nopen);
    free(m);
    return out;
}

static int out_cmp(const void *a, const void *b) {
    const out_rec_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b))); }

static void compare(out_rec_t *got, size_t ngot, out_rec_t *want, size_t nwant, const char *what) {
    /* Keep the final results only (early ones are checked by the table). */
    size_t nf = 0;
    for (size_t i = 0; i < ngot; i++)
        if (got[i].final)
            got[nf++] = got[i];
    qsort(got, nf, sizeof(*got), out_cmp);
    qsort(want, nwant, sizeof(*want), out_cmp);
    cr_assert_eq(nf, nwant, "%s: %zu windows, reference has %zu", what, nf, nwant);
    for (size_t i = 0; i < nf; i++) {
        const out_rec_t *g = &got[i], *w = &want[i];
        cr_assert(g->key == w->key && g->start == w->start && g->end == w->end,
                  "%s: window %zu is k%d [%" PRId64 ",%" PRId64 "), reference k%d [%" PRId64 ",%" PRId64 ")", what, i,
                  g->key, g->start, g->end, w->key, w->start, w->end);
        cr_assert(g->n == w->n && g->c == w->c,
                  "%s: k%d@%" PRId64 ": count %" PRId64 "/%" PRId64 ", reference %" PRId64 "/%" PRId64, what, g->key,
                  g->start, g->n, g->c, w->n, w->c);
        cr_assert(g->m_null == w->m_null && g->sd_null == w->sd_null && g->lo_null == w->lo_null, "%s: nulls", what);
        cr_assert(close_to(g->s, w->s), "%s: k%d@%" PRId64 ": sum %.17g vs %.17g", what, g->key, g->start, g->s, w->s);
        cr_assert(close_to(g->m, w->m), "%s: mean %.17g vs %.17g", what, g->m, w->m);
        cr_assert(fabs(g->sd - w->sd) <= 1e-6 * fmax(1.0, w->sd), "%s: k%d@%" PRId64 ": stddev %.17g vs %.17g", what,
                  g->key, g->start, g->sd, w->sd);
        cr_assert(g->lo == w->lo && g->hi == w->hi, "%s: min/max", what);
        cr_assert(g->f == w->f && g->l == w->l, "%s: k%d@%" PRId64 ": first/last %g/%g vs %g/%g", what, g->key,
                  g->start, g->f, g->l, w->f, w->l);
        if (w->last_ts && got[i].last_ts)
            cr_assert_eq(g->last_ts, w->last_ts, "%s: last_ts", what);
    }
}

typedef struct ref_case {
    const char *name;
    const char *cfg;
    int64_t size, slide, gap, late; /* slide 0: session */
} ref_case_t;

static void reference_run(const ref_case_t *rc) {
    const size_t n = 300000;
    const int nkeys = 2000;
    const int64_t ooo = 2000;
    ev_t *ev = gen_events(n, nkeys, 3, 2600, 42); /* jitter > ooo, plus stragglers: some are late */
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "key: k, %s, " REF_AGGS, rc->cfg);
    run_t run;
    run_open(&run, cfg, "2s", true);
    run.collect = true;
    for (size_t i = 0; i < n; i++)
        feed_ev(run.task, &ev[i]);
    weir_task_advance(run.task, WEIR_WM_END);
    size_t nwant;
    out_rec_t *want = rc->slide ? ref_panes(ev, n, ooo, rc->size, rc->slide, rc->late, &nwant)
                                : ref_sessions(ev, n, nkeys, ooo, rc->gap, rc->late, &nwant);
    cr_assert_gt(nwant, 1000);
    /* Nothing silently dropped: records in windows + late records = records in. */
    size_t late = 0;
    for (size_t i = 0; i + 5 <= run.log.len; i++)
        late += !memcmp(run.log.p + i, "late ", 5) && (i == 0 || run.log.p[i - 1] == '\n');
    cr_assert_gt(late, 100, "the stream should have late records (%zu, log %zu bytes)", late, run.log.len);
    if (rc->slide == rc->size) {
        int64_t in_windows = 0;
        for (size_t i = 0; i < run.nouts; i++)
            in_windows += run.outs[i].final ? run.outs[i].n : 0;
        cr_assert_eq((size_t)in_windows + late, n, "%" PRId64 " in windows + %zu late != %zu", in_windows, late, n);
    }
    compare(run.outs, run.nouts, want, nwant, rc->name);
    free(want);
    free(ev);
    run_close(&run);
}

static const ref_case_t ref_cases[] = {
    {"tumbling", "type: tumbling, size: 10s", 10000, 10000, 0, 0},
    {"tumbling_lateness_early", "type: tumbling, size: 10s, allowed_lateness: 1s, emit_early: true", 10000, 10000, 0,
     1000},
    {"sliding", "type: sliding, size: 10s, slide: 4s", 10000, 4000, 0, 0},
    {"sliding_lateness", "type: sliding, size: 9s, slide: 3s, allowed_lateness: 500ms", 9000, 3000, 0, 500},
    /* size/slide 20: two-stacks over panes, with stragglers and lateness invalidating cached ranges */
    {"sliding_many_panes_lateness", "type: sliding, size: 10s, slide: 500ms, allowed_lateness: 1s", 10000, 500, 0,
     1000},
    {"session", "type: session, gap: 2s", 0, 0, 2000, 0},
    {"session_lateness_early", "type: session, gap: 1500ms, allowed_lateness: 1s, emit_early: true", 0, 0, 1500, 1000},
};

ParameterizedTestParameters(window, reference) {
    return cr_make_param_array(int, param_indices(WEIR_ARRAY_SIZE(ref_cases)), WEIR_ARRAY_SIZE(ref_cases));
}

ParameterizedTest(int *idx, window, reference, .timeout = 120) { reference_run(&ref_cases[*idx]); }

/* ---- snapshot / restore ---- */

static const char *const snap_cfgs[] = {
    "key: k, type: tumbling, size: 5s, " REF_AGGS,
    "key: k, type: tumbling, size: 5s, allowed_lateness: 1s, emit_early: true, " REF_AGGS,
    "key: k, type: sliding, size: 6s, slide: 4s, allowed_lateness: 1s, emit_early: true, " REF_AGGS,
    "key: k, type: sliding, size: 12s, slide: 1s, allowed_lateness: 1s, emit_early: true, " REF_AGGS,
    "key: k, type: sliding, size: 15s, slide: 2s, allowed_lateness: 2s, " REF_AGGS,
    "key: k, type: session, gap: 1s, allowed_lateness: 1s, emit_early: true, " REF_AGGS,
};

ParameterizedTestParameters(window, snapshot_restore_mid_stream) {
    return cr_make_param_array(int, param_indices(WEIR_ARRAY_SIZE(snap_cfgs)), WEIR_ARRAY_SIZE(snap_cfgs));
}

/* Interrupt the stream at several points: snapshot, throw the task away, restore
 * into a new one and continue. The output must be byte-identical. */
ParameterizedTest(int *idx, window, snapshot_restore_mid_stream) {
    const char *const *cfg = &snap_cfgs[*idx];
    const size_t n = 30000;
    ev_t *ev = gen_events(n, 300, 2, 2600, 7);
    run_t ref;
    run_open(&ref, *cfg, "2s", true);
    ref.full_json = true;
    for (size_t i = 0; i < n; i++)
        feed_ev(ref.task, &ev[i]);
    weir_task_advance(ref.task, WEIR_WM_END);

    run_t run;
    run_open(&run, *cfg, "2s", true);
    run.full_json = true;
    const size_t cuts[] = {1, 777, 5000, 12345, 29999};
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (c < WEIR_ARRAY_SIZE(cuts) && i == cuts[c]) {
            weir_buf_t snap = {0};
            cr_assert_eq(weir_task_snapshot(run.task, &snap), WEIR_OK);
            weir_task_destroy(run.task);
            run.task = weir_task_new(run.pl, on_sink, on_reject, &run);
            char err[WEIR_ERRSTR_SIZE];
            cr_assert_eq(weir_task_restore(run.task, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
            weir_buf_free(&snap);
            c++;
        }
        feed_ev(run.task, &ev[i]);
    }
    weir_task_advance(run.task, WEIR_WM_END);
    cr_assert_gt(ref.log.len, 1000);
    cr_assert_eq(run.log.len, ref.log.len, "restored run wrote %zu bytes, uninterrupted %zu", run.log.len, ref.log.len);
    cr_assert(!memcmp(run.log.p, ref.log.p, ref.log.len), "restored output differs");
    run_close(&ref);
    run_close(&run);
    free(ev);
}

Test(window, restore_rejects_bad_snapshots) {
    run_t a, b;
    run_open(&a, "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false);
    run_open(&b, "key: k, type: tumbling, size: 20s, " AGG_SV, "0", false);
    play(&a, "x@1000=1 y@2000=2");
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(a.task, &snap), WEIR_OK);
    char err[WEIR_ERRSTR_SIZE];
    cr_assert_eq(weir_task_restore(b.task, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_ERR);
    cr_assert(strstr(err, "different window configuration"), "%s", err);
    /* Every single-byte corruption is refused (CRC) or, in the task header, fails cleanly. */
    for (size_t i = 0; i < snap.len; i++) {
        snap.p[i] ^= 0x5a;
        weir_task_t *t = weir_task_new(a.pl, on_sink, on_reject, &a);
        int rc = weir_task_restore(t, snap.p, snap.len, NULL, err, sizeof(err));
        if (i >= 20) /* past the task header (node count, max_ts, watermark) */
            cr_assert_eq(rc, WEIR_ERR, "byte %zu flipped, accepted", i);
        weir_task_destroy(t);
        snap.p[i] ^= 0x5a;
    }
    /* Truncated. */
    for (size_t len = 0; len < snap.len; len += 7) {
        weir_task_t *t = weir_task_new(a.pl, on_sink, on_reject, &a);
        cr_assert_eq(weir_task_restore(t, snap.p, len, NULL, err, sizeof(err)), WEIR_ERR);
        weir_task_destroy(t);
    }
    /* The good one restores and fires the same windows. */
    cr_assert_eq(weir_task_restore(b.task, snap.p, 0, NULL, err, sizeof(err)), WEIR_ERR);
    weir_task_t *t = weir_task_new(a.pl, on_sink, on_reject, &a);
    cr_assert_eq(weir_task_restore(t, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    weir_task_advance(t, WEIR_WM_END);
    cr_assert_str_eq(log_str(&a), "x [0,10000) n=1 s=1 final\ny [0,10000) n=1 s=2 final\n");
    weir_task_destroy(t);
    weir_buf_free(&snap);
    run_close(&a);
    run_close(&b);
}

/* A snapshot whose CRC is right but whose state the operator could never have
 * written is refused. Found by tests/fuzz/fuzz_snapshot: an aggregate count of
 * 5.1e18 overflowed (signed) when a sliding window merged its panes. The
 * fields patched are found from the end of the window frame (the last one):
 * CRC (4), before it per aggregate {n, value, ts} (8 each), before those
 * early_done (1), rows, last_ts, start (8 each). */
Test(window, restore_refuses_inconsistent_state) {
    /* after: bytes between the patched i64 and the end of the frame */
    static const struct {
        size_t after;
        int64_t value;
        const char *why;
    } rows[] = {
        {4 + 24 + 16, (int64_t)5098074778183401472, "aggregate 0 is inconsistent"}, /* count() n */
        {4 + 16, -1, "aggregate 1 is inconsistent"},                                /* sum(v) n */
        {4 + 48 + 1, -5, "window 0 is inconsistent"},                               /* rows */
        {4 + 48 + 1 + 16, INT64_MAX - 5, "window 0 is inconsistent"},               /* start */
        {4 + 48 + 1 + 16, 1234, "window 0 is inconsistent"},                        /* start off the grid */
    };
    run_t a;
    run_open(&a, "key: k, type: tumbling, size: 10s, " AGG_SV, "0", false);
    play(&a, "x@1000=1");
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(a.task, &snap), WEIR_OK);
    size_t frame = snap.len;
    while (frame >= 4 && memcmp(snap.p + frame - 4, "WSNP", 4))
        frame--;
    cr_assert_geq(frame, 4);
    frame -= 4;
    char err[WEIR_ERRSTR_SIZE];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint8_t *p = malloc(snap.len);
        memcpy(p, snap.p, snap.len);
        for (int b = 0; b < 8; b++)
            p[snap.len - rows[i].after - 8 + b] = (uint8_t)((uint64_t)rows[i].value >> (8 * b));
        uint32_t crc = weir_crc32(0, p + frame, snap.len - 4 - frame);
        for (int b = 0; b < 4; b++)
            p[snap.len - 4 + b] = (uint8_t)(crc >> (8 * b));
        weir_task_t *t = weir_task_new(a.pl, on_sink, on_reject, &a);
        cr_assert_eq(weir_task_restore(t, p, snap.len, NULL, err, sizeof(err)), WEIR_ERR, "row %zu accepted", i);
        cr_assert(strstr(err, rows[i].why), "row %zu: %s", i, err);
        weir_task_destroy(t);
        free(p);
    }
    weir_buf_free(&snap);
    run_close(&a);
}

Test(window, many_keys_state_is_released) {
    /* 200k keys open and closed twice: the state goes back to nothing and reuses its memory. */
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 1s, aggregate: {n: count()}", "0", false);
    run.collect = false;
    char k[16];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200000; i++) {
            snprintf(k, sizeof(k), "key-%d", i);
            feed(run.task, k, 1000 * (2 * round + 1) + i % 1000, false, 1);
        }
        feed(run.task, "tick", 1000 * (2 * round + 3), false, 1);
    }
    weir_task_advance(run.task, WEIR_WM_END);
    size_t lines = 0;
    for (size_t i = 0; i < run.log.len; i++)
        lines += run.log.p[i] == '\n';
    cr_assert_eq(lines, 2 * 200000 + 2);
    run_close(&run);
}

/* ---- state dump (`weir state dump`) ---- */

/* The window node's dump() of the task's state, appended to b. */
static void dump_into(run_t *run, weir_task_t *t, weir_buf_t *b) {
    const weir_operator_class_t *cls = run->pl->nodes[0].plan.cls;
    cr_assert_not_null(cls->dump);
    cr_assert_eq(cls->dump(weir_task_node_state(t, 0), b), WEIR_OK);
}

static json_t *dump_parse(const weir_buf_t *b) {
    json_error_t je;
    json_t *j = json_loadb((const char *)b->p, b->len, 0, &je);
    cr_assert_not_null(j, "dump is not JSON: %s at %d: %.*s", je.text, je.position, (int)b->len, (const char *)b->p);
    return j;
}

static json_t *dump_json(run_t *run) {
    weir_buf_t b = {0};
    dump_into(run, run->task, &b);
    json_t *j = dump_parse(&b);
    weir_buf_free(&b);
    return j;
}

static void check_num(const json_t *w, const char *name, double want) {
    const json_t *v = json_object_get(json_object_get(w, "aggregates"), name);
    cr_assert(json_is_number(v), "aggregate %s missing or not a number", name);
    cr_assert(fabs(json_number_value(v) - want) <= 1e-12 * (fabs(want) + 1), "%s = %.17g, want %.17g", name,
              json_number_value(v), want);
}

static void check_int(const json_t *w, const char *name, json_int_t want) {
    const json_t *v = json_object_get(json_object_get(w, "aggregates"), name);
    cr_assert(json_is_integer(v), "aggregate %s missing or not an integer", name);
    cr_assert_eq(json_integer_value(v), want, "%s = %lld, want %lld", name, (long long)json_integer_value(v),
                 (long long)want);
}

static void check_null(const json_t *w, const char *name) {
    const json_t *aggs = json_object_get(w, "aggregates");
    cr_assert(json_object_get(aggs, name) && json_is_null(json_object_get(aggs, name)), "aggregate %s is not null",
              name);
}

static void check_window(const json_t *w, const char *key, int64_t start, int64_t end) {
    cr_assert(json_is_object(w));
    cr_assert_str_eq(json_string_value(json_object_get(w, "key")), key);
    cr_assert_eq(json_integer_value(json_object_get(w, "window_start")), start);
    cr_assert_eq(json_integer_value(json_object_get(w, "window_end")), end);
}

/* Snapshot, restore into a new task, dump: byte for byte the dump of the original. */
static void check_dump_survives_restore(run_t *run) {
    weir_buf_t d1 = {0}, d2 = {0}, snap = {0}, snap2 = {0};
    dump_into(run, run->task, &d1);
    cr_assert_eq(weir_task_snapshot(run->task, &snap), WEIR_OK);
    /* Read-only: a second dump and a second snapshot are unchanged by the first dump. */
    dump_into(run, run->task, &d2);
    cr_assert(d1.len == d2.len && !memcmp(d1.p, d2.p, d1.len), "second dump differs");
    cr_assert_eq(weir_task_snapshot(run->task, &snap2), WEIR_OK);
    cr_assert(snap.len == snap2.len && !memcmp(snap.p, snap2.p, snap.len), "dump changed the state");
    weir_task_t *t = weir_task_new(run->pl, on_sink, on_reject, run);
    char err[WEIR_ERRSTR_SIZE];
    cr_assert_eq(weir_task_restore(t, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    weir_buf_reset(&d2);
    dump_into(run, t, &d2);
    cr_assert_eq(d2.len, d1.len, "restored dump has %zu bytes, original %zu", d2.len, d1.len);
    cr_assert(!memcmp(d1.p, d2.p, d1.len), "restored dump differs:\n%.*s\n---\n%.*s", (int)d1.len, (const char *)d1.p,
              (int)d2.len, (const char *)d2.p);
    weir_task_destroy(t);
    weir_buf_free(&d1);
    weir_buf_free(&d2);
    weir_buf_free(&snap);
    weir_buf_free(&snap2);
}

Test(window, dump_tumbling_by_hand) {
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 10s, count_nulls: true, " REF_AGGS, "100s", false);
    json_t *j = dump_json(&run);
    cr_assert(json_is_null(json_object_get(j, "watermark")));
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 0);
    cr_assert_eq(json_array_size(json_object_get(j, "windows")), 0);
    json_decref(j);

    play(&run, "b@1000=1 b@2000=3 b@12000=5 a@500=2 a@9000=~ a@3000=4");
    feed(run.task, "z", -200000, false, 1); /* behind the watermark (12000 - 100s): late */
    j = dump_json(&run);
    cr_assert_eq(json_integer_value(json_object_get(j, "watermark")), 12000 - 100000);
    cr_assert_eq(json_integer_value(json_object_get(j, "late")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys_rejected")), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 2);
    const json_t *ws = json_object_get(j, "windows");
    cr_assert_eq(json_array_size(ws), 3);
    /* Sorted by key, then window_start (not by arrival: b came first). */
    const json_t *w = json_array_get(ws, 0);
    check_window(w, "a", 0, 10000);
    cr_assert_null(json_object_get(w, "last_ts"));
    check_int(w, "n", 3);
    check_int(w, "c", 2);
    check_int(w, "c_nulls", 1);
    check_num(w, "s", 6);
    check_int(w, "s_nulls", 1);
    check_num(w, "m", 3);
    check_num(w, "lo", 2);
    check_num(w, "hi", 4);
    check_num(w, "sd", sqrt(2.0));
    check_num(w, "f", 2); /* ts 500 */
    check_num(w, "l", 4); /* ts 3000: the null at 9000 is skipped */
    cr_assert_null(json_object_get(json_object_get(w, "aggregates"), "n_nulls")); /* count(): no argument */
    w = json_array_get(ws, 1);
    check_window(w, "b", 0, 10000);
    check_int(w, "n", 2);
    check_int(w, "c_nulls", 0);
    check_num(w, "s", 4);
    check_num(w, "m", 2);
    check_num(w, "lo", 1);
    check_num(w, "hi", 3);
    check_num(w, "sd", sqrt(2.0));
    check_num(w, "f", 1);
    check_num(w, "l", 3);
    w = json_array_get(ws, 2);
    check_window(w, "b", 10000, 20000);
    check_int(w, "n", 1);
    check_num(w, "s", 5);
    check_num(w, "m", 5);
    check_null(w, "sd"); /* one value: no sample stddev */
    check_num(w, "f", 5);
    check_num(w, "l", 5);
    json_decref(j);
    check_dump_survives_restore(&run);

    /* After the watermark passes 10000, only b's second window is open. */
    play(&run, "!wm=10000");
    j = dump_json(&run);
    cr_assert_eq(json_integer_value(json_object_get(j, "watermark")), 10000);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 1);
    cr_assert_eq(json_array_size(json_object_get(j, "windows")), 1);
    check_window(json_array_get(json_object_get(j, "windows"), 0), "b", 10000, 20000);
    json_decref(j);
    check_dump_survives_restore(&run);
    run_close(&run);
}

Test(window, dump_sliding_by_hand) {
    run_t run;
    run_open(&run, "key: k, type: sliding, size: 10s, slide: 5s, aggregate: {n: count(), s: sum(v), m: mean(v)}",
             "100s", false);
    /* Panes of 5s: [0,5s) {1}, [5s,10s) {2}, [10s,15s) {4}, then a gap, [60s,65s) {8}. */
    play(&run, "x@1000=1 x@6000=2 x@12000=4 x@60000=8 !wm=12000");
    json_t *j = dump_json(&run);
    const json_t *ws = json_object_get(j, "windows");
    /* [-5s,5s) and [0,10s) fired at 12000; no window in the gap is listed (nothing would be emitted). */
    static const struct {
        int64_t start;
        int n;
        double s;
    } want[] = {{5000, 2, 6}, {10000, 1, 4}, {55000, 1, 8}, {60000, 1, 8}};
    cr_assert_eq(json_array_size(ws), WEIR_ARRAY_SIZE(want), "%s", json_dumps(j, 0));
    for (size_t i = 0; i < WEIR_ARRAY_SIZE(want); i++) {
        const json_t *w = json_array_get(ws, i);
        check_window(w, "x", want[i].start, want[i].start + 10000);
        check_int(w, "n", want[i].n);
        check_num(w, "s", want[i].s);
        check_num(w, "m", want[i].s / want[i].n);
    }
    json_decref(j);
    check_dump_survives_restore(&run);
    run_close(&run);
}

Test(window, dump_session_by_hand) {
    run_t run;
    run_open(&run, "key: k, type: session, gap: 1s, aggregate: {n: count(), m: mean(v), hi: max(ts)}", "100s", false);
    play(&run, "t@200=7 s@5000=2 s@1000=1 s@1500=3");
    json_t *j = dump_json(&run);
    const json_t *ws = json_object_get(j, "windows");
    cr_assert_eq(json_array_size(ws), 3);
    const json_t *w = json_array_get(ws, 0);
    check_window(w, "s", 1000, 2500);
    cr_assert_eq(json_integer_value(json_object_get(w, "last_ts")), 1500);
    check_int(w, "n", 2);
    check_num(w, "m", 2);
    check_int(w, "hi", 1500);
    w = json_array_get(ws, 1);
    check_window(w, "s", 5000, 6000);
    cr_assert_eq(json_integer_value(json_object_get(w, "last_ts")), 5000);
    check_int(w, "n", 1);
    w = json_array_get(ws, 2);
    check_window(w, "t", 200, 1200);
    check_num(w, "m", 7);
    json_decref(j);
    check_dump_survives_restore(&run);
    run_close(&run);
}

static double agg_num(const json_t *aggs, const char *name, bool *null) {
    const json_t *v = json_object_get(aggs, name);
    cr_assert_not_null(v, "no aggregate %s", name);
    if (null)
        *null = json_is_null(v);
    return json_is_null(v) ? 0 : json_number_value(v);
}

/* A dump's windows as the out_rec_t that collect_out builds from emitted records. */
static out_rec_t *dump_outs(const json_t *j, size_t *n) {
    const json_t *ws = json_object_get(j, "windows");
    *n = json_array_size(ws);
    out_rec_t *o = weir_calloc(*n + 1, sizeof(*o));
    const char *prev_key = NULL;
    int64_t prev_start = 0;
    for (size_t i = 0; i < *n; i++) {
        const json_t *w = json_array_get(ws, i), *aggs = json_object_get(w, "aggregates");
        const char *key = json_string_value(json_object_get(w, "key"));
        int64_t start = json_integer_value(json_object_get(w, "window_start"));
        /* Sorted by key bytes, then window_start. */
        if (prev_key) {
            int r = strcmp(prev_key, key);
            cr_assert(r < 0 || (r == 0 && prev_start < start),
                      "dump not sorted at %zu: %s/%" PRId64 " then %s/%" PRId64, i, prev_key, prev_start, key, start);
        }
        prev_key = key;
        prev_start = start;
        o[i].key = key[0] == 'k' ? atoi(key + 1) : -1;
        o[i].start = start;
        o[i].end = json_integer_value(json_object_get(w, "window_end"));
        o[i].last_ts = json_integer_value(json_object_get(w, "last_ts")); /* 0 if absent */
        o[i].final = true;
        o[i].n = (int64_t)agg_num(aggs, "n", NULL);
        o[i].c = (int64_t)agg_num(aggs, "c", NULL);
        o[i].s = agg_num(aggs, "s", NULL);
        o[i].m = agg_num(aggs, "m", &o[i].m_null);
        o[i].lo = agg_num(aggs, "lo", &o[i].lo_null);
        o[i].hi = agg_num(aggs, "hi", NULL);
        o[i].sd = agg_num(aggs, "sd", &o[i].sd_null);
        o[i].f = agg_num(aggs, "f", NULL);
        o[i].l = agg_num(aggs, "l", NULL);
    }
    return o;
}

static bool out_same(const out_rec_t *a, const out_rec_t *b) {
    /* Doubles compared exactly: the dump shows what firing now would emit, bit for bit. */
    return a->key == b->key && a->start == b->start && a->end == b->end && a->last_ts == b->last_ts && a->n == b->n &&
           a->c == b->c && a->s == b->s && a->m == b->m && a->lo == b->lo && a->hi == b->hi && a->sd == b->sd &&
           a->f == b->f && a->l == b->l && a->m_null == b->m_null && a->lo_null == b->lo_null &&
           a->sd_null == b->sd_null;
}

ParameterizedTestParameters(window, dump_equals_what_fires) {
    return cr_make_param_array(int, param_indices(WEIR_ARRAY_SIZE(snap_cfgs)), WEIR_ARRAY_SIZE(snap_cfgs));
}

/* Mid-stream, with out-of-order events, stragglers, early results and windows
 * already fired: the dump lists exactly the windows end of input then emits,
 * with the same values to the bit, and survives snapshot/restore byte for byte. */
ParameterizedTest(int *idx, window, dump_equals_what_fires, .timeout = 120) {
    const char *cfg = snap_cfgs[*idx];
    const size_t n = 20000;
    ev_t *ev = gen_events(n, 300, 2, 2600, 11);
    const size_t cuts[] = {1, 3000, 20000};
    size_t from = 0;
    for (size_t c = 0; c < WEIR_ARRAY_SIZE(cuts); c++) {
        run_t run;
        run_open(&run, cfg, "2s", true);
        for (size_t i = from; i < cuts[c]; i++)
            feed_ev(run.task, &ev[i]);
        check_dump_survives_restore(&run);
        json_t *j = dump_json(&run);
        size_t nd;
        out_rec_t *d = dump_outs(j, &nd);
        cr_assert_eq((size_t)json_integer_value(json_object_get(j, "keys")) > 0, nd > 0);
        json_decref(j);
        qsort(d, nd, sizeof(*d), out_cmp); /* by key number, as the fired ones */
        run.collect = true;
        weir_task_advance(run.task, WEIR_WM_END);
        qsort(run.outs, run.nouts, sizeof(*run.outs), out_cmp);
        cr_assert_eq(nd, run.nouts, "cut %zu: dump lists %zu windows, end of input fires %zu", cuts[c], nd, run.nouts);
        if (cuts[c] > 1000)
            cr_assert_gt(nd, 100);
        for (size_t i = 0; i < nd; i++)
            cr_assert(out_same(&d[i], &run.outs[i]),
                      "cut %zu, window %zu: dump k%d [%" PRId64 ",%" PRId64 ") m=%.17g, fired k%d [%" PRId64 ",%" PRId64
                      ") m=%.17g",
                      cuts[c], i, d[i].key, d[i].start, d[i].end, d[i].m, run.outs[i].key, run.outs[i].start,
                      run.outs[i].end, run.outs[i].m);
        free(d);
        run_close(&run);
        from = 0;
    }
    free(ev);
}

Test(window, dump_many_keys, .timeout = 120) {
    /* 300k keys: sorted, complete, and no quadratic step (this runs in well under a second). */
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 1s, aggregate: {n: count()}", "1h", false);
    char k[16];
    const int nk = 300000;
    for (int i = 0; i < nk; i++) {
        snprintf(k, sizeof(k), "key-%d", (int)((int64_t)i * 7919 % nk));
        feed(run.task, k, 1000 + i % 3000, false, 1);
    }
    json_t *j = dump_json(&run);
    const json_t *ws = json_object_get(j, "windows");
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), nk);
    cr_assert_eq(json_array_size(ws), (size_t)nk);
    for (size_t i = 1; i < (size_t)nk; i++)
        cr_assert_lt(strcmp(json_string_value(json_object_get(json_array_get(ws, i - 1), "key")),
                            json_string_value(json_object_get(json_array_get(ws, i), "key"))),
                     0);
    json_decref(j);
    run_close(&run);
}

/* ---- bounded memory: max_keys eviction ---- */

/* 100 keys through max_keys 10: 90 evictions, each emitting its key's open window
 * with final false and the id "<pipeline>/<node>/<key>/<start>/evicted"; the state
 * holds exactly the 10 most recently updated keys; the node's stats count 90.
 * A snapshot keeps the recency order: the restored task evicts the same key next. */
Test(window, bounds_evict_least_recently_updated) {
    run_t run;
    run_open(&run, "key: k, type: tumbling, size: 10s, max_keys: 10, " AGG_SV, "1m", false);
    run.full_json = true;
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "k%02d", i);
        feed(run.task, k, 1000 + i, false, i);
        if (i >= 1) /* keep k00 recently updated: it must survive */
            feed(run.task, "k00", 1000, false, 0);
    }
    feed(run.task, "k00", 1000, false, 0);
    const char *log = log_str(&run);
    int evicted = 0;
    for (const char *p = log; (p = strstr(p, "/evicted\"")); p++)
        evicted++;
    cr_assert_eq(evicted, 90, "%s", log);
    cr_assert(
        strstr(
            log,
            "\"key\":\"k01\",\"k\":\"k01\",\"window_start\":0,\"window_end\":10000,\"n\":1,\"s\":1.0,\"final\":false,"
            "\"id\":\"p/w/k01/0/evicted\""),
        "%s", log);
    cr_assert_null(strstr(log, "p/w/k00/"), "k00 was evicted although recently updated:\n%s", log);
    cr_assert_null(strstr(log, "\"final\":true"), "nothing is final yet:\n%s", log);
    json_t *j = dump_json(&run);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys")), 10);
    cr_assert_eq(json_integer_value(json_object_get(j, "keys_evicted")), 90);
    json_decref(j);
    const weir_plan_t *plan = &run.pl->nodes[0].plan;
    cr_assert_not_null(plan->stats);
    cr_assert_eq(atomic_load(&plan->stats->evicted_keys), 90);
    /* Survivors: k00 and k91..k99. The next new key evicts k91 (k00 was updated after it). */
    weir_buf_t snap = {0};
    cr_assert_eq(weir_task_snapshot(run.task, &snap), WEIR_OK);
    weir_task_t *t2 = weir_task_new(run.pl, on_sink, on_reject, &run);
    char err[WEIR_ERRSTR_SIZE];
    cr_assert_eq(weir_task_restore(t2, snap.p, snap.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    for (weir_task_t *t = run.task; t; t = t == run.task ? t2 : NULL) {
        weir_buf_reset(&run.log);
        feed(t, "new", 2000, false, 7);
        cr_assert(strstr(log_str(&run), "\"id\":\"p/w/k91/0/evicted\""), "%s task evicted:\n%s",
                  t == run.task ? "original" : "restored", log_str(&run));
    }
    weir_task_destroy(t2);
    weir_buf_free(&snap);
    run_close(&run);
}
