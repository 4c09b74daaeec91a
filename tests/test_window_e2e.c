/**
 * Windows end to end over real processes (issue 3): `weir broker` with a
 * 4-partition topic, 40 000 JSON records over 40 keys written by this test with
 * librdkafka (message key = device, so a device lives on one partition), one
 * `weir run --until-end` with a keyed tumbling window and a sliding window, and
 * the output and late topics read back and compared, window by window and key
 * by key, with what this test computes independently.
 *
 * Each partition is its own task with its own watermark, so the expectation is
 * computed per partition: records in offset order (known from the delivery
 * reports), watermark = max event time seen before the record −
 * max_out_of_orderness, a record joins every window containing it that the
 * watermark has not closed (end > watermark), and is late when it joins none.
 * With --until-end every window still open fires at the end of input.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define N_RECORDS 40000
#define N_KEYS 40
#define N_PARTS 4
#define TS0 1700000000000LL
#define OOO_MS 2000
#define TUMBLE_MS 10000
#define SLIDE_SIZE_MS 30000
#define SLIDE_MS 5000

typedef struct ev {
    int key;
    int64_t ts, v;
    double x;
    int32_t part;   /* from the delivery report */
    int64_t offset; /* from the delivery report */
} ev_t;

static ev_t evs[N_RECORDS];

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void gen(void) {
    for (int i = 0; i < N_RECORDS; i++) {
        ev_t *e = &evs[i];
        e->key = (int)(rng() % N_KEYS);
        /* 25 ms apart, out of order by up to 1.5 s (within max_out_of_orderness)... */
        e->ts = TS0 + (int64_t)i * 25 - (int64_t)(rng() % 1500);
        /* ...and a few stragglers, some of them late for every window. */
        if (rng() % 150 == 0)
            e->ts -= 3000 + (int64_t)(rng() % 30000);
        e->v = (int64_t)(rng() % 1000) - 300;
        e->x = 1e5 + (double)(rng() % 100000) / 1000.0;
        e->part = -1;
    }
}

static void dev_name(int k, char *buf, size_t n) { snprintf(buf, n, "dev-%02d", k); }

/* ---- producing (plain librdkafka) ---- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    cr_assert_eq(m->err, 0, "delivery failed: %s", rd_kafka_err2str(m->err));
    ev_t *e = &evs[(intptr_t)m->_private];
    e->part = m->partition;
    e->offset = m->offset;
}

static void produce_all(const char *bootstrap) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    for (int i = 0; i < N_RECORDS; i++) {
        const ev_t *e = &evs[i];
        char dev[16], buf[256];
        dev_name(e->key, dev, sizeof(dev));
        int n =
            snprintf(buf, sizeof(buf), "{\"dev\":\"%s\",\"ts\":%" PRId64 ",\"seq\":%d,\"v\":%" PRId64 ",\"x\":%.17g}",
                     dev, e->ts, i, e->v, e->x);
        rd_kafka_resp_err_t rc;
        while ((rc = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("win.in"), RD_KAFKA_V_KEY(dev, strlen(dev)),
                                       RD_KAFKA_V_VALUE(buf, (size_t)n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        cr_assert_eq(rc, 0);
        rd_kafka_poll(rk, 0);
    }
    cr_assert_eq(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* ---- the expected windows, computed independently ---- */

typedef struct win {
    int key;
    int64_t start;
    /* expected */
    int64_t n, sum, lo, hi, first, last, first_ts, last_ts;
    long double xs; /* sum of x */
    double *x;      /* the x values, for the standard deviation */
    size_t nx;
    /* seen on the output topic */
    int seen;
} win_t;

typedef struct wset {
    const char *node;
    int64_t size, slide;
    win_t *w;
    size_t n, cap;
} wset_t;

static int win_cmp(const void *a, const void *b) {
    const win_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static win_t *wset_find(wset_t *s, int key, int64_t start) {
    win_t probe = {.key = key, .start = start};
    return bsearch(&probe, s->w, s->n, sizeof(win_t), win_cmp);
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && a < 0); }

static bool late_tumbling[N_RECORDS];

/* Every partition in offset order; a record joins the windows containing it with end > watermark. */
static void expect(wset_t *s, bool *late) {
    int *order = malloc(N_RECORDS * sizeof(int));
    for (int p = 0; p < N_PARTS; p++) {
        size_t n = 0;
        for (int i = 0; i < N_RECORDS; i++)
            if (evs[i].part == p)
                order[n++] = i;
        /* offsets ascend with i within a partition (one producer), but sort to be sure */
        for (size_t a = 1; a < n; a++)
            for (size_t b = a; b > 0 && evs[order[b - 1]].offset > evs[order[b]].offset; b--) {
                int t = order[b];
                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        int64_t max_ts = INT64_MIN;
        for (size_t j = 0; j < n; j++) {
            int i = order[j];
            const ev_t *e = &evs[i];
            int64_t wm = max_ts == INT64_MIN ? INT64_MIN / 2 : max_ts - OOO_MS;
            bool joined = false;
            for (int64_t st = floordiv(e->ts, s->slide) * s->slide; st > e->ts - s->size; st -= s->slide) {
                if (st + s->size <= wm)
                    continue;
                joined = true;
                win_t *w = NULL;
                for (size_t q = s->n; q-- > 0 && !w;) /* recent windows are at the end */
                    if (s->w[q].key == e->key && s->w[q].start == st)
                        w = &s->w[q];
                if (!w) {
                    if (s->n == s->cap) {
                        s->cap = s->cap ? 2 * s->cap : 1024;
                        s->w = realloc(s->w, s->cap * sizeof(win_t));
                    }
                    w = &s->w[s->n++];
                    *w = (win_t){.key = e->key, .start = st};
                }
                if (!w->n || e->v < w->lo)
                    w->lo = e->v;
                if (!w->n || e->v > w->hi)
                    w->hi = e->v;
                if (!w->n || e->ts < w->first_ts) { /* ties: the earliest arrival */
                    w->first_ts = e->ts;
                    w->first = e->v;
                }
                if (!w->n || e->ts >= w->last_ts) { /* ties: the latest arrival */
                    w->last_ts = e->ts;
                    w->last = e->v;
                }
                w->n++;
                w->sum += e->v;
                w->xs += e->x;
                w->x = realloc(w->x, (w->nx + 1) * sizeof(double));
                w->x[w->nx++] = e->x;
            }
            if (late)
                late[i] = !joined;
            if (e->ts > max_ts)
                max_ts = e->ts;
        }
    }
    free(order);
    qsort(s->w, s->n, sizeof(win_t), win_cmp);
}

static double stddev_of(const win_t *w) {
    long double mean = w->xs / (long double)w->nx, ss = 0;
    for (size_t i = 0; i < w->nx; i++)
        ss += (w->x[i] - mean) * (w->x[i] - mean);
    return (double)sqrtl(ss / (long double)(w->nx - 1));
}

/* ---- reading the output back ---- */

typedef struct seen {
    wset_t *sets[2];
    int bad;
    char why[512];
    int late_seen[N_RECORDS];
    int late_bad;
} seen_t;

static void bad(seen_t *s, const char *fmt, const char *payload) {
    if (!s->bad++)
        snprintf(s->why, sizeof(s->why), "%s: %.400s", fmt, payload);
}

static void on_window(const rd_kafka_message_t *m, void *arg) {
    seen_t *s = arg;
    char *txt = strndup(m->payload, m->len);
    json_error_t je;
    json_t *j = json_loads(txt, 0, &je);
    if (!j) {
        bad(s, "not JSON", txt);
        free(txt);
        return;
    }
    const char *key = json_string_value(json_object_get(j, "key"));
    const char *dev = json_string_value(json_object_get(j, "dev"));
    const char *id = json_string_value(json_object_get(j, "id"));
    int64_t start = json_integer_value(json_object_get(j, "window_start"));
    int64_t end = json_integer_value(json_object_get(j, "window_end"));
    int k = -1;
    if (key && dev && !strcmp(key, dev) && !strncmp(key, "dev-", 4))
        k = atoi(key + 4);
    wset_t *set = NULL;
    for (int i = 0; i < 2; i++)
        if (id && !strncmp(id, "e2e-windows/", 12) && !strncmp(id + 12, s->sets[i]->node, strlen(s->sets[i]->node)) &&
            id[12 + strlen(s->sets[i]->node)] == '/')
            set = s->sets[i];
    win_t *w = set && k >= 0 ? wset_find(set, k, start) : NULL;
    char want_id[128];
    if (w)
        snprintf(want_id, sizeof(want_id), "e2e-windows/%s/%s/%" PRId64, set->node, key, start);
    if (!w)
        bad(s, "unexpected window", txt);
    else if (end != start + set->size || strcmp(id, want_id) || !json_is_true(json_object_get(j, "final")))
        bad(s, "bad window end, id or final flag", txt);
    else if (m->key_len != strlen(key) || memcmp(m->key, key, m->key_len))
        bad(s, "message key is not the window key", txt);
    else if (json_integer_value(json_object_get(j, "n")) != w->n ||
             json_integer_value(json_object_get(j, "total")) != w->sum ||
             json_integer_value(json_object_get(j, "lo")) != w->lo ||
             json_integer_value(json_object_get(j, "hi")) != w->hi)
        bad(s, "count, sum, min or max differs", txt);
    else if (json_integer_value(json_object_get(j, "first")) != w->first ||
             json_integer_value(json_object_get(j, "last")) != w->last)
        bad(s, "first or last differs", txt);
    else {
        double mean = json_number_value(json_object_get(j, "avg"));
        double want_mean = (double)(w->xs / (long double)w->nx);
        json_t *sdj = json_object_get(j, "sd");
        bool sd_ok = w->nx < 2 ? json_is_null(sdj)
                               : fabs(json_number_value(sdj) - stddev_of(w)) <= 1e-6 * fmax(1.0, stddev_of(w));
        if (fabs(mean - want_mean) > 1e-9 * fabs(want_mean) || !sd_ok)
            bad(s, "mean or stddev differs", txt);
        else
            w->seen++;
    }
    json_decref(j);
    free(txt);
}

static void on_late(const rd_kafka_message_t *m, void *arg) {
    seen_t *s = arg;
    char *txt = strndup(m->payload, m->len);
    json_error_t je;
    json_t *j = json_loads(txt, 0, &je);
    int64_t seq = j ? json_integer_value(json_object_get(j, "seq")) : -1;
    if (seq < 0 || seq >= N_RECORDS || json_integer_value(json_object_get(j, "ts")) != evs[seq].ts)
        s->late_bad++;
    else
        s->late_seen[seq]++;
    json_decref(j);
    free(txt);
}

static const char pipeline[] =
    "pipeline: e2e-windows\n"
    "source:\n"
    "  kafka: {topics: [win.in]}\n"
    "  format: json\n"
    "  fields: {dev: string, ts: long, seq: long, v: long, x: double}\n"
    "  event_time: ts\n"
    "  watermark: {max_out_of_orderness: 2s}\n"
    "  partitioned_by: dev  # the producer keys by dev\n"
    "nodes:\n"
    "  - name: tumbling\n"
    "    op: window\n"
    "    key: dev\n"
    "    type: tumbling\n"
    "    size: 10s\n"
    "    aggregate: {n: count(), total: sum(v), lo: min(v), hi: max(v), first: first(v), last: last(v),\n"
    "                avg: mean(x), sd: stddev(x)}\n"
    "  - name: sliding\n"
    "    op: window\n"
    "    key: dev\n"
    "    type: sliding\n"
    "    size: 30s\n"
    "    slide: 5s\n"
    "    aggregate: {n: count(), total: sum(v), lo: min(v), hi: max(v), first: first(v), last: last(v),\n"
    "                avg: mean(x), sd: stddev(x)}\n"
    "sinks:\n"
    "  - {input: tumbling, kafka: {topic: win.out}, format: json}\n"
    "  - {input: sliding, kafka: {topic: win.out}, format: json}\n"
    "  - {late: tumbling, kafka: {topic: win.late}, format: json}\n"
    "dead_letter: {kafka: {topic: win.dlq}}\n";

Test(window_e2e, keyed_windows_per_partition_through_broker, .timeout = 300) {
    h_broker_t b;
    const char *topics[] = {"--topic",    "win.in:4", "--topic",   "win.out:4", "--topic",
                            "win.late:1", "--topic",  "win.dlq:1", NULL};
    h_broker_start(&b, topics);
    gen();
    produce_all(b.bootstrap);
    /* The message key put each device on one partition; the devices are spread over all of them. */
    int key_part[N_KEYS], parts_used = 0;
    bool used[N_PARTS] = {false};
    for (int k = 0; k < N_KEYS; k++)
        key_part[k] = -1;
    for (int i = 0; i < N_RECORDS; i++) {
        const ev_t *e = &evs[i];
        cr_assert(e->part >= 0 && e->part < N_PARTS, "record %d has no delivery report", i);
        cr_assert(key_part[e->key] < 0 || key_part[e->key] == e->part, "key %d on two partitions", e->key);
        key_part[e->key] = e->part;
        if (!used[e->part]) {
            used[e->part] = true;
            parts_used++;
        }
    }
    cr_assert_geq(parts_used, 3, "the 40 keys landed on %d partitions only", parts_used);

    wset_t tum = {.node = "tumbling", .size = TUMBLE_MS, .slide = TUMBLE_MS};
    wset_t sli = {.node = "sliding", .size = SLIDE_SIZE_MS, .slide = SLIDE_MS};
    expect(&tum, late_tumbling);
    expect(&sli, NULL);
    int nlate = 0;
    for (int i = 0; i < N_RECORDS; i++)
        nlate += late_tumbling[i];
    cr_assert_gt(nlate, 20, "the input should have late records (%d)", nlate);
    cr_assert_gt(tum.n, 3000);

    const char *ppath = h_path("windows.yaml");
    FILE *f = fopen(ppath, "w");
    fputs(pipeline, f);
    fclose(f);
    const char *log = h_path("run.log");
    char *argv[] = {(char *)h_weir_bin(), "run", (char *)ppath, "--brokers", b.bootstrap, "--until-end",
                    /* The local broker completes a rebalance after session.timeout.ms - 1 s. */
                    "-X", "session.timeout.ms=6000", NULL};
    pid_t pid = h_spawn(argv, NULL, log);
    int rc = h_wait(pid, 120000);
    char *text = h_read_file(log);
    cr_assert_eq(rc, 0, "weir run --until-end exited with %d:\n%s", rc, text ? text : "");
    free(text);

    seen_t *s = calloc(1, sizeof(*s));
    s->sets[0] = &tum;
    s->sets[1] = &sli;
    int want = (int)(tum.n + sli.n);
    int got = h_consume_topic(b.bootstrap, "win.out", 4, want, 60000, on_window, s);
    cr_assert_eq(s->bad, 0, "%d bad output windows, first: %s", s->bad, s->why);
    cr_assert_eq(got, want, "output topic holds %d windows, expected %zu tumbling + %zu sliding", got, tum.n, sli.n);
    for (int i = 0; i < 2; i++)
        for (size_t q = 0; q < s->sets[i]->n; q++) {
            const win_t *w = &s->sets[i]->w[q];
            cr_assert_eq(w->seen, 1, "%s window dev-%02d [%" PRId64 ", +%" PRId64 ") seen %d times", s->sets[i]->node,
                         w->key, w->start, s->sets[i]->size, w->seen);
        }
    /* Late records: exactly those, once each, on the late topic. */
    int lgot = h_consume_topic(b.bootstrap, "win.late", 1, nlate, 30000, on_late, s);
    cr_assert_eq(s->late_bad, 0);
    cr_assert_eq(lgot, nlate, "late topic holds %d records, expected %d", lgot, nlate);
    for (int i = 0; i < N_RECORDS; i++)
        cr_assert_eq(s->late_seen[i], late_tumbling[i] ? 1 : 0, "record %d: late %d times, expected %d", i,
                     s->late_seen[i], late_tumbling[i]);

    for (int i = 0; i < 2; i++) {
        for (size_t q = 0; q < s->sets[i]->n; q++)
            free(s->sets[i]->w[q].x);
        free(s->sets[i]->w);
    }
    free(s);
    h_broker_stop(&b);
}
