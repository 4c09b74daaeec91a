/*
 * Expression evaluation speed (docs/expressions.md): a filter predicate and a
 * map arithmetic expression evaluated over 256 records in a loop, one core.
 *   bench_expr [ITERATIONS]      (default 20,000,000)
 * Prints "filter_M_per_s=F map_M_per_s=M". (This was a timing assertion in
 * tests/test_expr.c; the test keeps the result check, the speed lives here.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "expr.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rate(const char *src, const weir_rowtype_t *rt, weir_record_t *recs, int nrec, long iters) {
    char err[WEIR_ERRSTR_SIZE];
    weir_expr_t *e = weir_expr_compile(src, rt, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "bench_expr: %s: %s\n", src, err);
        exit(1);
    }
    weir_arena_t arena = {0};
    weir_value_t v;
    double sink = 0, t0 = now_s();
    for (long k = 0; k < iters; k++) {
        weir_expr_eval(e, &recs[k & (nrec - 1)], &arena, &v);
        sink += v.type == WEIR_DOUBLE ? v.u.d : v.type == WEIR_BOOL && v.u.b;
    }
    double r = (double)iters / (now_s() - t0) / 1e6;
    if (sink == -1)
        puts(""); /* keep the loop */
    weir_arena_free(&arena);
    weir_expr_destroy(e);
    return r;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    weir_rowtype_t *rt = weir_rowtype_new();
    weir_rowtype_add(rt, "sensor_id", WEIR_STRING, false);
    weir_rowtype_add(rt, "temperature", WEIR_DOUBLE, false);
    enum { NREC = 256 };
    static weir_record_t recs[NREC];
    for (int k = 0; k < NREC; k++) {
        weir_record_init(&recs[k], rt);
        weir_set_str(&recs[k].v[0], WEIR_STRING, "s1", 2);
        weir_set_double(&recs[k].v[1], -100.0 + k);
    }
    double f = rate("temperature > -40 and temperature < 125", rt, recs, NREC, iters);
    double m = rate("temperature * 9 / 5 + 32", rt, recs, NREC, iters);
    printf("filter_M_per_s=%.1f map_M_per_s=%.1f\n", f, m);
    for (int k = 0; k < NREC; k++)
        weir_record_free(&recs[k]);
    weir_rowtype_destroy(rt);
    return 0;
}
