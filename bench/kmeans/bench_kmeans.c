/*
 * bench_kmeans: throughput of the kmeans operator (issue 4).
 *
 *   bench_kmeans --k K [--data FILE --n N --d D] [--batch B] [--repeat R] [--emit-every E]
 *
 * FILE holds N*D little-endian float64 values, row-major (bench/kmeans/run.sh
 * writes it with numpy so that scikit-learn sees the same points). Without
 * --data, a deterministic blob stream is generated. Prints one line of
 * key=value pairs:
 *   init_ms        time to fill the init buffer and initialise (10 k-means++ runs + Lloyd)
 *   op_points_s    records/s after initialisation through a real task (pipeline compiled from YAML,
 *                  record in -> record + cluster + distance out, updates and
 *                  centroid records included), one thread
 *   core_points_s  points/s of the model alone (project + assign + batch update)
 *   dist_s         point-centroid distances/s in the core loop (points * k)
 *   pf_dist_s      point-feature distance terms/s (points * k * d), in the core loop
 *   op_pf_dist_s   the same through the task (op_points_s * k * d)
 *   simd           the instruction set of the distance kernel (WEIR_KMEANS_SIMD caps it)
 *   checksum       sum of the core loop's distances, exactly (%a): equal across instruction sets
 *   op_checksum    sum of the distances the task emitted (%a), and op_hash: FNV-1a of every emitted
 *                  cluster and distance bit pattern in order (first repetition): the whole operator's output
 * --emit-every E sets the operator's emit_centroids_every (default 1: the model after every update);
 * --standardize 1 turns standardize on (task and model).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmeans_model.h"
#include "task.h"

static uint64_t sink_count;
static double op_sum;    /* sum of the emitted distances (port 0) */
static uint64_t op_hash; /* FNV-1a over the emitted clusters and distance bits, in order */

static void on_sink(void *opaque, int sink, uint64_t seq, const weir_record_t *rec) {
    (void)opaque;
    (void)seq;
    sink_count++;
    if (sink != 0)
        return;
    const int nf = rec->rt->nfields; /* ..., cluster, distance */
    const double dist = rec->v[nf - 1].u.d;
    uint64_t bits;
    memcpy(&bits, &dist, sizeof(bits));
    op_sum += dist;
    op_hash = (op_hash ^ (uint64_t)rec->v[nf - 2].u.i) * 0x100000001b3ULL;
    op_hash = (op_hash ^ bits) * 0x100000001b3ULL;
}

static double *gen_data(int n, int d, int centers) {
    double *x = malloc((size_t)n * (size_t)d * sizeof(double));
    kmeans_rng_t r;
    kmeans_rng_seed(&r, 12345);
    double *cent = malloc((size_t)centers * (size_t)d * sizeof(double));
    for (int i = 0; i < centers * d; i++)
        cent[i] = kmeans_rng_uniform(&r) * 20 - 10;
    for (int i = 0; i < n; i++) {
        int c = (int)(kmeans_rng_next(&r) % (uint64_t)centers);
        for (int j = 0; j < d; j++) {
            /* Box-Muller */
            double u1 = kmeans_rng_uniform(&r) + 1e-300, u2 = kmeans_rng_uniform(&r);
            x[(size_t)i * (size_t)d + (size_t)j] = cent[c * d + j] + sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
        }
    }
    free(cent);
    return x;
}

static double *read_data(const char *path, int n, int d) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    double *x = malloc((size_t)n * (size_t)d * sizeof(double));
    if (fread(x, sizeof(double), (size_t)n * (size_t)d, fp) != (size_t)n * (size_t)d) {
        fprintf(stderr, "%s: short file (need %d x %d doubles)\n", path, n, d);
        exit(1);
    }
    fclose(fp);
    return x;
}

int main(int argc, char **argv) {
    int k = 8, d = 16, n = 200000, batch = 1000, repeat = 3, emit_every = 1, standardize = 0;
    const char *data = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--k"))
            k = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--d"))
            d = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--n"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--emit-every"))
            emit_every = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--standardize"))
            standardize = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--data"))
            data = argv[i + 1];
        else {
            fprintf(stderr,
                    "usage: %s --k K [--data FILE --n N --d D] [--batch B] [--repeat R] [--emit-every E] "
                    "[--standardize 0|1]\n",
                    argv[0]);
            return 2;
        }
    }
    double *x = data ? read_data(data, n, d) : gen_data(n, d, 8);

    /* 1. Through a task: the operator as the runtime drives it. */
    weir_buf_t y = {0};
    weir_buf_puts(&y, "pipeline: bench\nsource:\n  fields: {");
    for (int j = 0; j < d; j++)
        weir_buf_printf(&y, "%sf%d: double", j ? ", " : "", j);
    weir_buf_puts(&y, "}\nnodes:\n  - {name: km, op: kmeans, features: [");
    for (int j = 0; j < d; j++)
        weir_buf_printf(&y, "%sf%d", j ? ", " : "", j);
    weir_buf_printf(&y,
                    "], k: %d, batch: %d, decay: 0.9, emit_centroids_every: %d, standardize: %s}\nsinks:\n"
                    "  - {input: km, kafka: {topic: a}}\n  - {input: km.centroids, kafka: {topic: c}}\n",
                    k, batch, emit_every, standardize ? "true" : "false");
    weir_buf_putc(&y, '\0');
    char errstr[WEIR_ERRSTR_SIZE];
    weir_pipeline_t *pl = weir_pipeline_load_string("bench.yaml", (const char *)y.p, errstr, sizeof(errstr));
    if (!pl) {
        fprintf(stderr, "%s\n", errstr);
        return 1;
    }
    weir_record_t rec;
    weir_record_init(&rec, pl->source.rt);
    /* The types once, then only the doubles per record, as a decoder filling slots would: assigning whole
     * weir_value_t literals here compiled to a stack temporary per value (a store-forwarding stall each). */
    for (int j = 0; j < d; j++)
        rec.v[j] = weir_v_double(0.0);
    double best_op = 0, init_ms = 0, op_checksum = 0;
    uint64_t op_hash0 = 0;
    for (int rep = 0; rep < repeat; rep++) {
        op_sum = 0;
        op_hash = 0xcbf29ce484222325ULL;
        weir_task_t *t = weir_task_new(pl, on_sink, NULL, NULL);
        /* The init buffer (k-means++ runs + Lloyd) is timed apart: steady state only here. */
        int warm = 10 * k > 100 ? 10 * k : 100;
        int64_t ti = weir_now_ns();
        for (int i = 0; i < warm; i++) {
            const double *row = x + (size_t)i * (size_t)d;
            for (int j = 0; j < d; j++)
                rec.v[j].u.d = row[j];
            weir_task_process(t, &rec);
        }
        init_ms = (double)(weir_now_ns() - ti) / 1e6;
        int64_t t0 = weir_now_ns();
        for (int i = warm; i < n; i++) {
            const double *row = x + (size_t)i * (size_t)d;
            for (int j = 0; j < d; j++)
                rec.v[j].u.d = row[j];
            weir_task_process(t, &rec);
        }
        weir_task_advance(t, WEIR_WM_END);
        double s = (double)(weir_now_ns() - t0) / 1e9;
        if ((n - warm) / s > best_op)
            best_op = (n - warm) / s;
        if (rep == 0) {
            op_checksum = op_sum;
            op_hash0 = op_hash;
        }
        weir_task_destroy(t);
    }

    /* 2. The model alone: project + assign + observe, update every `batch` points. */
    kmeans_params_t p = {.k = k,
                         .d = d,
                         .metric = KMEANS_EUCLIDEAN,
                         .standardize = standardize != 0,
                         .decay = 0.9,
                         .dead_fraction = 1e-8,
                         .init_size = 10 * k > 100 ? 10 * k : 100,
                         .init_iterations = 100,
                         .init_runs = 10};
    double best_core = 0, checksum = 0;
    double sum = 0;
    for (int rep = 0; rep < repeat; rep++) {
        kmeans_model_t m;
        kmeans_model_init(&m, &p, 1);
        for (int i = 0; i < p.init_size; i++)
            kmeans_model_buffer(&m, x + (size_t)i * (size_t)d);
        kmeans_model_initialize(&m);
        kmeans_model_drop_init(&m);
        int64_t t0 = weir_now_ns();
        for (int i = 0; i < n; i++) {
            const double *row = x + (size_t)i * (size_t)d;
            double dist;
            kmeans_model_project(&m, row);
            int c = kmeans_model_assign(&m, &dist);
            kmeans_model_observe(&m, row, c, dist);
            if (m.bn >= (uint64_t)batch)
                kmeans_model_update(&m);
            sum += dist;
        }
        double s = (double)(weir_now_ns() - t0) / 1e9;
        if (rep == 0)
            checksum = sum;
        sum = 0;
        if (n / s > best_core)
            best_core = n / s;
        kmeans_model_free(&m);
    }
    printf("k=%d d=%d n=%d batch=%d emit_every=%d init_ms=%.1f op_points_s=%.0f core_points_s=%.0f dist_s=%.0f "
           "pf_dist_s=%.0f op_pf_dist_s=%.0f simd=%s checksum=%a op_checksum=%a op_hash=%016llx\n",
           k, d, n, batch, emit_every, init_ms, best_op, best_core, best_core * k, best_core * k * d, best_op * k * d,
           kmeans_simd_name(), checksum, op_checksum, (unsigned long long)op_hash0);
    weir_record_free(&rec);
    weir_pipeline_destroy(pl);
    weir_buf_free(&y);
    free(x);
    return 0;
}
