/* Pipeline files: compile errors name the file, line and key; the compiled
 * graph has the resolved fields and types; a task runs the graph. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pipeline.h"
#include "runtime.h"
#include "task.h"

static char err[WEIR_ERRSTR_SIZE];

#define HEAD                                                                                                           \
    "pipeline: p\n"                                                                                                    \
    "source:\n"                                                                                                        \
    "  fields: {id: string, t: double, n: long, note: string?}\n"

static weir_pipeline_t *load(const char *yaml) { return weir_pipeline_load_string("p.yaml", yaml, err, sizeof(err)); }

static void expect_error(const char *yaml, const char *want) {
    weir_pipeline_t *pl = load(yaml);
    if (pl)
        weir_pipeline_destroy(pl);
    cr_assert_null(pl, "accepted:\n%s", yaml);
    cr_assert(strstr(err, want), "error '%s' does not contain '%s'", err, want);
}

Test(pipeline, errors_name_file_line_and_key) {
    /* Each row: a broken file and the exact place + message it must report. */
    static const struct {
        const char *yaml, *want;
    } rows[] = {
        {"source: {fields: {a: long}}\nnodes: [{name: x, op: filter, where: 'a > 1'}]\n",
         "p.yaml:1:1: missing required key 'pipeline'"},
        {"pipeline: p\nnodes: [{name: x, op: filter, where: 'a > 1'}]\n", "missing required key 'source'"},
        {HEAD, "p.yaml:1:1: missing required key 'nodes'"},
        {HEAD "nodes:\n  - {name: a, op: frobnicate}\n", "p.yaml:5:19: node 'a': unknown op 'frobnicate'"},
        {HEAD "nodes:\n  - {op: filter, where: 't > 1'}\n", "p.yaml:5:5: nodes[0]: missing required key 'name'"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 'tt > 1'}\n",
         "p.yaml:5:34: node 'a': where: column 1: unknown field 'tt'"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't + 1'}\n",
         "p.yaml:5:34: node 'a': where: must be a boolean expression, got double"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 'id > 1'}\n", "node 'a': where: column"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't > 1', wehre: x}\n",
         "p.yaml:5:43: node 'a' (filter): unknown key 'wehre'"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't > 1'}\n  - {name: a, op: filter, where: 't > 2'}\n",
         "p.yaml:6:12: duplicate node name 'a'"},
        {HEAD "nodes:\n  - {name: a, op: filter, input: b, where: 't > 1'}\n  - {name: b, op: filter, input: a, "
              "where: 't > 2'}\n",
         "is part of a cycle"},
        {HEAD "nodes:\n  - {name: a, op: filter, input: nope, where: 't > 1'}\n", "p.yaml:5:34: unknown node 'nope'"},
        {HEAD "nodes:\n  - {name: a, op: map, set: {u: 'lower(t)'}}\n", "p.yaml:5:33: node 'a': set.u:"},
        {HEAD "nodes:\n  - {name: a, op: map, drop: [nothere]}\n",
         "p.yaml:5:31: node 'a': drop: unknown field 'nothere'"},
        {HEAD "nodes:\n  - {name: a, op: map}\n", "node 'a': map needs 'set' or 'drop'"},
        /* issue 13: the compiled expression was leaked on this error (LeakSanitizer, build-asan). */
        {HEAD "nodes:\n  - {name: a, op: map, set: {u: null}}\n", "p.yaml:5:33: node 'a': set.u: the literal null"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't > 1'}\nsinks:\n  - {input: zz, kafka: {topic: o}}\n",
         "p.yaml:7:13: unknown node 'zz'"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't > 1'}\nsinks:\n  - {input: a}\n",
         "sinks[0]: needs 'kafka: {topic: NAME}'"},
        {HEAD
         "nodes:\n  - {name: a, op: filter, where: 't > 1'}\nsinks:\n  - {input: a, kafka: {topic: o}, format: xml}\n",
         "format: expected avro or json, got 'xml'"},
        {HEAD
         "nodes:\n  - {name: a, op: filter, where: 't > 1'}\nsinks:\n  - {input: a, kafka: {topic: o}, format: avro}\n",
         "format avro needs 'schema: FILE.avsc'"},
        {HEAD "nodes:\n  - {name: a, op: filter, where: 't > 1'}\nsinks:\n  - {input: a.late, kafka: {topic: o}}\n",
         "node 'a' (filter) has no output 'late'"},
        {"pipeline: p\nsource: {format: avro, schema: /nonexistent/x.avsc}\nnodes: [{name: a, op: filter, where: "
         "'true'}]\n",
         "p.yaml:2:32: schema '/nonexistent/x.avsc' not found"},
        {"pipeline: p\nsource: {fields: {a: int}}\nnodes: [{name: a, op: filter, where: 'true'}]\n",
         "p.yaml:2:22: fields.a: unknown type 'int'"},
        {HEAD "  event_time: nope\nnodes: [{name: a, op: filter, where: 'true'}]\n",
         "p.yaml:4:15: event_time: unknown field 'nope'"},
        {HEAD "  watermark: {max_out_of_orderness: soon}\nnodes: [{name: a, op: filter, where: 'true'}]\n",
         "p.yaml:4:37: expected a duration"},
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\ncheckpoint: {interval: 0s}\n",
         "checkpoint.interval must be > 0"},
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\ndelivery: twice\n",
         "p.yaml:5:11: delivery: expected at_least_once or exactly_once"},
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\nextra: 1\n", "p.yaml:5:1: pipeline: unknown key 'extra'"},
        /* issue 13: an empty sink list, empty topic names and a duration without a unit. */
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\nsinks: []\n",
         "p.yaml:5:8: sinks: empty list (give at least one sink)"},
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\nsinks:\n  - {input: a, kafka: {topic: \"\"}}\n",
         "p.yaml:6:31: topic: expected a topic name, got an empty string"},
        {"pipeline: p\nsource: {kafka: {topics: [\"\"]}, fields: {a: long}}\nnodes: [{name: a, op: filter, "
         "where: 'true'}]\n",
         "p.yaml:2:27: topic: expected a topic name, got an empty string"},
        {HEAD "nodes: [{name: a, op: filter, where: 'true'}]\ndead_letter: {kafka: {topic: ''}}\n",
         "p.yaml:5:30: topic: expected a topic name"},
        {HEAD "nodes: [{name: w, op: window, type: tumbling, size: 10, aggregates: {n: count}}]\n",
         "p.yaml:4:53: expected a duration with a unit such as 500ms"},
        {HEAD "  watermark: {max_out_of_orderness: 250}\nnodes: [{name: a, op: filter, where: 'true'}]\n",
         "p.yaml:4:37: expected a duration with a unit"},
        {HEAD "nodes: [{name: source, op: filter, where: 'true'}]\n", "node name 'source' is reserved"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        expect_error(rows[i].yaml, rows[i].want);
}

Test(pipeline, schema_mismatch_with_a_sink_fails_at_start_up) {
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             HEAD "nodes: [{name: a, op: filter, where: 'true'}]\n"
                  "sinks:\n  - {input: a, kafka: {topic: o}, format: avro, schema: %s/schemas/sensor_enriched.avsc}\n",
             getenv("WEIR_SRC") ? getenv("WEIR_SRC") : ".");
    expect_error(yaml, "sink of 'a'");
}

Test(pipeline, compiles_dag_with_resolved_types) {
    weir_pipeline_t *pl =
        load(HEAD "  event_time: n\n"
                  "nodes:\n"
                  "  - {name: m, op: map, input: f, set: {t2: 't * 2', n: 'n + 1', flag: 'note is null'}, drop: [id]}\n"
                  "  - {name: f, op: filter, where: 't > 0'}\n"
                  "  - {name: g, op: filter, input: f, where: 'n % 2 = 0'}\n"
                  "sinks:\n  - {input: m, kafka: {topic: out}}\n  - {input: g, kafka: {topic: out2}}\n");
    cr_assert_not_null(pl, "%s", err);
    cr_assert_eq(pl->nnodes, 3);
    /* Topological order: f before m and g although m is written first. */
    int f = weir_pipeline_find_node(pl, "f"), m = weir_pipeline_find_node(pl, "m");
    int pos_f = -1, pos_m = -1;
    for (int k = 0; k < pl->nnodes; k++) {
        if (pl->order[k] == f)
            pos_f = k;
        if (pl->order[k] == m)
            pos_m = k;
    }
    cr_assert_lt(pos_f, pos_m);
    const weir_rowtype_t *out = pl->nodes[m].plan.ports[0].rt;
    /* id dropped; n replaced in place (long); t2 and flag appended. */
    cr_assert_eq(out->nfields, 5);
    cr_assert_str_eq(out->fields[0].name, "t");
    cr_assert_str_eq(out->fields[1].name, "n");
    cr_assert_eq(out->fields[1].type, WEIR_LONG);
    cr_assert_str_eq(out->fields[3].name, "t2");
    cr_assert_eq(out->fields[3].type, WEIR_DOUBLE);
    cr_assert_str_eq(out->fields[4].name, "flag");
    cr_assert_eq(out->fields[4].type, WEIR_BOOL);
    cr_assert_not(out->fields[4].nullable);
    cr_assert_eq(pl->source.event_time_slot, 2);
    cr_assert_str_eq(pl->dead_letter_topic, "p.dlq");
    cr_assert_str_eq(pl->sinks[0].label, "m");
    /* The printed graph names every node, field and type. */
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    weir_pipeline_print(pl, fp);
    fclose(fp);
    cr_assert(strstr(text, "node m: map <- f"), "%s", text);
    cr_assert(strstr(text, "t2#3:double"), "%s", text);
    cr_assert(strstr(text, "note#3:string?"), "%s", text);
    free(text);
    weir_pipeline_destroy(pl);
}

typedef struct collect {
    int n[4];
    double t2[16];
    int64_t nn[16];
} collect_t;

static void sink_cb(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)seq;
    collect_t *c = opaque;
    if (sink == 0 && c->n[0] < 16) {
        c->t2[c->n[0]] = rec->v[3].u.d;
        c->nn[c->n[0]] = rec->v[1].u.i;
    }
    c->n[sink]++;
}

Test(pipeline, task_runs_the_graph) {
    weir_pipeline_t *pl =
        load(HEAD "nodes:\n"
                  "  - {name: f, op: filter, where: 't > 0'}\n"
                  "  - {name: m, op: map, input: f, set: {t2: 't * 2', n: 'n + 1'}, drop: [id]}\n"
                  "  - {name: g, op: filter, input: f, where: 'n % 2 = 0'}\n"
                  "sinks:\n  - {input: m, kafka: {topic: out}}\n  - {input: g, kafka: {topic: out2}}\n");
    cr_assert_not_null(pl, "%s", err);
    collect_t c = {0};
    weir_task_t *t = weir_task_new(pl, sink_cb, NULL, &c);
    weir_record_t r;
    weir_record_init(&r, pl->source.rt);
    double ts[] = {1.5, -2, 0, 4.25, 3};
    for (int i = 0; i < 5; i++) {
        weir_record_clear(&r);
        r.v[0] = weir_v_str("k", 1);
        r.v[1] = weir_v_double(ts[i]);
        r.v[2] = weir_v_long(i);
        weir_task_process(t, &r);
    }
    /* t > 0 passes records 0, 3, 4; g keeps those with even n: 0 and 4. */
    cr_assert_eq(c.n[0], 3);
    cr_assert_eq(c.n[1], 2);
    cr_assert_eq(c.t2[0], 3.0);
    cr_assert_eq(c.t2[1], 8.5);
    cr_assert_eq(c.nn[2], 5);
    cr_assert_eq(weir_task_stats(t)->records_in, 5);
    /* Snapshot of stateless operators restores into a fresh task. */
    weir_buf_t b = {0};
    cr_assert_eq(weir_task_snapshot(t, &b), WEIR_OK);
    weir_task_t *t2 = weir_task_new(pl, sink_cb, NULL, &c);
    cr_assert_eq(weir_task_restore(t2, b.p, b.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    /* --reset-state names a node of the pipeline or of the checkpoint; a typo is refused (issue 13). */
    weir_restore_opts_t typo = {.reset = "g,nosuch"};
    cr_assert_eq(weir_task_restore(t2, b.p, b.len, &typo, err, sizeof(err)), WEIR_ERR);
    cr_assert_str_eq(err, "--reset-state: no node 'nosuch' in the pipeline or in the checkpoint");
    weir_restore_opts_t ok = {.reset = "g"};
    cr_assert_eq(weir_task_restore(t2, b.p, b.len, &ok, err, sizeof(err)), WEIR_OK, "%s", err);
    b.p[b.len / 2] ^= 1;
    cr_assert_eq(weir_task_restore(t2, b.p, b.len, NULL, err, sizeof(err)), WEIR_ERR);
    weir_buf_free(&b);
    weir_task_destroy(t2);
    weir_record_free(&r);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
}

/* Per sink, the seq argument of each call, in order. */
typedef struct seqs {
    int n[2];
    uint64_t seq[2][8];
} seqs_t;

static void seq_cb(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)rec;
    seqs_t *s = opaque;
    if (s->n[sink] < 8)
        s->seq[sink][s->n[sink]] = seq;
    s->n[sink]++;
}

static void feed_n(weir_task_t *t, const weir_pipeline_t *pl, int from, int to) {
    weir_record_t r;
    weir_record_init(&r, pl->source.rt);
    for (int i = from; i < to; i++) {
        weir_record_clear(&r);
        r.v[0] = weir_v_str("k", 1);
        r.v[1] = weir_v_double(1.0);
        r.v[2] = weir_v_long(i);
        weir_task_process(t, &r);
    }
    weir_record_free(&r);
}

Test(pipeline, sink_seq_numbers_each_sinks_outputs_and_is_restored) {
    weir_pipeline_t *pl =
        load(HEAD "nodes:\n"
                  "  - {name: f, op: filter, where: 't > 0'}\n"
                  "  - {name: g, op: filter, input: f, where: 'n % 2 = 0'}\n"
                  "sinks:\n  - {input: f, kafka: {topic: out}}\n  - {input: g, kafka: {topic: out2}}\n");
    cr_assert_not_null(pl, "%s", err);
    /* Two tasks, each with its own opaque: their callbacks never mix. */
    seqs_t a = {0}, other = {0};
    weir_task_t *t = weir_task_new(pl, seq_cb, NULL, &a);
    weir_task_t *u = weir_task_new(pl, seq_cb, NULL, &other);
    feed_n(t, pl, 0, 5); /* sink 0: n = 0..4; sink 1: n = 0, 2, 4 */
    feed_n(u, pl, 0, 1);
    cr_assert_eq(a.n[0], 5);
    cr_assert_eq(a.n[1], 3);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(a.seq[0][i], (uint64_t)i);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(a.seq[1][i], (uint64_t)i);
    cr_assert_eq(other.n[0], 1);
    cr_assert_eq(other.seq[0][0], 0, "another task numbers its own outputs");
    /* The numbers are in the snapshot: a restored task goes on from them. */
    weir_buf_t b = {0};
    cr_assert_eq(weir_task_snapshot(t, &b), WEIR_OK);
    seqs_t r = {0};
    weir_task_t *t2 = weir_task_new(pl, seq_cb, NULL, &r);
    cr_assert_eq(weir_task_restore(t2, b.p, b.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    feed_n(t2, pl, 6, 7); /* n = 6: both sinks */
    cr_assert_eq(r.n[0], 1);
    cr_assert_eq(r.seq[0][0], 5);
    cr_assert_eq(r.n[1], 1);
    cr_assert_eq(r.seq[1][0], 3);
    weir_buf_free(&b);
    weir_task_destroy(t2);
    weir_task_destroy(u);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
}

/* A double event time is converted to epoch ms only within +-2^60 ms: the JSON
 * message {"t": -1e308} (found by tests/fuzz/fuzz_json) used to reach
 * (int64_t)-1e308, undefined behaviour. */
Test(pipeline, event_time_double_out_of_range_is_refused) {
    weir_pipeline_t *pl = load(HEAD "  event_time: t\nnodes: [{name: f, op: filter, where: 'true'}]\n");
    cr_assert_not_null(pl, "%s", err);
    weir_record_t r;
    weir_record_init(&r, pl->source.rt);
    static const struct {
        double t;
        int rc;
        int64_t ts;
    } rows[] = {
        {1700000000000.9, WEIR_OK, 1700000000000},
        {-1e308, WEIR_ERR, 0},
        {1e300, WEIR_ERR, 0},
        {9223372036854775808.0, WEIR_ERR, 0},
        {-9223372036854775808.0, WEIR_ERR, 0},
        {1152921504606846975.0, WEIR_ERR, 0}, /* 2^60 - 1 as a double is 2^60 */
        {1152921504606845952.0, WEIR_OK, 1152921504606845952},
        {-1152921504606845952.0, WEIR_OK, -1152921504606845952},
        {-INFINITY, WEIR_ERR, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        weir_record_clear(&r);
        r.v[0] = weir_v_str("k", 1);
        r.v[1] = weir_v_double(rows[i].t);
        r.v[2] = weir_v_long(1);
        int rc = weir_source_stamp(&pl->source, &r, 0, err, sizeof(err));
        cr_assert_eq(rc, rows[i].rc, "row %zu: %s", i, err);
        if (rc == WEIR_OK)
            cr_assert_eq(r.ts, rows[i].ts, "row %zu", i);
        else
            cr_assert(strstr(err, "event time field 't'"), "row %zu: %s", i, err);
    }
    weir_record_free(&r);
    weir_pipeline_destroy(pl);
}

/* Event times (a long field, or the message timestamp) are refused outside
 * +-2^60 ms: {"n": -9223372036854775807} used to make the task's watermark
 * (ts - max_out_of_orderness) overflow. */
Test(pipeline, event_time_out_of_range_is_refused) {
    weir_pipeline_t *pl = load(HEAD "  event_time: n\n  watermark: {max_out_of_orderness: 5s}\n"
                                    "nodes: [{name: f, op: filter, where: 'true'}]\n");
    cr_assert_not_null(pl, "%s", err);
    weir_record_t r;
    weir_record_init(&r, pl->source.rt);
    static const struct {
        int64_t n;
        int rc;
    } rows[] = {
        {1700000000000, WEIR_OK},           {-1700000000000, WEIR_OK},    {((int64_t)1 << 60) - 1, WEIR_OK},
        {-((int64_t)1 << 60) + 1, WEIR_OK}, {(int64_t)1 << 60, WEIR_ERR}, {-((int64_t)1 << 60), WEIR_ERR},
        {INT64_MIN + 1, WEIR_ERR},          {INT64_MIN, WEIR_ERR},        {INT64_MAX, WEIR_ERR},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        weir_record_clear(&r);
        r.v[0] = weir_v_str("k", 1);
        r.v[1] = weir_v_double(1);
        r.v[2] = weir_v_long(rows[i].n);
        cr_assert_eq(weir_source_stamp(&pl->source, &r, 0, err, sizeof(err)), rows[i].rc, "row %zu: %s", i, err);
        if (rows[i].rc == WEIR_OK)
            cr_assert_eq(r.ts, rows[i].n);
        else
            cr_assert(strstr(err, "event time field 'n'") && strstr(err, "out of range"), "%s", err);
    }
    weir_pipeline_destroy(pl);
    /* Without an event-time field: the message timestamp, same range; none is fine. */
    pl = load(HEAD "nodes: [{name: f, op: filter, where: 'true'}]\n");
    cr_assert_not_null(pl, "%s", err);
    cr_assert_eq(weir_source_stamp(&pl->source, &r, WEIR_TS_NONE, err, sizeof(err)), WEIR_OK);
    cr_assert_eq(weir_source_stamp(&pl->source, &r, 1700000000000, err, sizeof(err)), WEIR_OK);
    cr_assert_eq(weir_source_stamp(&pl->source, &r, INT64_MAX, err, sizeof(err)), WEIR_ERR);
    cr_assert(strstr(err, "message timestamp"), "%s", err);
    weir_record_free(&r);
    weir_pipeline_destroy(pl);
}

Test(pipeline, fingerprint_changes_with_node_config_only) {
    const char *a = HEAD "nodes: [{name: f, op: filter, where: 't > 0'}]\n";
    const char *b = HEAD "nodes: [{name: f, op: filter, where: 't > 1'}]\n";
    const char *c = HEAD "nodes: [{name: f, op: filter, where: 't > 0'}]\nsinks: [{input: f, kafka: {topic: x}}]\n";
    weir_pipeline_t *pa = load(a), *pb = load(b), *pc = load(c);
    cr_assert(pa && pb && pc, "%s", err);
    char *fa = weir_pipeline_fingerprint(pa), *fb = weir_pipeline_fingerprint(pb), *fc = weir_pipeline_fingerprint(pc);
    cr_assert(strncmp(fa, "f=filter:", 9) == 0, "%s", fa);
    cr_assert_str_neq(fa, fb);
    cr_assert_str_eq(fa, fc, "a new sink must not change the fingerprint");
    /* Restore across the reconfiguration is refused unless the node is reset. */
    weir_task_t *ta = weir_task_new(pa, sink_cb, NULL, NULL), *tb = weir_task_new(pb, sink_cb, NULL, NULL);
    weir_buf_t buf = {0};
    cr_assert_eq(weir_task_snapshot(ta, &buf), WEIR_OK);
    cr_assert_eq(
        weir_task_restore(tb, buf.p, buf.len, &(weir_restore_opts_t){.saved_fp = fa, .cur_fp = fb}, err, sizeof(err)),
        WEIR_ERR);
    cr_assert(strstr(err, "node 'f' was reconfigured"), "%s", err);
    cr_assert_eq(weir_task_restore(tb, buf.p, buf.len,
                                   &(weir_restore_opts_t){.saved_fp = fa, .cur_fp = fb, .reset = "f"}, err,
                                   sizeof(err)),
                 WEIR_OK, "%s", err);
    cr_assert_eq(
        weir_task_restore(tb, buf.p, buf.len, &(weir_restore_opts_t){.saved_fp = fa, .cur_fp = fc}, err, sizeof(err)),
        WEIR_OK, "%s", err);
    weir_buf_free(&buf);
    weir_task_destroy(ta);
    weir_task_destroy(tb);
    free(fa);
    free(fb);
    free(fc);
    weir_pipeline_destroy(pa);
    weir_pipeline_destroy(pb);
    weir_pipeline_destroy(pc);
}

/* The task snapshot written by hand through the writer: u32 nodes | task frame | per node name + frame. */
static void hand_snapshot_v(weir_buf_t *b, const char *second_tag, int version) {
    weir_writer_t w = {.buf = b};
    weir_w_u32(&w, 2);
    weir_w_frame_begin(&w, "task", (uint16_t)version);
    weir_w_i64(&w, WEIR_TS_NONE);
    weir_w_i64(&w, WEIR_TS_NONE);
    weir_w_u32(&w, 0); /* sink counters */
    if (version >= 2) {
        weir_w_u32(&w, 1); /* stages: one, nothing sent to it */
        weir_w_u64(&w, 0);
        weir_w_u32(&w, 0); /* upstream tasks: none (a source task) */
    }
    weir_w_frame_end(&w);
    weir_w_str(&w, "f");
    weir_w_frame_begin(&w, "filter", 1);
    weir_w_frame_end(&w);
    weir_w_str(&w, "m");
    weir_w_frame_begin(&w, second_tag, 1);
    weir_w_frame_end(&w);
}

static void hand_snapshot(weir_buf_t *b, const char *second_tag) { hand_snapshot_v(b, second_tag, 2); }

Test(pipeline, stateless_nodes_write_empty_frames_and_one_reader_parses_them) {
    weir_pipeline_t *pl = load(HEAD "nodes:\n  - {name: f, op: filter, where: 't > 0'}\n"
                                    "  - {name: m, op: map, input: f, set: {u: 't * 2'}}\n");
    cr_assert_not_null(pl, "%s", err);
    cr_assert_null(pl->nodes[0].plan.cls->snapshot, "filter is stateless: no snapshot callback");
    cr_assert_null(pl->nodes[1].plan.cls->restore, "map is stateless: no restore callback");
    weir_task_t *t = weir_task_new(pl, sink_cb, NULL, NULL);
    weir_buf_t got = {0}, want = {0}, wrong = {0};
    cr_assert_eq(weir_task_snapshot(t, &got), WEIR_OK);
    hand_snapshot(&want, "map");
    cr_assert_eq(got.len, want.len);
    cr_assert(!memcmp(got.p, want.p, want.len), "the engine's empty frames differ from the hand-written ones");

    /* a version-1 task frame (before stages) still restores */
    weir_buf_t v1 = {0};
    hand_snapshot_v(&v1, "map", 1);
    weir_task_t *t1 = weir_task_new(pl, sink_cb, NULL, NULL);
    cr_assert_eq(weir_task_restore(t1, v1.p, v1.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    weir_task_destroy(t1);
    weir_buf_free(&v1);

    weir_task_snapshot_view_t v;
    cr_assert_eq(weir_task_snapshot_parse(got.p, got.len, &v), WEIR_OK, "%s", v.errstr);
    cr_assert_eq(v.node_count, 2);
    cr_assert_eq(v.nnodes, 2);
    cr_assert_eq(v.max_ts, WEIR_TS_NONE);
    cr_assert_eq(v.nsinks, 0);
    cr_assert_str_eq(v.nodes[0].name, "f");
    cr_assert_str_eq(v.nodes[1].name, "m");
    cr_assert_eq(v.nodes[1].frame.tag_len, 3);
    cr_assert(!memcmp(v.nodes[1].frame.tag, "map", 3));
    cr_assert(v.nodes[0].frame.crc_ok && v.nodes[1].frame.crc_ok);
    cr_assert_eq(v.nodes[1].frame.payload_len, 0);
    cr_assert_eq(v.trailing, 0);
    weir_task_snapshot_view_free(&v);

    /* A truncated snapshot: the node that could not be read is named. */
    cr_assert_eq(weir_task_snapshot_parse(got.p, got.len - 2, &v), WEIR_ERR);
    cr_assert_eq(v.bad_node, 1);
    weir_task_snapshot_view_free(&v);

    /* The engine checks a stateless node's frame as the operator did. */
    cr_assert_eq(weir_task_restore(t, got.p, got.len, NULL, err, sizeof(err)), WEIR_OK, "%s", err);
    hand_snapshot(&wrong, "filter");
    cr_assert_eq(weir_task_restore(t, wrong.p, wrong.len, NULL, err, sizeof(err)), WEIR_ERR);
    cr_assert_str_eq(err, "node 'm': snapshot is for operator 'filter', expected 'map'");
    cr_assert_eq(weir_task_restore(t, got.p, got.len - 2, NULL, err, sizeof(err)), WEIR_ERR);
    cr_assert(!strncmp(err, "task snapshot: node 1: truncated", 32), "%s", err);
    weir_buf_free(&got);
    weir_buf_free(&want);
    weir_buf_free(&wrong);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
}

/* ---- the operator contract, with a fake class ---- */

typedef struct fake_conf {
    int64_t n;
    const char *label;
    int64_t every_ms;
    double ratio;
} fake_conf_t;

static const weir_config_map_t fake_config_map[] = {
    {WEIR_CM_LONG, "n", "7", false, offsetof(fake_conf_t, n), "a count"},
    {WEIR_CM_STR, "label", NULL, true, offsetof(fake_conf_t, label), "a name"},
    {WEIR_CM_DURATION, "every", "2s", false, offsetof(fake_conf_t, every_ms), "a period"},
    {WEIR_CM_DOUBLE, "ratio", NULL, false, offsetof(fake_conf_t, ratio), "a ratio (default: not given)"},
    {0},
};

static fake_conf_t fake_seen; /* what configure found in plan->conf */
static int fake_configured;

static void fake_conf_init(void *p) { ((fake_conf_t *)p)->ratio = -1; }

static int fake_configure(weir_plan_t *plan, char *errstr, size_t errstr_size) {
    fake_conf_t *conf = plan->conf;
    fake_seen = *conf;
    fake_configured++;
    if (conf->n > 100)
        return weir_cfg_error(weir_cfg_get(plan->cfg, "n"), errstr, errstr_size, "node '%s': n: at most 100",
                              plan->name);
    return WEIR_OK;
}

static void *fake_init(const weir_plan_t *plan) { return (void *)plan; }
static int fake_process(void *ctx, const weir_record_t *in, weir_emitter_t *em) {
    (void)ctx;
    (void)in;
    (void)em;
    return WEIR_OK;
}
static void fake_destroy(void *ctx) { (void)ctx; }
static int fake_snapshot(void *ctx, weir_writer_t *w) {
    (void)ctx;
    (void)w;
    return WEIR_OK;
}

static const weir_operator_class_t fake_class = {
    .abi = WEIR_OPERATOR_ABI,
    .name = "fake",
    .config_map = fake_config_map,
    .conf_size = sizeof(fake_conf_t),
    .conf_init = fake_conf_init,
    .configure = fake_configure,
    .init = fake_init,
    .process = fake_process,
    .destroy = fake_destroy,
};

/* Configure the fake class from YAML text as the pipeline compiler would. */
static int fake_compile(const char *yaml) {
    weir_cfg_t *cfg = weir_cfg_load_string("fake.yaml", yaml, err, sizeof(err));
    cr_assert_not_null(cfg, "%s", err);
    weir_plan_t plan = {.cls = &fake_class, .pipeline = "p", .name = "f", .cfg = cfg};
    memset(&fake_seen, 0, sizeof(fake_seen));
    fake_configured = 0;
    int rc = weir_plan_configure(&plan, err, sizeof(err));
    if (rc == WEIR_OK && fake_seen.label) /* borrowed from the tree: keep a comparable copy */
        cr_assert_str_eq(fake_seen.label, cfg->items[0]->scalar);
    weir_plan_release(&plan);
    cr_assert_null(plan.conf);
    weir_cfg_destroy(cfg);
    return rc;
}

Test(contract, engine_applies_the_config_map_before_configure) {
    /* Defaults (text in the map) and conf_init's "not given" reach configure. */
    cr_assert_eq(fake_compile("label: x\n"), WEIR_OK, "%s", err);
    cr_assert_eq(fake_configured, 1);
    cr_assert_eq(fake_seen.n, 7);
    cr_assert_eq(fake_seen.every_ms, 2000);
    cr_assert_eq(fake_seen.ratio, -1.0);
    /* Given values, typed. */
    cr_assert_eq(fake_compile("label: y\nn: 42\nevery: 1m\nratio: 0.25\n"), WEIR_OK, "%s", err);
    cr_assert_eq(fake_seen.n, 42);
    cr_assert_eq(fake_seen.every_ms, 60000);
    cr_assert_eq(fake_seen.ratio, 0.25);
    /* Type errors and a missing required key are placed, and configure never runs. */
    cr_assert_eq(fake_compile("label: x\nn: many\n"), WEIR_ERR);
    cr_assert_str_eq(err, "fake.yaml:2:4: expected an integer, got 'many'");
    cr_assert_eq(fake_configured, 0);
    cr_assert_eq(fake_compile("label: x\nevery: soon\n"), WEIR_ERR);
    cr_assert_str_eq(err,
                     "fake.yaml:2:8: expected a duration with a unit such as 500ms, 10s, 5m, 1h or 1d, got 'soon'");
    cr_assert_eq(fake_compile("n: 3\n"), WEIR_ERR);
    cr_assert_str_eq(err, "fake.yaml:1:1: missing required key 'label' (a name)");
    cr_assert_eq(fake_configured, 0);
    /* The range rule is configure's, on the values the map filled in. */
    cr_assert_eq(fake_compile("label: x\nn: 101\n"), WEIR_ERR);
    cr_assert_str_eq(err, "fake.yaml:2:4: node 'f': n: at most 100");
    cr_assert_eq(fake_configured, 1);
}

Test(contract, registry_refuses_a_class_that_breaks_the_contract) {
    for (const weir_operator_class_t *const *c = weir_operator_list(); *c; c++)
        cr_assert_eq(weir_operator_check(*c, err, sizeof(err)), WEIR_OK, "%s", err);
    cr_assert_eq(weir_operator_check(&fake_class, err, sizeof(err)), WEIR_OK, "%s", err);

    weir_operator_class_t bad = fake_class;
    bad.abi = WEIR_OPERATOR_ABI + 1;
    cr_assert_eq(weir_operator_check(&bad, err, sizeof(err)), WEIR_ERR);
    char want[200];
    snprintf(want, sizeof(want), "operator 'fake' was built for operator ABI %d, this weir has ABI %d",
             WEIR_OPERATOR_ABI + 1, WEIR_OPERATOR_ABI);
    cr_assert_str_eq(err, want);

    bad = fake_class;
    bad.restore = NULL;
    bad.snapshot = fake_snapshot;
    cr_assert_eq(weir_operator_check(&bad, err, sizeof(err)), WEIR_ERR);
    cr_assert(strstr(err, "snapshot and restore are both set"), "%s", err);

    bad = fake_class;
    bad.conf_size = offsetof(fake_conf_t, ratio); /* the double at `ratio` would be written past the end */
    cr_assert_eq(weir_operator_check(&bad, err, sizeof(err)), WEIR_ERR);
    cr_assert_str_eq(err, "operator 'fake': config key 'ratio' lies outside conf_size (24 bytes)");

    bad = fake_class;
    bad.process = NULL;
    cr_assert_eq(weir_operator_check(&bad, err, sizeof(err)), WEIR_ERR);
}
