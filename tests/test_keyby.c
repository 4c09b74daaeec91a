/*
 * keyBy through Kafka (docs/keyby.md), against a real `weir broker` (and
 * redis-server), with input that another client wrote with null keys, spread
 * over 8 partitions: one sensor's readings are in every partition.
 *
 *   one_member / two_members   tumbling and session windows by sensor_id, an
 *                              ARIMA per key on the tumbling means, a global
 *                              k-means and a per-record map: window results
 *                              equal a batch computation of the input (here, in
 *                              C), ARIMA equals a file-mode run over the input in
 *                              time order, one k-means model whose cluster
 *                              counts add up to the input, every id unique
 *   sigkill_restart            the same with Redis checkpoints, SIGKILL mid-stream
 *                              and a restart: exact after de-duplication by id,
 *                              duplicates byte-identical
 *   declared_partitioning      keyed input declared `partitioned_by: sensor_id`:
 *                              no repartition topic is created or written
 *   ids_stable_across_runs     two runs without Redis: identical id sets
 *   late_after_repartition     a record for a window that already fired downstream goes to the late
 *                              topic, and the fired window is not reported again
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "redis_harness.h"

#define N_REC 6000
#define N_SENSORS 12
#define N_PARTS 8
#define TS0 1700000000000LL
#define SESSION_GAP 5000

typedef struct ev {
    int sensor;
    int64_t ts;
    double v;
} ev_t;

static ev_t evs[N_REC];

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Sensor k is silent while (ts / 30 s) % 4 == k % 4: sessions end and start again. */
static bool silent(int k, int64_t ts) { return ((ts - TS0) / 30000) % 4 == k % 4; }

static void gen(void) {
    for (int i = 0; i < N_REC; i++) {
        ev_t *e = &evs[i];
        e->ts = TS0 + 100LL * i + (int64_t)(rng() % 600) - 300; /* out of order by up to 0.6 s */
        int k = i % N_SENSORS;
        while (silent(k, e->ts))
            k = (k + 1) % N_SENSORS;
        e->sensor = k;
        e->v = 20.0 + k + (double)(rng() % 10000) / 1000.0;
    }
}

static void sensor_name(int k, char *b, size_t n) { snprintf(b, n, "s%02d", k); }

static int ev_json(const ev_t *e, char *buf, size_t n) {
    char s[8];
    sensor_name(e->sensor, s, sizeof(s));
    return snprintf(buf, n, "{\"sensor_id\":\"%s\",\"ts\":%" PRId64 ",\"v\":%.17g}", s, e->ts, e->v);
}

/* Produce every record with a plain librdkafka producer: null keys, partition i % 8 (keyed: key = sensor id,
 * Java's murmur2 partitioner, as a Java or kafkajs producer would place them). */
static void produce_all(const char *bootstrap, const char *topic, bool keyed) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err));
    rd_kafka_conf_set(c, "partitioner", "murmur2_random", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    for (int i = 0; i < N_REC; i++) {
        char buf[256], s[8];
        int n = ev_json(&evs[i], buf, sizeof(buf));
        sensor_name(evs[i].sensor, s, sizeof(s));
        rd_kafka_resp_err_t rc;
        while ((rc = rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(keyed ? RD_KAFKA_PARTITION_UA : i % N_PARTS),
                    RD_KAFKA_V_KEY(keyed ? s : NULL, keyed ? strlen(s) : 0), RD_KAFKA_V_VALUE(buf, (size_t)n),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(evs[i].ts), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        cr_assert_eq(rc, 0, "%s", rd_kafka_err2str(rc));
        rd_kafka_poll(rk, 0);
    }
    cr_assert_eq(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* ---- the pipeline, with every topic named after a prefix ---- */

static const char *pipeline_yaml(const char *p, const char *in, const char *extra_source, const char *redis) {
    char name[64];
    snprintf(name, sizeof(name), "%s.yaml", p);
    const char *path = h_path(name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "pipeline: %s\n"
            "source:\n"
            "  kafka: {topics: [%s]}\n"
            "  format: json\n"
            "  fields: {sensor_id: string, ts: long, v: double}\n"
            "  event_time: ts\n"
            "  watermark: {max_out_of_orderness: 2s}\n"
            "%s"
            "nodes:\n"
            "  - {name: tum, op: window, key: sensor_id, type: tumbling, size: 10s,\n"
            "     aggregate: {n: count(), s: sum(v), m: mean(v)}}\n"
            "  - {name: ses, op: window, key: sensor_id, type: session, gap: 5s, aggregate: {n: count(), s: sum(v)}}\n"
            "  - {name: fc, op: arima, input: tum, key: sensor_id, value: m, order: [1, 0, 0], horizon: 2}\n"
            "  - {name: km, op: kmeans, features: [v], k: 3}\n"
            "  - {name: mp, op: map, set: {v2: 'v * 2'}}\n"
            "sinks:\n"
            "  - {input: tum, kafka: {topic: %s.tum}, format: json}\n"
            "  - {input: ses, kafka: {topic: %s.ses}, format: json}\n"
            "  - {input: fc, kafka: {topic: %s.fc}, format: json}\n"
            "  - {input: km.centroids, kafka: {topic: %s.cent}, format: json}\n"
            "  - {input: mp, kafka: {topic: %s.map}, format: json}\n"
            "dead_letter: {kafka: {topic: %s.dlq}}\n",
            p, in, extra_source ? extra_source : "", p, p, p, p, p, p);
    if (redis)
        fprintf(f, "checkpoint: {redis: \"%s\", interval: 1s}\n", redis);
    fclose(f);
    return strdup(path);
}

/* ---- expected windows, computed here ---- */

typedef struct win {
    int sensor;
    int64_t start, end;
    int64_t n;
    double s;
    int seen;
} win_t;

static int ev_cmp(const void *a, const void *b) {
    const ev_t *x = a, *y = b;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static win_t *tum_expected(int *count) {
    win_t *w = calloc(N_REC, sizeof(win_t));
    int n = 0;
    for (int i = 0; i < N_REC; i++) {
        int64_t start = evs[i].ts / 10000 * 10000; /* (event times are positive) */
        int k = 0;
        while (k < n && !(w[k].sensor == evs[i].sensor && w[k].start == start))
            k++;
        if (k == n)
            w[n++] = (win_t){.sensor = evs[i].sensor, .start = start, .end = start + 10000};
        w[k].n++;
        w[k].s += evs[i].v;
    }
    *count = n;
    return w;
}

static win_t *ses_expected(int *count) {
    ev_t *sorted = malloc(sizeof(evs));
    memcpy(sorted, evs, sizeof(evs));
    qsort(sorted, N_REC, sizeof(ev_t), ev_cmp);
    win_t *w = calloc(N_REC, sizeof(win_t));
    int n = 0;
    for (int k = 0; k < N_SENSORS; k++) {
        int cur = -1;
        for (int i = 0; i < N_REC; i++) {
            if (sorted[i].sensor != k)
                continue;
            if (cur < 0 || sorted[i].ts >= w[cur].end) {
                cur = n++;
                w[cur] = (win_t){.sensor = k, .start = sorted[i].ts};
            }
            w[cur].n++;
            w[cur].s += sorted[i].v;
            w[cur].end = sorted[i].ts + SESSION_GAP;
        }
    }
    free(sorted);
    *count = n;
    return w;
}

/* ---- reading a result topic ---- */

typedef struct out {
    char **id, **val;
    int n, cap;
} out_t;

static void on_msg(const rd_kafka_message_t *m, void *arg) {
    out_t *o = arg;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 1024;
        o->id = realloc(o->id, (size_t)o->cap * sizeof(char *));
        o->val = realloc(o->val, (size_t)o->cap * sizeof(char *));
    }
    rd_kafka_headers_t *h = NULL;
    const void *idv = NULL;
    size_t idn = 0;
    if (rd_kafka_message_headers(m, &h) == 0)
        rd_kafka_header_get_last(h, "weir.id", &idv, &idn);
    o->id[o->n] = idv ? strndup(idv, idn) : strdup("(none)");
    o->val[o->n] = strndup(m->payload, m->len);
    o->n++;
}

/* Read a result topic: until `want` messages arrived and no more came for a poll interval, or with want < 0
 * everything that arrives within 6 s (when the count is not known: records spread over every partition). */
static void read_out(const char *bootstrap, const char *topic, int want, out_t *o) {
    memset(o, 0, sizeof(*o));
    if (want < 0)
        h_consume_topic(bootstrap, topic, N_PARTS, 1 << 30, 6000, on_msg, o);
    else
        h_consume_topic(bootstrap, topic, N_PARTS, want, 20000, on_msg, o);
}

static void out_free(out_t *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->id[i]);
        free(o->val[i]);
    }
    free(o->id);
    free(o->val);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Drop repeated ids (a replay after a crash); the repeats must be byte-identical. @returns the duplicates. */
static int dedup(out_t *o) {
    /* "id \1 value" strings sorted: repeats of an id are neighbours */
    char **pairs = malloc(sizeof(char *) * (size_t)(o->n + 1));
    for (int i = 0; i < o->n; i++) {
        size_t a = strlen(o->id[i]), b = strlen(o->val[i]);
        pairs[i] = malloc(a + b + 2);
        memcpy(pairs[i], o->id[i], a);
        pairs[i][a] = '\001';
        memcpy(pairs[i] + a + 1, o->val[i], b + 1);
    }
    qsort(pairs, (size_t)o->n, sizeof(char *), str_cmp);
    int w = 0, dups = 0;
    for (int i = 0; i < o->n; i++) {
        char *sep = strchr(pairs[i], '\001');
        if (w > 0) {
            char *psep = strchr(pairs[w - 1], '\001');
            if (psep - pairs[w - 1] == sep - pairs[i] && !memcmp(pairs[w - 1], pairs[i], (size_t)(sep - pairs[i]))) {
                cr_assert_str_eq(psep + 1, sep + 1, "id %.*s repeated with other contents", (int)(sep - pairs[i]),
                                 pairs[i]);
                dups++;
                free(pairs[i]);
                continue;
            }
        }
        pairs[w++] = pairs[i];
    }
    for (int i = 0; i < o->n; i++) {
        free(o->id[i]);
        free(o->val[i]);
    }
    for (int i = 0; i < w; i++) {
        char *sep = strchr(pairs[i], '\001');
        o->id[i] = strndup(pairs[i], (size_t)(sep - pairs[i]));
        o->val[i] = strdup(sep + 1);
        free(pairs[i]);
    }
    o->n = w;
    free(pairs);
    return dups;
}

static void assert_ids_unique(const out_t *o, const char *what) {
    char **ids = malloc(sizeof(char *) * (size_t)(o->n + 1));
    memcpy(ids, o->id, sizeof(char *) * (size_t)o->n);
    qsort(ids, (size_t)o->n, sizeof(char *), str_cmp);
    for (int i = 1; i < o->n; i++)
        cr_assert_str_neq(ids[i - 1], ids[i], "%s: id %s appears twice", what, ids[i]);
    free(ids);
}

/* ---- checks of one run's results ---- */

static void check_windows(const out_t *o, win_t *w, int nw, bool session, const char *what) {
    cr_assert_eq(o->n, nw, "%s: %d results, expected %d (one per key and window)", what, o->n, nw);
    for (int i = 0; i < o->n; i++) {
        json_error_t je;
        json_t *j = json_loads(o->val[i], 0, &je);
        cr_assert_not_null(j, "%s: not JSON: %s", what, o->val[i]);
        int sensor = atoi(json_string_value(json_object_get(j, "key")) + 1);
        int64_t start = json_integer_value(json_object_get(j, "window_start"));
        int k = 0;
        while (k < nw && !(w[k].sensor == sensor && w[k].start == start))
            k++;
        cr_assert(k < nw, "%s: unexpected window %s", what, o->val[i]);
        cr_assert_eq(w[k].seen, 0, "%s: window reported twice: %s", what, o->val[i]);
        w[k].seen = 1;
        cr_assert_eq(json_integer_value(json_object_get(j, "n")), w[k].n, "%s: %s: n, expected %" PRId64, what,
                     o->val[i], w[k].n);
        double s = json_number_value(json_object_get(j, "s"));
        cr_assert(s > w[k].s - 1e-9 * w[k].s && s < w[k].s + 1e-9 * w[k].s, "%s: %s: s, expected %.17g", what,
                  o->val[i], w[k].s);
        if (session)
            cr_assert_eq(json_integer_value(json_object_get(j, "window_end")), w[k].end, "%s: %s: window_end", what,
                         o->val[i]);
        json_decref(j);
    }
    for (int k = 0; k < nw; k++)
        w[k].seen = 0;
}

/* JSON values equal, numbers within 1e-6 relative (an ulp of difference in a window's floating-point sum,
 * from another arrival order of the same records, moves a fit a little), JSON text in strings compared as
 * JSON; "iterations" may differ. */
static bool json_close(json_t *a, json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        return x == y || (x - y <= 1e-6 * (x > 0 ? x : -x) + 1e-9 && y - x <= 1e-6 * (x > 0 ? x : -x) + 1e-9);
    }
    if (json_is_string(a) && json_is_string(b)) {
        const char *x = json_string_value(a), *y = json_string_value(b);
        if ((x[0] == '[' || x[0] == '{') && (y[0] == '[' || y[0] == '{')) {
            json_t *ja = json_loads(x, 0, NULL), *jb = json_loads(y, 0, NULL);
            bool ok = ja && jb && json_close(ja, jb);
            json_decref(ja);
            json_decref(jb);
            return ok;
        }
        return !strcmp(x, y);
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_close(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a) && json_is_object(b)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
            if (!strcmp(k, "iterations"))
                continue;
            json_t *w = json_object_get(b, k);
            if (!w || !json_close(v, w))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

static bool json_text_close(const char *x, const char *y) {
    json_t *a = json_loads(x, 0, NULL), *b = json_loads(y, 0, NULL);
    bool ok = a && b && json_close(a, b);
    json_decref(a);
    json_decref(b);
    return ok;
}

/* ARIMA per key against a file-mode run of the same pipeline over the input in time order. */
static void check_arima(const char *bootstrap, const char *topic, const char *yaml, bool dedup_ok) {
    ev_t *sorted = malloc(sizeof(evs));
    memcpy(sorted, evs, sizeof(evs));
    qsort(sorted, N_REC, sizeof(ev_t), ev_cmp);
    const char *in = h_path("sorted.jsonl"), *outp = h_path("file-out.jsonl");
    FILE *f = fopen(in, "w");
    for (int i = 0; i < N_REC; i++) {
        char buf[256];
        ev_json(&sorted[i], buf, sizeof(buf));
        fprintf(f, "%s\n", buf);
    }
    fclose(f);
    free(sorted);
    char *argv[] = {(char *)h_weir_bin(), "run", (char *)yaml, "--input", (char *)in, "--output", (char *)outp, NULL};
    cr_assert_eq(h_wait(h_spawn(argv, NULL, h_path("file-run.log")), 60000), 0, "file-mode run failed");
    char *all = h_read_file(outp);
    int nfile = h_count_text(outp, "{\"node\":\"fc\","), matched = 0;
    out_t oo, *o = &oo;
    read_out(bootstrap, topic, nfile, o);
    if (dedup_ok)
        dedup(o);
    assert_ids_unique(o, topic);
    nfile = 0;
    for (char *line = all; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        const char *pre = "{\"node\":\"fc\",";
        if (!strncmp(line, pre, strlen(pre))) {
            nfile++;
            char want[4096];
            snprintf(want, sizeof(want), "{%s", line + strlen(pre));
            int hit = 0;
            for (int i = 0; i < o->n && !hit; i++)
                hit = json_text_close(o->val[i], want);
            matched += hit;
            if (!hit && matched == nfile - 1)
                cr_log_error("file mode: %s", want);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(all);
    cr_assert_gt(nfile, N_SENSORS, "the file-mode run fitted too few models (%d)", nfile);
    cr_assert_eq(o->n, nfile, "ARIMA: %d results over Kafka, %d in file mode", o->n, nfile);
    if (matched != nfile && getenv("WEIR_KEYBY_DUMP")) { /* for debugging: both sides as files */
        FILE *d = fopen(getenv("WEIR_KEYBY_DUMP"), "w");
        for (int i = 0; d && i < o->n; i++)
            fprintf(d, "%s\n", o->val[i]);
        if (d)
            fclose(d);
    }
    cr_assert_eq(matched, nfile, "ARIMA: %d of %d results differ from the file-mode run (over Kafka, e.g. %s)",
                 nfile - matched, nfile, o->n ? o->val[0] : "-");
    out_free(o);
}

/* One k-means model over every record: model versions 1..V from one task, counts adding up to the input. */
static void check_kmeans(const out_t *o) {
    cr_assert_gt(o->n, 0, "no centroid records");
    int64_t maxv = 0, sum = 0;
    for (int i = 0; i < o->n; i++) {
        json_t *j = json_loads(o->val[i], 0, NULL);
        int64_t v = json_integer_value(json_object_get(j, "model_version"));
        if (v > maxv) {
            maxv = v;
            json_t *w = json_loads(json_string_value(json_object_get(j, "weights")), 0, NULL);
            sum = 0;
            for (size_t k = 0; k < json_array_size(w); k++)
                sum += (int64_t)json_number_value(json_array_get(w, k));
            json_decref(w);
        }
        json_decref(j);
    }
    cr_assert_eq(o->n, maxv, "%d centroid records but model versions up to %" PRId64 ": more than one model", o->n,
                 maxv);
    cr_assert_eq(sum, N_REC, "the model's cluster counts add up to %" PRId64 ", not %d", sum, N_REC);
}

static pid_t weir_start(const char *yaml, const char *bootstrap, const char *inst, const char *redis, bool until_end) {
    char *argv[24];
    int n = 0;
    argv[n++] = (char *)h_weir_bin();
    argv[n++] = "run";
    argv[n++] = (char *)yaml;
    argv[n++] = "--brokers";
    argv[n++] = (char *)bootstrap;
    argv[n++] = "--instance";
    argv[n++] = (char *)inst;
    if (redis) {
        argv[n++] = "--redis";
        argv[n++] = (char *)redis;
    }
    if (until_end)
        argv[n++] = "--until-end";
    argv[n++] = "-X";
    argv[n++] = "session.timeout.ms=6000";
    argv[n++] = "-X";
    argv[n++] = "heartbeat.interval.ms=500";
    argv[n] = NULL;
    char log[64];
    snprintf(log, sizeof(log), "%s.log", inst);
    return h_spawn(argv, NULL, h_path(log));
}

static const char *log_of(const char *inst) {
    char log[64];
    snprintf(log, sizeof(log), "%s.log", inst);
    return h_path(log);
}

/* Broker topics for prefix p: input, the five sinks, dead letters, the three repartition topics. */
static void add_topics(const char **t, int *n, const char *p, bool input) {
    static char bufs[64][64];
    static int used;
    const char *fmt[] = {"%s.in:8",
                         "%s.tum:8",
                         "%s.ses:8",
                         "%s.fc:8",
                         "%s.cent:8",
                         "%s.map:8",
                         "%s.dlq:1",
                         "%s-tum-repartition:8",
                         "%s-ses-repartition:8",
                         "%s-km-repartition:1"};
    for (size_t i = input ? 0 : 1; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        snprintf(bufs[used], sizeof(bufs[used]), fmt[i], p);
        t[(*n)++] = "--topic";
        t[(*n)++] = bufs[used++];
    }
}

/* One run's results: windows against the batch computation, ARIMA against file mode, one k-means model, ids. */
static void check_run(const char *bootstrap, const char *p, const char *yaml, bool dedup_ok) {
    int ntum, nses;
    win_t *tum = tum_expected(&ntum), *ses = ses_expected(&nses);
    char topic[64];
    out_t o;
    const char *what[] = {"tum", "ses", "fc", "cent", "map"};
    for (int k = 0; k < 5; k++) {
        snprintf(topic, sizeof(topic), "%s.%s", p, what[k]);
        if (k == 2) {
            check_arima(bootstrap, topic, yaml, dedup_ok);
            continue;
        }
        int want = k == 0 ? ntum : k == 1 ? nses : k == 4 ? N_REC : -1;
        read_out(bootstrap, topic, want, &o);
        int dups = dedup_ok ? dedup(&o) : 0;
        if (dups)
            cr_log_info("%s: %d duplicates (byte-identical) after the restart", topic, dups);
        assert_ids_unique(&o, topic);
        if (k == 0)
            check_windows(&o, tum, ntum, false, topic);
        else if (k == 1)
            check_windows(&o, ses, nses, true, topic);
        else if (k == 3)
            check_kmeans(&o);
        else
            cr_assert_eq(o.n, N_REC, "%s: %d per-record outputs, expected %d", topic, o.n, N_REC);
        out_free(&o);
    }
    free(tum);
    free(ses);
}

static h_broker_t broker;
static bool generated;

/* A broker with the topics of prefix p (input included) and, if q is not NULL, of prefix q (reading p's input). */
static void start_broker(const char *p, const char *q) {
    if (!generated) {
        gen();
        generated = true;
    }
    const char *t[64];
    int n = 0;
    add_topics(t, &n, p, true);
    if (q)
        add_topics(t, &n, q, false);
    t[n] = NULL;
    h_broker_start(&broker, t);
}

Test(keyby, one_member, .timeout = 180) {
    start_broker("k1", NULL);
    produce_all(broker.bootstrap, "k1.in", false);
    const char *y = pipeline_yaml("k1", "k1.in", NULL, NULL);
    pid_t pid = weir_start(y, broker.bootstrap, "k1a", NULL, true);
    cr_assert_eq(h_wait(pid, 120000), 0, "weir did not finish:\n%s", h_read_file(log_of("k1a")));
    check_run(broker.bootstrap, "k1", y, false);
    h_broker_stop(&broker);
}

/* Two members: the second one's join moves partitions, and their state with them (Redis checkpoints); a
 * moved partition replays from its checkpoint, so results are exact after de-duplication by id. */
Test(keyby, two_members, .timeout = 180) {
    start_broker("k2", NULL);
    h_redis_t r;
    h_redis_start(&r);
    produce_all(broker.bootstrap, "k2.in", false);
    const char *y = pipeline_yaml("k2", "k2.in", NULL, r.url);
    pid_t a = weir_start(y, broker.bootstrap, "k2a", NULL, true);
    pid_t b = weir_start(y, broker.bootstrap, "k2b", NULL, true);
    cr_assert_eq(h_wait(a, 150000), 0, "member a did not finish:\n%s", h_read_file(log_of("k2a")));
    cr_assert_eq(h_wait(b, 150000), 0, "member b did not finish:\n%s", h_read_file(log_of("k2b")));
    /* both members ran tasks of the repartition stages */
    cr_assert_gt(h_count_text(log_of("k2a"), "-repartition["), 0, "member a had no stage partition");
    cr_assert_gt(h_count_text(log_of("k2b"), "-repartition["), 0, "member b had no stage partition");
    check_run(broker.bootstrap, "k2", y, true);
    h_redis_stop(&r);
    h_broker_stop(&broker);
}

Test(keyby, sigkill_restart, .timeout = 240) {
    start_broker("k3", NULL);
    h_redis_t r;
    h_redis_start(&r);
    produce_all(broker.bootstrap, "k3.in", false);
    const char *y = pipeline_yaml("k3", "k3.in", NULL, r.url);
    pid_t pid = weir_start(y, broker.bootstrap, "k3a", NULL, false);
    /* let it checkpoint some progress, then kill it mid-stream */
    cr_assert(h_wait_for_text(log_of("k3a"), "checkpoint k3-tum-repartition", 60000), "no stage checkpoint:\n%s",
              h_read_file(log_of("k3a")));
    cr_assert_eq(h_stop(pid, SIGKILL, 10000), 128 + SIGKILL);
    pid = weir_start(y, broker.bootstrap, "k3b", NULL, true);
    cr_assert_eq(h_wait(pid, 150000), 0, "the restart did not finish:\n%s", h_read_file(log_of("k3b")));
    cr_assert_gt(h_count_text(log_of("k3b"), "restored"), 0, "the restart restored nothing:\n%s",
                 h_read_file(log_of("k3b")));
    check_run(broker.bootstrap, "k3", y, true);
    h_redis_stop(&r);
    h_broker_stop(&broker);
}

/* Keyed input declared partitioned_by: the windows and ARIMA stay in the source stage; no repartition is written. */
static int64_t topic_messages(const char *bootstrap, const char *topic) {
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    int64_t total = 0;
    for (int p = 0; p < N_PARTS; p++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 5000) == 0)
            total += hi - lo;
    }
    rd_kafka_destroy(rk);
    return total;
}

Test(keyby, declared_partitioning, .timeout = 180) {
    start_broker("k4", NULL);
    produce_all(broker.bootstrap, "k4.in", true);
    const char *y = pipeline_yaml("k4", "k4.in", "  partitioned_by: sensor_id\n", NULL);
    char *argv[] = {(char *)h_weir_bin(), "validate", (char *)y, NULL};
    cr_assert_eq(h_wait(h_spawn(argv, h_path("k4-validate.txt"), NULL), 20000), 0);
    cr_assert_eq(h_count_text(h_path("k4-validate.txt"), "k4-tum-repartition"), 0,
                 "validate shows a repartition for the declared key:\n%s", h_read_file(h_path("k4-validate.txt")));
    pid_t pid = weir_start(y, broker.bootstrap, "k4a", NULL, true);
    cr_assert_eq(h_wait(pid, 120000), 0, "weir did not finish:\n%s", h_read_file(log_of("k4a")));
    cr_assert_eq(topic_messages(broker.bootstrap, "k4-tum-repartition"), 0, "records went to the repartition topic");
    cr_assert_eq(topic_messages(broker.bootstrap, "k4-ses-repartition"), 0, "records went to the repartition topic");
    cr_assert_gt(topic_messages(broker.bootstrap, "k4-km-repartition"), 0, "the global k-means still needs one");
    check_run(broker.bootstrap, "k4", y, false);
    h_broker_stop(&broker);
}

/* Two runs over the same input without Redis: the same ids (no per-run counter in them). */
Test(keyby, ids_stable_across_runs, .timeout = 240) {
    start_broker("k1", "k5");
    produce_all(broker.bootstrap, "k1.in", false);
    const char *y1 = pipeline_yaml("k1", "k1.in", NULL, NULL);
    const char *y5 = pipeline_yaml("k5", "k1.in", NULL, NULL);
    pid_t pid = weir_start(y1, broker.bootstrap, "k1r", NULL, true);
    cr_assert_eq(h_wait(pid, 120000), 0, "run 1 did not finish:\n%s", h_read_file(log_of("k1r")));
    pid = weir_start(y5, broker.bootstrap, "k5r", NULL, true);
    cr_assert_eq(h_wait(pid, 120000), 0, "run 2 did not finish:\n%s", h_read_file(log_of("k5r")));
    const char *what[] = {"tum", "map"};
    for (int k = 0; k < 2; k++) {
        char t1[64], t5[64];
        snprintf(t1, sizeof(t1), "k1.%s", what[k]);
        snprintf(t5, sizeof(t5), "k5.%s", what[k]);
        out_t a, b;
        read_out(broker.bootstrap, t1, k ? N_REC : -1, &a);
        read_out(broker.bootstrap, t5, k ? N_REC : -1, &b);
        cr_assert_eq(a.n, b.n, "%s: %d outputs in run 1, %d in run 2", what[k], a.n, b.n);
        assert_ids_unique(&a, t1);
        qsort(a.id, (size_t)a.n, sizeof(char *), str_cmp);
        qsort(b.id, (size_t)b.n, sizeof(char *), str_cmp);
        for (int i = 0; i < a.n; i++) {
            /* ids name their pipeline: compare what follows it */
            cr_assert_str_eq(strchr(a.id[i], '/'), strchr(b.id[i], '/'), "%s: id sets differ", what[k]);
        }
        out_free(&a);
        out_free(&b);
    }
    h_broker_stop(&broker);
}

/* A record for a window the downstream task has fired (it is on the output topic) is late there. */
Test(keyby, late_after_repartition, .timeout = 180) {
    start_broker("k6", NULL);
    const char *y = h_path("k6.yaml");
    FILE *f = fopen(y, "w");
    fprintf(f, "pipeline: k6\n"
               "source:\n"
               "  kafka: {topics: [k6.in]}\n"
               "  format: json\n"
               "  fields: {sensor_id: string, ts: long, v: double}\n"
               "  event_time: ts\n"
               "  watermark: {max_out_of_orderness: 2s}\n"
               "nodes:\n"
               "  - {name: tum, op: window, key: sensor_id, type: tumbling, size: 10s, aggregate: {n: count()}}\n"
               "sinks:\n"
               "  - {input: tum, kafka: {topic: k6.tum}, format: json}\n"
               "  - {late: tum, kafka: {topic: k6.map}, format: json}\n"
               "dead_letter: {kafka: {topic: k6.dlq}}\n");
    fclose(f);
    pid_t pid = weir_start(y, broker.bootstrap, "k6a", NULL, false);
    produce_all(broker.bootstrap, "k6.in", false);
    /* s01's window [TS0, TS0 + 10 s) fires downstream once every upstream task's watermark passed it */
    ev_t late = {.sensor = 1, .ts = TS0 + 1000, .v = 1.0}; /* (s00 is silent in the first 30 s) */
    out_t o;
    read_out(broker.bootstrap, "k6.tum", -1, &o);
    int fired = 0;
    for (int i = 0; i < o.n; i++)
        fired += strstr(o.val[i], "\"key\":\"s01\"") && strstr(o.val[i], "\"window_start\":1700000000000");
    out_free(&o);
    cr_assert_eq(fired, 1, "s01's window at TS0 has not fired downstream:\n%s", h_read_file(log_of("k6a")));
    /* one more record for it, through the same shuffle */
    char err[256], buf[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", broker.bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    int n = ev_json(&late, buf, sizeof(buf));
    cr_assert_eq(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("k6.in"), RD_KAFKA_V_PARTITION(3),
                                   RD_KAFKA_V_VALUE(buf, (size_t)n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_END),
                 0);
    rd_kafka_flush(rk, 10000);
    rd_kafka_destroy(rk);
    out_t lo;
    read_out(broker.bootstrap, "k6.map", 1, &lo);
    cr_assert_eq(lo.n, 1, "the late record did not reach the late topic:\n%s", h_read_file(log_of("k6a")));
    cr_assert(strstr(lo.val[0], "\"ts\":1700000001000"), "late topic: %s", lo.val[0]);
    out_free(&lo);
    cr_assert_eq(h_stop(pid, SIGTERM, 30000), 0);
    read_out(broker.bootstrap, "k6.tum", -1, &o);
    fired = 0;
    for (int i = 0; i < o.n; i++)
        fired += strstr(o.val[i], "\"key\":\"s01\"") && strstr(o.val[i], "\"window_start\":1700000000000");
    cr_assert_eq(fired, 1, "the fired window was reported %d times", fired);
    out_free(&o);
    h_broker_stop(&broker);
}
