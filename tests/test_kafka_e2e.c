/**
 * End to end over real processes: `weir broker` with a 4-partition topic,
 * 100,000 Avro records (some malformed) written by this test with librdkafka
 * and a hand-written Avro encoder (not weir's code), two `weir run` members of
 * one consumer group running the filter+map pipeline, and the output and
 * dead-letter topics read back and compared with what this test computes
 * independently. The same records then go through file mode.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define N_RECORDS 100000
#define MALFORMED_EVERY 997
#define TS0 1700000000000LL

typedef struct reading {
    char sensor[16];
    int64_t ts;
    double temperature, humidity, pressure;
    bool has_pressure;
    char site[16];
} reading_t;

static bool is_malformed(int i) { return i % MALFORMED_EVERY == MALFORMED_EVERY - 1; }

static void reading_of(int i, reading_t *r) {
    snprintf(r->sensor, sizeof(r->sensor), "s-%03d", i % 50);
    r->ts = TS0 + i;
    r->temperature = (double)((i * 37) % 2000) / 10.0 - 50.0; /* -50 .. 149.9 */
    r->humidity = (double)(i % 100) + 0.5;
    r->has_pressure = i % 7 != 0;
    r->pressure = 1000.0 + (double)(i % 13);
    snprintf(r->site, sizeof(r->site), "site-%d", i % 3);
}

/* The pipeline's meaning, computed here independently. */
static bool expected_pass(const reading_t *r) { return r->temperature > -40 && r->temperature < 125; }

/* ---- a minimal Avro binary writer/reader (Avro spec: zigzag varints, LE doubles) ---- */
static size_t put_long(uint8_t *p, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (z & ~0x7fULL) {
        p[n++] = (uint8_t)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    return n;
}
static size_t put_double(uint8_t *p, double d) {
    memcpy(p, &d, 8); /* x86-64 is little-endian, as Avro wants */
    return 8;
}
static size_t put_string(uint8_t *p, const char *s) {
    size_t n = put_long(p, (int64_t)strlen(s));
    memcpy(p + n, s, strlen(s));
    return n + strlen(s);
}
static size_t encode_reading(const reading_t *r, uint8_t *p) {
    size_t n = 0;
    n += put_string(p + n, r->sensor);
    n += put_long(p + n, r->ts);
    n += put_double(p + n, r->temperature);
    n += put_double(p + n, r->humidity);
    if (r->has_pressure) {
        n += put_long(p + n, 1);
        n += put_double(p + n, r->pressure);
    } else {
        n += put_long(p + n, 0);
    }
    n += put_string(p + n, r->site);
    return n;
}

typedef struct rd {
    const uint8_t *p;
    size_t n, pos;
    bool bad;
} rd_t;
static int64_t get_long(rd_t *r) {
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
        if (r->pos >= r->n || shift > 63) {
            r->bad = true;
            return 0;
        }
        uint8_t b = r->p[r->pos++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}
static double get_double(rd_t *r) {
    double d = 0;
    if (r->pos + 8 > r->n) {
        r->bad = true;
        return 0;
    }
    memcpy(&d, r->p + r->pos, 8);
    r->pos += 8;
    return d;
}
static void get_string(rd_t *r, char *out, size_t cap) {
    int64_t len = get_long(r);
    if (len < 0 || (size_t)len >= cap || r->pos + (size_t)len > r->n) {
        r->bad = true;
        out[0] = 0;
        return;
    }
    memcpy(out, r->p + r->pos, (size_t)len);
    out[len] = 0;
    r->pos += (size_t)len;
}

typedef struct enriched {
    reading_t r;
    double temp_f;
    bool heat_alert;
    int seen;
} enriched_t;

/* ---- Kafka helpers (plain librdkafka) ---- */
static int32_t produced_partition[N_RECORDS];
static int64_t produced_offset[N_RECORDS];

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    cr_assert_eq(m->err, 0, "delivery failed: %s", rd_kafka_err2str(m->err));
    int i = (int)(intptr_t)m->_private;
    produced_partition[i] = m->partition;
    produced_offset[i] = m->offset;
}

static void produce_all(const char *bootstrap) {
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err));
    rd_kafka_conf_set(c, "queue.buffering.max.messages", "200000", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    cr_assert_not_null(rk, "%s", err);
    uint8_t buf[256];
    for (int i = 0; i < N_RECORDS; i++) {
        reading_t r;
        reading_of(i, &r);
        size_t n;
        if (is_malformed(i)) {
            buf[0] = 0x02; /* sensor_id = "A", then the record ends: truncated */
            buf[1] = 'A';
            n = 2;
        } else {
            n = encode_reading(&r, buf);
        }
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("sensor.readings"),
                                      RD_KAFKA_V_KEY(r.sensor, strlen(r.sensor)), RD_KAFKA_V_VALUE(buf, n),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)(intptr_t)i),
                                      RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        cr_assert_eq(e, 0);
        rd_kafka_poll(rk, 0);
    }
    cr_assert_eq(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

static enriched_t *outputs; /* indexed by ts - TS0 */
static int bad_outputs;

static int bad_timestamps;

static void on_output(const rd_kafka_message_t *m, void *arg) {
    (void)arg;
    rd_t r = {.p = m->payload, .n = m->len};
    enriched_t e;
    memset(&e, 0, sizeof(e));
    get_string(&r, e.r.sensor, sizeof(e.r.sensor));
    e.r.ts = get_long(&r);
    e.r.temperature = get_double(&r);
    e.r.humidity = get_double(&r);
    int64_t u = get_long(&r);
    e.r.has_pressure = u == 1;
    if (u == 1)
        e.r.pressure = get_double(&r);
    get_string(&r, e.r.site, sizeof(e.r.site));
    e.temp_f = get_double(&r);
    e.heat_alert = r.pos < r.n && r.p[r.pos++] == 1;
    int64_t idx = e.r.ts - TS0;
    if (r.bad || r.pos != r.n || idx < 0 || idx >= N_RECORDS || m->key_len != strlen(e.r.sensor) ||
        memcmp(m->key, e.r.sensor, m->key_len)) {
        bad_outputs++;
        return;
    }
    /* The message timestamp is the record's event time (the pipeline's event_time: ts). */
    rd_kafka_timestamp_type_t tstype;
    if (rd_kafka_message_timestamp(m, &tstype) != e.r.ts || tstype != RD_KAFKA_TIMESTAMP_CREATE_TIME)
        bad_timestamps++;
    e.seen = outputs[idx].seen + 1;
    outputs[idx] = e;
}

typedef struct dlq_seen {
    int n;
    int bad;
    int64_t *offsets; /* per partition p: offsets recorded */
    int32_t *parts;
} dlq_seen_t;

static void on_dlq(const rd_kafka_message_t *m, void *arg) {
    dlq_seen_t *d = arg;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vn;
    char off[32] = "", part[32] = "", reason[256] = "";
    if (rd_kafka_message_headers(m, &h) == 0) {
        if (rd_kafka_header_get_last(h, "weir.error.offset", &v, &vn) == 0 && vn < sizeof(off))
            memcpy(off, v, vn), off[vn] = 0;
        if (rd_kafka_header_get_last(h, "weir.error.partition", &v, &vn) == 0 && vn < sizeof(part))
            memcpy(part, v, vn), part[vn] = 0;
        if (rd_kafka_header_get_last(h, "weir.error.reason", &v, &vn) == 0 && vn < sizeof(reason))
            memcpy(reason, v, vn), reason[vn] = 0;
    }
    if (!off[0] || !part[0] || !strstr(reason, "invalid Avro") || m->len != 2) {
        d->bad++;
        return;
    }
    d->parts[d->n] = atoi(part);
    d->offsets[d->n++] = atoll(off);
}

static const char *pipeline_path(void) {
    static char p[512];
    snprintf(p, sizeof(p), "%s/deploy/pipelines/sensor-filter-map.yaml", h_src());
    return p;
}

static int count_expected(void) {
    int n = 0;
    for (int i = 0; i < N_RECORDS; i++) {
        reading_t r;
        reading_of(i, &r);
        if (!is_malformed(i) && expected_pass(&r))
            n++;
    }
    return n;
}

static void check_outputs(const char *where) {
    for (int i = 0; i < N_RECORDS; i++) {
        reading_t r;
        reading_of(i, &r);
        const enriched_t *e = &outputs[i];
        if (is_malformed(i) || !expected_pass(&r)) {
            cr_assert_eq(e->seen, 0, "%s: record %d should have been filtered or dead-lettered", where, i);
            continue;
        }
        cr_assert_eq(e->seen, 1, "%s: record %d seen %d times", where, i, e->seen);
        cr_assert_str_eq(e->r.sensor, r.sensor);
        cr_assert_str_eq(e->r.site, r.site);
        cr_assert_eq(e->r.temperature, r.temperature);
        cr_assert_eq(e->r.humidity, r.humidity);
        cr_assert_eq(e->r.has_pressure, r.has_pressure, "%s: record %d pressure nullness", where, i);
        if (r.has_pressure)
            cr_assert_eq(e->r.pressure, r.pressure);
        cr_assert_eq(e->temp_f, r.temperature * 9.0 / 5.0 + 32.0, "%s: record %d temp_f", where, i);
        cr_assert_eq(e->heat_alert, r.temperature > 26, "%s: record %d heat_alert", where, i);
    }
}

Test(kafka_e2e, two_members_filter_map_with_dead_letters, .timeout = 240) {
    h_broker_t b;
    const char *topics[] = {"--topic", "sensor.readings:4", "--topic", "sensor.enriched:4",
                            "--topic", "sensor.dlq:1",      NULL};
    h_broker_start(&b, topics);
    const char *logs[2] = {h_path("member-a.log"), h_path("member-b.log")};
    pid_t members[2];
    char *names[2] = {"member-a", "member-b"};
    for (int k = 0; k < 2; k++) {
        char *argv[] = {(char *)h_weir_bin(), "run", (char *)pipeline_path(), "--brokers", b.bootstrap,
                        "--commit-interval", "1s", "--instance", names[k],
                        /* The local broker completes a rebalance after session.timeout.ms - 1 s. */
                        "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", NULL};
        members[k] = h_spawn(argv, NULL, logs[k]);
        /* Let the first member join and take all partitions, then the second one. */
        cr_assert(h_wait_for_text(logs[k], "assigned partitions: sensor.readings", 30000),
                  "%s was assigned no partitions", names[k]);
    }
    /* The cooperative rebalance gave the newcomer some partitions: the first one revoked them. */
    cr_assert(h_wait_for_text(logs[0], "revoked partitions: sensor.readings", 30000), "member-a revoked nothing");

    produce_all(b.bootstrap);
    int want = count_expected();
    int malformed = N_RECORDS / MALFORMED_EVERY;
    outputs = calloc(N_RECORDS, sizeof(*outputs));
    int got = h_consume_topic(b.bootstrap, "sensor.enriched", 4, want, 60000, on_output, NULL);
    cr_assert_eq(bad_outputs, 0, "%d output records could not be decoded or had the wrong key", bad_outputs);
    cr_assert_eq(got, want, "output topic holds %d records, expected %d", got, want);
    cr_assert_eq(bad_timestamps, 0, "%d outputs whose Kafka timestamp is not their record's event time",
                 bad_timestamps);
    check_outputs("kafka");

    dlq_seen_t d = {.offsets = calloc(N_RECORDS, sizeof(int64_t)), .parts = calloc(N_RECORDS, sizeof(int32_t))};
    int dl = h_consume_topic(b.bootstrap, "sensor.dlq", 1, malformed, 30000, on_dlq, &d);
    cr_assert_eq(d.bad, 0, "%d dead letters without reason/partition/offset headers or original bytes", d.bad);
    cr_assert_eq(dl, malformed);
    /* Every malformed record is on the dead-letter topic with its own partition and offset. */
    for (int i = MALFORMED_EVERY - 1; i < N_RECORDS; i += MALFORMED_EVERY) {
        bool found = false;
        for (int k = 0; k < d.n && !found; k++)
            found = d.parts[k] == produced_partition[i] && d.offsets[k] == produced_offset[i];
        cr_assert(found, "malformed record %d (partition %d offset %lld) not dead-lettered", i, produced_partition[i],
                  (long long)produced_offset[i]);
    }
    /* Both members processed records: each logged dead letters from its own partitions. */
    int shared = 0;
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(h_stop(members[k], SIGTERM, 30000), 0, "%s did not exit cleanly on SIGTERM", names[k]);
        shared += h_count_text(logs[k], "weir summary: records_in=") > 0;
        char *log = h_read_file(logs[k]);
        const char *s = strstr(log, "records_in=");
        cr_assert_not_null(s);
        cr_assert_gt(atoll(s + strlen("records_in=")), 0, "%s processed no records", names[k]);
        free(log);
    }
    cr_assert_eq(shared, 2);
    free(d.offsets);
    free(d.parts);
    free(outputs);
    h_broker_stop(&b);
}

Test(kafka_e2e, file_mode_same_pipeline_same_output, .timeout = 120) {
    /* The same records as JSON lines (one malformed line in place of each bad Avro record). */
    const char *in = h_path("in.jsonl"), *out = h_path("out.jsonl"), *dead = h_path("dead.jsonl");
    FILE *f = fopen(in, "w");
    for (int i = 0; i < N_RECORDS; i++) {
        reading_t r;
        reading_of(i, &r);
        if (is_malformed(i)) {
            fprintf(f, "{\"sensor_id\": \"A\"}\n");
            continue;
        }
        char pres[32] = "null";
        if (r.has_pressure)
            snprintf(pres, sizeof(pres), "%.17g", r.pressure);
        fprintf(f,
                "{\"sensor_id\":\"%s\",\"ts\":%lld,\"temperature\":%.17g,\"humidity\":%.17g,\"pressure\":%s,\"site\":"
                "\"%s\"}\n",
                r.sensor, (long long)r.ts, r.temperature, r.humidity, pres, r.site);
    }
    fclose(f);
    char *argv[] = {(char *)h_weir_bin(), "run",       (char *)pipeline_path(), "--input",    (char *)in,
                    "--output",           (char *)out, "--dead-letter",         (char *)dead, NULL};
    pid_t pid = h_spawn(argv, NULL, h_path("file.log"));
    cr_assert_eq(h_wait(pid, 60000), 0, "weir run (file mode) failed");
    outputs = calloc(N_RECORDS, sizeof(*outputs));
    json_error_t je;
    FILE *o = fopen(out, "r");
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof(line), o)) {
        json_t *j = json_loads(line, 0, &je);
        cr_assert_not_null(j, "bad output line: %s", line);
        cr_assert_str_eq(json_string_value(json_object_get(j, "node")), "enriched");
        enriched_t e = {0};
        snprintf(e.r.sensor, sizeof(e.r.sensor), "%s", json_string_value(json_object_get(j, "sensor_id")));
        snprintf(e.r.site, sizeof(e.r.site), "%s", json_string_value(json_object_get(j, "site")));
        e.r.ts = json_integer_value(json_object_get(j, "ts"));
        e.r.temperature = json_number_value(json_object_get(j, "temperature"));
        e.r.humidity = json_number_value(json_object_get(j, "humidity"));
        json_t *p = json_object_get(j, "pressure");
        e.r.has_pressure = p && !json_is_null(p);
        e.r.pressure = e.r.has_pressure ? json_number_value(p) : 0;
        e.temp_f = json_number_value(json_object_get(j, "temp_f"));
        e.heat_alert = json_is_true(json_object_get(j, "heat_alert"));
        int64_t idx = e.r.ts - TS0;
        cr_assert(idx >= 0 && idx < N_RECORDS);
        e.seen = outputs[idx].seen + 1;
        outputs[idx] = e;
        got++;
        json_decref(j);
    }
    fclose(o);
    cr_assert_eq(got, count_expected());
    check_outputs("file");
    /* Dead letters name the line and the reason. */
    FILE *dl = fopen(dead, "r");
    int ndead = 0;
    while (fgets(line, sizeof(line), dl)) {
        json_t *j = json_loads(line, 0, &je);
        cr_assert_not_null(j);
        int64_t ln = json_integer_value(json_object_get(j, "line"));
        cr_assert(is_malformed((int)ln - 1), "line %lld dead-lettered but was good", (long long)ln);
        cr_assert(strstr(json_string_value(json_object_get(j, "reason")), "missing required field 'ts'"), "%s", line);
        json_decref(j);
        ndead++;
    }
    fclose(dl);
    cr_assert_eq(ndead, N_RECORDS / MALFORMED_EVERY);
    free(outputs);
}

Test(kafka_e2e, start_up_errors_are_clear_and_fail_fast, .timeout = 60) {
    /* No broker at that address: a clear error and exit 1, not a hang. */
    const char *log = h_path("nobroker.log");
    char *argv[] = {(char *)h_weir_bin(), "run", (char *)pipeline_path(), "--brokers", "127.0.0.1:1",
                    "--until-end",        NULL};
    pid_t pid = h_spawn(argv, NULL, log);
    cr_assert_eq(h_wait(pid, 40000), 1, "weir run without a broker must exit 1");
    cr_assert(h_count_text(log, "cannot reach the Kafka cluster at 127.0.0.1:1") == 1);
    /* An unreadable schema: the pipeline is refused before any connection, exit 2, placed error. */
    const char *bad = h_path("bad.yaml");
    FILE *f = fopen(bad, "w");
    fprintf(f, "pipeline: p\nsource:\n  kafka: {topics: [t]}\n  format: avro\n  schema: /nonexistent/s.avsc\n"
               "nodes: [{name: a, op: filter, where: 'true'}]\n");
    fclose(f);
    const char *log2 = h_path("badschema.log");
    char *argv2[] = {(char *)h_weir_bin(), "run", (char *)bad, "--brokers", "127.0.0.1:1", NULL};
    pid = h_spawn(argv2, NULL, log2);
    cr_assert_eq(h_wait(pid, 20000), 2);
    char expect[600];
    snprintf(expect, sizeof(expect), "%s:5:11: schema '/nonexistent/s.avsc' not found", bad);
    cr_assert(h_count_text(log2, expect) == 1, "log: %s", h_read_file(log2));
}
