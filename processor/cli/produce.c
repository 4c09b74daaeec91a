/* `weir produce`: synthetic sensor readings or a JSON-lines file to a topic. */
#include "produce.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double unit(uint64_t seed, int64_t i, int k) {
    return (double)(splitmix64(seed ^ ((uint64_t)i * 8 + (uint64_t)k) * 0x2545F4914F6CDD1Dull) >> 11) /
           9007199254740992.0;
}

static void set_by_name(weir_record_t *rec, const char *name, weir_value_t v) {
    int s = weir_rowtype_find(rec->rt, name);
    if (s >= 0)
        rec->v[s] = v;
}

void weir_gen_sensor_reading(uint64_t seed, int64_t i, int sensors, int64_t ts, weir_record_t *rec) {
    weir_record_clear(rec);
    int sensor = (int)(splitmix64(seed + (uint64_t)i) % (uint64_t)(sensors > 0 ? sensors : 1));
    char *id = weir_arena_alloc(&rec->arena, 16);
    int n = snprintf(id, 16, "s-%04d", sensor);
    char *site = weir_arena_alloc(&rec->arena, 16);
    int sn = snprintf(site, 16, "site-%d", sensor % 3);
    /* A daily-ish cycle per sensor plus noise; about 2% glitches far out of range. */
    double temp = 20.0 + 8.0 * sin((double)ts / 3.6e6 + sensor) + 3.0 * (unit(seed, i, 1) - 0.5);
    if (unit(seed, i, 2) < 0.02)
        temp = unit(seed, i, 3) < 0.5 ? -999.0 : 999.0;
    temp = round(temp * 100.0) / 100.0;
    double hum = round((40.0 + 25.0 * unit(seed, i, 4)) * 10.0) / 10.0;
    set_by_name(rec, "sensor_id", weir_v_str(id, (size_t)n));
    set_by_name(rec, "ts", weir_v_long(ts));
    set_by_name(rec, "temperature", weir_v_double(temp));
    set_by_name(rec, "humidity", weir_v_double(hum));
    if (i % 10 != 3)
        set_by_name(rec, "pressure", weir_v_double(round((1000.0 + 20.0 * unit(seed, i, 5)) * 10.0) / 10.0));
    set_by_name(rec, "site", weir_v_str(site, (size_t)sn));
    rec->key = id;
    rec->key_len = (size_t)n;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    if (m->err) {
        *(int *)opaque = 1;
        weir_log(WEIR_LOG_ERR, "produce", "delivery failed: %s", rd_kafka_err2str(m->err));
    }
}

static int send_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const void *key, size_t klen, const void *p, size_t n) {
    while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)p, n, key, klen, NULL) == -1) {
        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            weir_log(WEIR_LOG_ERR, "produce", "produce failed: %s", rd_kafka_err2str(rd_kafka_last_error()));
            return WEIR_ERR;
        }
        rd_kafka_poll(rk, 10);
    }
    return WEIR_OK;
}

/* Event time of record i: start + i * step, or false when that does not fit in int64 (weir produce --step -1
 * from a small --start-ts, or a huge --step: the run stops with an error instead of wrapping around). */
static bool event_ts_ok(int64_t start, int64_t i, int64_t step, int64_t *ts) {
    int64_t d;
    return !__builtin_mul_overflow(i, step, &d) && !__builtin_add_overflow(start, d, ts);
}

static int64_t event_ts(int64_t start, int64_t i, int64_t step) {
    int64_t ts;
    return event_ts_ok(start, i, step, &ts) ? ts : start; /* never reached: checked by the loop */
}

int weir_produce_run(const weir_produce_opts_t *o) {
    char errstr[WEIR_ERRSTR_SIZE];
    int failed = 0, rc = 1;
    weir_schema_t *schema = NULL;
    weir_encoder_t *enc = NULL;
    weir_decoder_t *dec = NULL;
    FILE *in = NULL;
    char *line = NULL;
    size_t linecap = 0;
    weir_buf_t buf = {0};
    weir_record_t rec = {0};
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const char *schema_path = o->schema ? o->schema : "schemas/sensor_reading.avsc";
    if (access(schema_path, R_OK) != 0 && !o->schema) {
        static char fallback[4096];
        snprintf(fallback, sizeof(fallback), "%s/schemas/sensor_reading.avsc", WEIR_DATADIR);
        schema_path = fallback;
    }
    if (!(schema = weir_schema_load(schema_path, errstr, sizeof(errstr)))) {
        weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
        goto done;
    }
    const weir_rowtype_t *rt = weir_schema_rowtype(schema);
    weir_record_init(&rec, rt);
    if (!(enc = weir_encoder_new(o->format, schema, rt, false, 0, errstr, sizeof(errstr)))) {
        weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
        goto done;
    }
    if (o->file) {
        if (!(in = strcmp(o->file, "-") ? weir_open_regular(o->file, errstr, sizeof(errstr)) : stdin)) {
            weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
            goto done;
        }
        if (!(dec = weir_decoder_new(WEIR_FMT_JSON, NULL, rt, false, errstr, sizeof(errstr)))) {
            weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
            goto done;
        }
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", errstr, sizeof(errstr))) {
        rd_kafka_conf_destroy(conf);
        weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
        goto done;
    }
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
        rd_kafka_conf_destroy(conf);
        weir_log(WEIR_LOG_ERR, "produce", "%s", errstr);
        goto done;
    }
    rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    int64_t t0 = weir_now_ns(), sent = 0, bad = 0;
    int64_t start_ts = o->start_ts ? o->start_ts : weir_now_ms();
    int64_t last_ts;
    if (!o->file && o->count > 0 && !event_ts_ok(start_ts, o->count - 1, o->step_ms, &last_ts)) {
        weir_log(WEIR_LOG_ERR, "produce", "--start-ts %lld --step %lld: the event time of record %lld overflows",
                 (long long)start_ts, (long long)o->step_ms, (long long)o->count);
        rc = 2;
        goto done;
    }
    for (int64_t i = 0; (o->count <= 0 || i < o->count) && !weir_stop && !(o->stop && *o->stop) && !failed; i++) {
        if (!o->file && !event_ts_ok(start_ts, i, o->step_ms, &last_ts)) {
            weir_log(WEIR_LOG_ERR, "produce", "--step %lld: the event time of record %lld overflows; stopping",
                     (long long)o->step_ms, (long long)i + 1);
            goto done;
        }
        if (o->rate > 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e9 / o->rate);
            int64_t now = weir_now_ns();
            if (due > now)
                usleep((useconds_t)((due - now) / 1000));
        }
        const void *key = NULL;
        size_t klen = 0;
        weir_buf_reset(&buf);
        if (o->file) {
            bool too_long;
            ssize_t n = weir_getline_max(&line, &linecap, in, WEIR_MAX_INPUT_LINE, &too_long);
            if (n < 0)
                break;
            if (too_long) {
                weir_log(WEIR_LOG_WARN, "produce", "%s:%lld: line longer than %zu bytes: skipped", o->file,
                         (long long)i + 1, WEIR_MAX_INPUT_LINE);
                continue;
            }
            while (n > 0 && line[n - 1] == '\r')
                line[--n] = '\0';
            if (o->format == WEIR_FMT_JSON) {
                weir_buf_append(&buf, line, (size_t)n);
            } else if (weir_decode(dec, line, (size_t)n, &rec, errstr, sizeof(errstr)) ||
                       weir_encode(enc, &rec, NULL, NULL, &buf, errstr, sizeof(errstr))) {
                weir_log(WEIR_LOG_WARN, "produce", "%s:%lld: %s (sent as is)", o->file, (long long)i + 1, errstr);
                weir_buf_reset(&buf);
                weir_buf_append(&buf, line, (size_t)n);
            }
        } else if (o->malformed_every > 0 && i % o->malformed_every == o->malformed_every - 1) {
            /* Garbage that no decoder accepts: a truncated record. */
            weir_gen_sensor_reading(o->seed, i, o->sensors, event_ts(start_ts, i, o->step_ms), &rec);
            weir_encode(enc, &rec, NULL, NULL, &buf, errstr, sizeof(errstr));
            buf.len = buf.len > 3 ? 3 : buf.len;
            bad++;
        } else {
            int64_t ts = o->start_ts || o->rate <= 0 ? event_ts(start_ts, i, o->step_ms) : weir_now_ms();
            weir_gen_sensor_reading(o->seed, i, o->sensors, ts, &rec);
            key = o->no_key ? NULL : rec.key;
            klen = o->no_key ? 0 : rec.key_len;
            if (weir_encode(enc, &rec, NULL, NULL, &buf, errstr, sizeof(errstr))) {
                weir_log(WEIR_LOG_ERR, "produce", "encode: %s", errstr);
                goto done;
            }
        }
        if (send_one(rk, rkt, key, klen, buf.p, buf.len))
            goto done;
        sent++;
        rd_kafka_poll(rk, 0);
    }
    while (rd_kafka_flush(rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT && !failed)
        ;
    if (!o->quiet)
        weir_log(WEIR_LOG_INFO, "produce", "sent %lld records (%lld malformed) to %s in %.2f s", (long long)sent,
                 (long long)bad, o->topic, (double)(weir_now_ns() - t0) / 1e9);
    rc = failed ? 1 : 0;
done:
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk)
        rd_kafka_destroy(rk);
    if (in && in != stdin)
        fclose(in);
    free(line);
    weir_buf_free(&buf);
    if (rec.rt)
        weir_record_free(&rec);
    weir_decoder_destroy(dec);
    weir_encoder_destroy(enc);
    weir_schema_destroy(schema);
    return rc;
}

static void produce_usage(FILE *fp) {
    fprintf(fp, "usage: weir produce --brokers LIST --topic NAME [options]\n"
                "\n"
                "Write synthetic sensor readings (schemas/sensor_reading.avsc), or the lines of a\n"
                "JSON-lines file, to a Kafka topic. Keys are the sensor ids.\n"
                "  --count N             records to send (default 1000; 0 = until stopped)\n"
                "  --rate R              records per second (default: as fast as possible)\n"
                "  --format avro|json    encoding (default avro)\n"
                "  --schema FILE         record schema (default schemas/sensor_reading.avsc)\n"
                "  --sensors K           distinct sensors (default 100)\n"
                "  --malformed-every M   make every Mth record undecodable (default 0: never)\n"
                "  --seed S              generator seed (default 1)\n"
                "  --start-ts MS         event time of the first record (default now)\n"
                "  --step MS             event-time step between records (default 10)\n"
                "  --file FILE           send this JSON-lines file instead (re-encoded for avro)\n"
                "  --no-key              null message keys: records spread over the partitions, one sensor's\n"
                "                        readings in every one (default: the sensor id, one sensor per partition)\n");
}

int weir_cmd_produce(int argc, char **argv) {
    weir_produce_opts_t o = {.count = 1000, .format = WEIR_FMT_AVRO, .sensors = 100, .seed = 1, .step_ms = 10};
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},   {"rate", required_argument, NULL, 'r'},
        {"format", required_argument, NULL, 'f'},  {"schema", required_argument, NULL, 's'},
        {"sensors", required_argument, NULL, 'k'}, {"malformed-every", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 'S'},    {"start-ts", required_argument, NULL, 'T'},
        {"step", required_argument, NULL, 'p'},    {"file", required_argument, NULL, 'F'},
        {"quiet", no_argument, NULL, 'q'},         {"no-key", no_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},          {0}};
    int c;
    int64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:t:n:r:f:s:k:m:S:T:p:F:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o.brokers = optarg; break;
        case 't': o.topic = optarg; break;
        case 'n':
            if (weir_cli_parse_i64("produce", "count", optarg, 0, INT64_MAX, &o.count))
                return 2;
            break;
        case 'r':
            if (weir_cli_parse_rate("produce", "rate", optarg, &o.rate))
                return 2;
            break;
        case 'f':
            if (weir_format_parse(optarg, &o.format)) {
                fprintf(stderr, "weir produce: --format: expected avro or json\n");
                return 2;
            }
            break;
        case 's': o.schema = optarg; break;
        case 'k':
            if (weir_cli_parse_i64("produce", "sensors", optarg, 1, INT32_MAX, &v))
                return 2;
            o.sensors = (int)v;
            break;
        case 'm':
            if (weir_cli_parse_i64("produce", "malformed-every", optarg, 0, INT64_MAX, &o.malformed_every))
                return 2;
            break;
        case 'S':
            if (weir_cli_parse_i64("produce", "seed", optarg, 0, INT64_MAX, &v))
                return 2;
            o.seed = (uint64_t)v;
            break;
        case 'T':
            if (weir_cli_parse_i64("produce", "start-ts", optarg, INT64_MIN, INT64_MAX, &o.start_ts))
                return 2;
            break;
        case 'p':
            if (weir_cli_parse_i64("produce", "step", optarg, INT64_MIN, INT64_MAX, &o.step_ms))
                return 2;
            break;
        case 'F': o.file = optarg; break;
        case 'q': o.quiet = true; break;
        case 'K': o.no_key = true; break;
        case 'h': produce_usage(stdout); return 0;
        default: produce_usage(stderr); return 2;
        }
    }
    if (!o.brokers)
        o.brokers = getenv("WEIR_BROKERS");
    if (!o.brokers || !o.topic || o.sensors < 1) {
        produce_usage(stderr);
        return 2;
    }
    weir_install_signals();
    return weir_produce_run(&o);
}
