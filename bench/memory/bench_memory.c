/*
 * bench_memory: resident memory per key of the keyed operators' state (issue 13).
 *
 *   bench_memory [-r RECORDS_PER_KEY] [-m MAX_RSS_MB] window|kmeans|arima KEYS
 *
 * Drives one task in memory (as bench/window/bench_window.c does: a reused
 * weir_record_t fed to weir_task_process, outputs counted and dropped) with
 * KEYS distinct keys ("s000000042": 10 bytes, like sensor ids), each receiving
 * RECORDS_PER_KEY records (default 1: a key explosion, every key new), with
 * max_keys: 0 so that nothing is evicted. It prints the growth of the resident
 * set (VmRSS, /proc/self/statm) over the state before the first record,
 * divided by the keys. Nothing fires or is emitted while feeding (windows of
 * 1 day, k-means buffering its init_size points, ARIMA below min_points unless
 * RECORDS_PER_KEY reaches it), so the figure is the state alone.
 *
 * -m stops feeding when the RSS passes MAX_RSS_MB (default 14000: the machine
 * is shared) and reports the keys reached: a key count that does not fit.
 *
 * Operators as configured here:
 *   window: tumbling 1 d, key k, aggregate {n: count(), mean_x: mean(x), max_x: max(x)}
 *   kmeans: scope key, features [x, y], k 3 (init_size 100, the default)
 *   arima:  order [1, 0, 0], history 500 (the default), min_points 30
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"
#include "task.h"

static long rss_kb(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    if (f)
        fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static uint64_t outputs;
static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque, (void)sink, (void)seq, (void)rec;
    outputs++;
}
static uint64_t rejects;
static void on_reject(void *opaque, const char *node, const weir_record_t *rec, const char *reason) {
    (void)opaque, (void)node, (void)rec, (void)reason;
    rejects++;
}

int main(int argc, char **argv) {
    long per_key = 1, max_mb = 14000;
    int opt;
    while ((opt = getopt(argc, argv, "r:m:")) != -1) {
        if (opt == 'r')
            per_key = atol(optarg);
        else if (opt == 'm')
            max_mb = atol(optarg);
        else
            goto usage;
    }
    if (argc - optind != 2 || per_key < 1)
        goto usage;
    const char *op = argv[optind];
    long keys = atol(argv[optind + 1]);
    const char *node;
    if (!strcmp(op, "window"))
        node = "{name: n, op: window, key: k, type: tumbling, size: 1d, max_keys: 0, max_open_windows: 0,\n"
               "     aggregate: {n: count(), mean_x: mean(x), max_x: max(x)}}";
    else if (!strcmp(op, "kmeans"))
        node = "{name: n, op: kmeans, scope: key, key: k, features: [x, y], k: 3, max_keys: 0}";
    else if (!strcmp(op, "arima"))
        node = "{name: n, op: arima, key: k, value: x, order: [1, 0, 0], min_points: 30, max_keys: 0}";
    else
        goto usage;
    if (keys < 1)
        goto usage;
    char yaml[1024], err[WEIR_ERRSTR_SIZE];
    snprintf(yaml, sizeof(yaml),
             "pipeline: mem\n"
             "source:\n"
             "  fields: {k: string, ts: long, x: double, y: double}\n"
             "  event_time: ts\n"
             "  watermark: {max_out_of_orderness: 1d}\n"
             "nodes:\n"
             "  - %s\n"
             "sinks:\n"
             "  - {input: n, kafka: {topic: out}}\n",
             node);
    weir_pipeline_t *pl = weir_pipeline_load_string("mem.yaml", yaml, err, sizeof(err));
    if (!pl) {
        fprintf(stderr, "bench_memory: %s\n", err);
        return 1;
    }
    weir_task_t *t = weir_task_new(pl, on_sink, on_reject, NULL);
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    char name[32];
    long before = rss_kb(), fed = 0;
    bool full = false;
    for (long r = 0; r < per_key && !full; r++)
        for (long i = 0; i < keys; i++) {
            snprintf(name, sizeof(name), "s%09ld", i);
            weir_record_clear(&rec);
            rec.v[0] = weir_v_str(name, 10);
            rec.ts = 1700000000000 + r;
            rec.v[1] = weir_v_long(rec.ts);
            rec.v[2] = weir_v_double((double)((i * 7 + r * 13) % 1000) / 10.0);
            rec.v[3] = weir_v_double((double)((i * 11 + r * 3) % 1000) / 10.0);
            weir_task_process(t, &rec);
            fed++;
            if ((i & 0xffff) == 0 && rss_kb() / 1024 > max_mb) {
                full = true;
                keys = r ? keys : i + 1;
                break;
            }
        }
    long after = rss_kb();
    printf("%-6s keys=%ld records/key=%ld%s rss_before=%ld MB rss_after=%ld MB delta=%ld MB  %.0f B/key  "
           "(outputs %llu, rejects %llu)\n",
           op, keys, per_key, full ? " (STOPPED: -m reached)" : "", before / 1024, after / 1024,
           (after - before) / 1024, (double)(after - before) * 1024.0 / (double)keys, (unsigned long long)outputs,
           (unsigned long long)rejects);
    (void)fed;
    weir_record_free(&rec);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
    return full ? 3 : 0;
usage:
    fprintf(stderr, "usage: bench_memory [-r RECORDS_PER_KEY] [-m MAX_RSS_MB] window|kmeans|arima KEYS\n");
    return 2;
}
