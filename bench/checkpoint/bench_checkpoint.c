/*
 * bench_checkpoint: checkpoint write and restore time for a window operator's
 * state, and the Redis memory it takes (issue 6). bench/checkpoint/run.sh
 * starts a redis-server and prints the table.
 *
 *   bench_checkpoint --redis URL [--keys N] [--reps R] [--bytes-per-key B]
 *
 * The state is real: a task of the pipeline below (a tumbling 10 s window,
 * key sensor_id, aggregates count/mean/max) is fed one record per key, all in
 * one open window, and weir_task_snapshot() serialises it. That is the state a
 * task with N live keys checkpoints between two windows closing. With
 * --bytes-per-key B the state is instead N*B pseudo-random bytes (the
 * estimate of the brief, ~64 B per key window), to compare.
 *
 * One line per run, key=value:
 *   snapshot_ms  weir_task_snapshot (serialise the operators)
 *   write_ms     weir_ckpt_write, median of R (chunks + MULTI/EXEC + prune)
 *   read_ms      weir_ckpt_read of latest, median of R (chunks + CRC check)
 *   restore_ms   weir_task_restore into a fresh task, median of R
 *   mem_one_mb   INFO used_memory after the first checkpoint minus before
 *   mem_two_mb   ... in steady state (the new and the previous checkpoint)
 *   key_mb       MEMORY USAGE of one checkpoint hash
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "pipeline.h"
#include "task.h"

static const char *yaml = "pipeline: bench\n"
                          "source:\n"
                          "  fields: {sensor_id: string, ts: long, temperature: double}\n"
                          "  event_time: ts\n"
                          "  watermark: {max_out_of_orderness: 1s}\n"
                          "nodes:\n"
                          "  - {name: w, op: window, key: sensor_id, type: tumbling, size: 10s,\n"
                          "     aggregate: {n: count(), mean_t: mean(temperature), max_t: max(temperature)}}\n"
                          "sinks:\n"
                          "  - {input: w, kafka: {topic: out}}\n";

static void nosink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque;
    (void)seq;
    (void)sink;
    (void)rec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median_ms(int64_t *ns, int n) {
    qsort(ns, (size_t)n, sizeof(*ns), cmp_i64);
    return (double)ns[n / 2] / 1e6;
}

static long long used_memory(redisContext *rc) {
    redisReply *r = redisCommand(rc, "INFO memory");
    long long v = -1;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = atoll(p + strlen("used_memory:"));
    if (r)
        freeReplyObject(r);
    return v;
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "bench_checkpoint: %s: %s\n", what, err);
    exit(1);
}

int main(int argc, char **argv) {
    const char *url = NULL;
    long keys = 100000, reps = 5, bpk = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--redis"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--keys"))
            keys = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--bytes-per-key"))
            bpk = atol(argv[i + 1]);
        else
            goto usage;
    }
    if (!url || keys <= 0 || reps <= 0 || reps > 100 || bpk < 0)
        goto usage;
    char err[WEIR_ERRSTR_SIZE];

    /* The state. */
    weir_pipeline_t *pl = weir_pipeline_load_string("bench.yaml", yaml, err, sizeof(err));
    if (!pl)
        die("pipeline", err);
    weir_task_t *t = NULL;
    weir_buf_t state = {0};
    int64_t snap_ns = 0;
    if (bpk) {
        weir_buf_reserve(&state, (size_t)(keys * bpk));
        uint64_t x = 88172645463325252ull;
        for (long i = 0; i < keys * bpk; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.p[state.len++] = (uint8_t)x;
        }
    } else {
        t = weir_task_new(pl, nosink, NULL, NULL);
        weir_record_t rec;
        weir_record_init(&rec, pl->source.rt);
        char name[32];
        for (long k = 0; k < keys; k++) {
            snprintf(name, sizeof(name), "sensor-%ld", k);
            rec.v[0] = weir_v_str(name, strlen(name));
            rec.ts = 1700000000000LL + (k % 5000); /* all in the window [..00000, ..10000) */
            rec.v[1] = weir_v_long(rec.ts);
            rec.v[2] = weir_v_double(20.0 + (double)(k % 1000) / 10.0);
            weir_task_process(t, &rec);
        }
        weir_record_free(&rec);
        int64_t t0 = weir_now_ns();
        if (weir_task_snapshot(t, &state))
            die("snapshot", "failed");
        snap_ns = weir_now_ns() - t0;
    }

    /* Redis: a clean pipeline, memory before. */
    weir_ckpt_t *c = weir_ckpt_new(url, "bench", err, sizeof(err));
    if (!c)
        die("store", err);
    int64_t deleted;
    if (weir_ckpt_delete_all(c, &deleted, err, sizeof(err)))
        die("delete", err);
    int port = atoi(strrchr(url, ':') + 1);
    struct timeval tv = {10, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!rc || rc->err)
        die("connect", rc ? rc->errstr : "?");
    usleep(200000);
    long long mem0 = used_memory(rc);

    int64_t w_ns[100], r_ns[100], x_ns[100];
    long long mem1 = 0;
    int64_t n = 0;
    for (long i = 0; i < reps; i++) {
        int64_t t0 = weir_now_ns();
        if (weir_ckpt_write(c, "sensor.readings", 0, 1000 + i, "fp", state.p, state.len, &n, err, sizeof(err)))
            die("write", err);
        w_ns[i] = weir_now_ns() - t0;
        if (i == 0) {
            usleep(200000);
            mem1 = used_memory(rc);
        }
    }
    usleep(200000);
    long long mem2 = used_memory(rc);
    char key[256];
    weir_ckpt_key(c, "sensor.readings", 0, n, key, sizeof(key));
    redisReply *mu = redisCommand(rc, "MEMORY USAGE %s SAMPLES 0", key);
    long long key_bytes = mu && mu->type == REDIS_REPLY_INTEGER ? mu->integer : -1;
    if (mu)
        freeReplyObject(mu);

    weir_buf_t back = {0};
    for (long i = 0; i < reps; i++) {
        int64_t got, off, t0 = weir_now_ns();
        if (weir_ckpt_read(c, "sensor.readings", 0, 0, &got, &off, NULL, &back, err, sizeof(err)))
            die("read", err);
        r_ns[i] = weir_now_ns() - t0;
        if (back.len != state.len || memcmp(back.p, state.p, state.len))
            die("read", "state differs");
        if (t) {
            weir_task_t *t2 = weir_task_new(pl, nosink, NULL, NULL);
            t0 = weir_now_ns();
            if (weir_task_restore(t2, back.p, back.len, NULL, err, sizeof(err)))
                die("restore", err);
            x_ns[i] = weir_now_ns() - t0;
            weir_task_destroy(t2);
        }
    }
    printf("keys=%ld state=%s bytes=%zu bytes_per_key=%.1f snapshot_ms=%.1f write_ms=%.1f read_ms=%.1f "
           "restore_ms=%s%.1f mem_one_mb=%.1f mem_two_mb=%.1f key_mb=%.1f\n",
           keys, bpk ? "synthetic" : "window", state.len, (double)state.len / (double)keys, (double)snap_ns / 1e6,
           median_ms(w_ns, (int)reps), median_ms(r_ns, (int)reps), t ? "" : "-", t ? median_ms(x_ns, (int)reps) : 0.0,
           (double)(mem1 - mem0) / 1048576.0, (double)(mem2 - mem0) / 1048576.0, (double)key_bytes / 1048576.0);

    weir_ckpt_delete_all(c, &deleted, err, sizeof(err));
    redisFree(rc);
    weir_ckpt_destroy(c);
    weir_buf_free(&back);
    weir_buf_free(&state);
    weir_task_destroy(t);
    weir_pipeline_destroy(pl);
    return 0;
usage:
    fprintf(stderr,
            "usage: bench_checkpoint --redis redis://127.0.0.1:PORT [--keys N] [--reps R] [--bytes-per-key B]\n");
    return 2;
}
