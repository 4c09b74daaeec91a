/*
 * bench_window: the window operator's benchmark (issue 3).
 *
 *   bench_window [-n RECORDS] [-k KEYS] [-t SPAN_S] [-s] CASE...   drive a task in memory
 *   bench_window gen [-n RECORDS] [-k KEYS] [-t SPAN_S]        write the same input as JSON lines
 *
 * CASE is `tumbling:SIZE_S` or `sliding:SIZE_S:SLIDE_S` (durations in seconds).
 * The input: RECORDS records over KEYS keys (uniform), event time spread over
 * SPAN_S seconds, each displaced backwards by up to 1 s (the pipeline's
 * max_out_of_orderness), value a double. Aggregates: count, mean, max.
 *
 * -s (split) holds the watermark back (max_out_of_orderness = SPAN_S + 1000 s) so
 * that nothing fires while the records are fed: the feed time is the pure
 * per-record update cost, and the end-of-input flush, which fires every window,
 * gives the cost per output window. Without -s the two are interleaved, as in
 * production. Times are CPU time of the process (the machine is shared).
 *
 * "In memory" means: records are built once per record in a reused
 * weir_record_t and fed to weir_task_process (the runtime's own entry point),
 * outputs go to a sink callback that counts them; no decoding or encoding.
 * That isolates the operator (plus the task's dispatch) from JSON costs,
 * which the end-to-end run (bench/window/run.sh) includes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "pipeline.h"
#include "task.h"

typedef struct opts {
    long records, keys, span_s;
    bool split;
} opts_t;

static int64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

typedef struct input {
    uint32_t *key;
    int64_t *ts;
    double *v;
    char (*names)[32];
} input_t;

static void gen_input(const opts_t *o, input_t *in) {
    in->key = weir_malloc((size_t)o->records * sizeof(uint32_t));
    in->ts = weir_malloc((size_t)o->records * sizeof(int64_t));
    in->v = weir_malloc((size_t)o->records * sizeof(double));
    in->names = weir_malloc((size_t)o->keys * 32);
    for (long k = 0; k < o->keys; k++)
        snprintf(in->names[k], 32, "sensor-%ld", k);
    double step = (double)o->span_s * 1000.0 / (double)o->records;
    for (long i = 0; i < o->records; i++) {
        in->key[i] = (uint32_t)(rng() % (uint64_t)o->keys);
        in->ts[i] = 1700000000000LL + (int64_t)((double)i * step) - (int64_t)(rng() % 1000);
        in->v[i] = 20.0 + (double)(rng() % 10000) / 100.0;
    }
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static uint64_t outputs;
static void count_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque;
    (void)seq;
    (void)sink;
    (void)rec;
    outputs++;
}

static int run_case(const char *spec, const opts_t *o, const input_t *in) {
    char node[256];
    long size, slide;
    if (sscanf(spec, "tumbling:%ld", &size) == 1)
        snprintf(node, sizeof(node), "type: tumbling, size: %lds", size);
    else if (sscanf(spec, "sliding:%ld:%ld", &size, &slide) == 2)
        snprintf(node, sizeof(node), "type: sliding, size: %lds, slide: %lds", size, slide);
    else {
        fprintf(stderr, "bench_window: bad case '%s' (tumbling:S or sliding:S:S)\n", spec);
        return 2;
    }
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "pipeline: bench\n"
             "source:\n"
             "  fields: {sensor_id: string, ts: long, temperature: double}\n"
             "  event_time: ts\n"
             "  watermark: {max_out_of_orderness: %lds}\n"
             "nodes:\n"
             "  - {name: w, op: window, key: sensor_id, %s,\n"
             "     aggregate: {n: count(), mean_t: mean(temperature), max_t: max(temperature)}}\n"
             "sinks:\n"
             "  - {input: w, kafka: {topic: out}}\n",
             o->split ? o->span_s + 1000 : 1, node);
    char err[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("bench.yaml", yaml, err, sizeof(err));
    if (!pl) {
        fprintf(stderr, "bench_window: %s\n", err);
        return 2;
    }
    weir_task_t *t = weir_task_new(pl, count_sink, NULL, NULL);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    outputs = 0;
    long rss0 = max_rss_kb();
    int64_t t0 = cpu_ns();
    for (long i = 0; i < o->records; i++) {
        const char *k = in->names[in->key[i]];
        rec.v[0] = weir_v_str(k, strlen(k));
        rec.v[1] = weir_v_long(in->ts[i]);
        rec.v[2] = weir_v_double(in->v[i]);
        rec.ts = in->ts[i];
        weir_task_process(t, &rec);
    }
    int64_t t1 = cpu_ns();
    uint64_t out1 = outputs;
    weir_task_advance(t, WEIR_WM_END);
    int64_t t2 = cpu_ns();
    double secs = (double)(t2 - t0) / 1e9;
    if (o->split) {
        uint64_t nw = outputs - out1;
        printf("%-18s records=%ld keys=%ld span=%lds split: update %.0f ns/record (%.0f records/s), "
               "fire %.0f ns/window (%.0f windows/s, %llu windows, %.2f per record)  peak_rss=%.0f MB\n",
               spec, o->records, o->keys, o->span_s, (double)(t1 - t0) / (double)o->records,
               (double)o->records * 1e9 / (double)(t1 - t0), nw ? (double)(t2 - t1) / (double)nw : 0.0,
               nw ? (double)nw * 1e9 / (double)(t2 - t1) : 0.0, (unsigned long long)nw, (double)nw / (double)o->records,
               (double)max_rss_kb() / 1024.0);
    } else {
        printf("%-18s records=%ld keys=%ld span=%lds  %.0f records/s  %.0f ns/record (of which end-of-input flush "
               "%.0f ms)  windows_out=%llu (%.2f per record, %.0f windows/s)  peak_rss=%.0f MB (+%.0f MB over the "
               "input)\n",
               spec, o->records, o->keys, o->span_s, (double)o->records / secs, (double)(t2 - t0) / (double)o->records,
               (double)(t2 - t1) / 1e6, (unsigned long long)outputs, (double)outputs / (double)o->records,
               (double)outputs / secs, (double)max_rss_kb() / 1024.0, (double)(max_rss_kb() - rss0) / 1024.0);
    }
    fflush(stdout);
    weir_record_free(&rec);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
    return 0;
}

int main(int argc, char **argv) {
    opts_t o = {.records = 10000000, .keys = 100000, .span_s = 1000};
    int i = 1;
    bool gen = argc > 1 && !strcmp(argv[1], "gen");
    if (gen)
        i++;
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-s")) {
            o.split = true;
            i--;
            continue;
        }
        if (i + 1 >= argc)
            goto usage;
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "-n"))
            o.records = v;
        else if (!strcmp(argv[i], "-k"))
            o.keys = v;
        else if (!strcmp(argv[i], "-t"))
            o.span_s = v;
        else
            goto usage;
    }
    if (o.records <= 0 || o.keys <= 0 || o.span_s <= 0 || (!gen && i >= argc))
        goto usage;
    input_t in;
    gen_input(&o, &in);
    if (gen) {
        for (long r = 0; r < o.records; r++)
            printf("{\"sensor_id\":\"%s\",\"ts\":%lld,\"temperature\":%.2f}\n", in.names[in.key[r]],
                   (long long)in.ts[r], in.v[r]);
        return 0;
    }
    int rc = 0;
    for (; i < argc && !rc; i++)
        rc = run_case(argv[i], &o, &in);
    return rc;
usage:
    fprintf(stderr,
            "usage: bench_window [-n RECORDS] [-k KEYS] [-t SPAN_S] [-s] tumbling:SIZE_S | sliding:SIZE_S:SLIDE_S ...\n"
            "       bench_window gen [-n RECORDS] [-k KEYS] [-t SPAN_S] > input.jsonl\n");
    return 2;
}
