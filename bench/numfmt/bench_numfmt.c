/*
 * Double formatting speed (processor/core/numfmt.c), one core:
 *   bench_numfmt [N]      (default 1,000,000 doubles per set)
 * ns per number for weir_fmt_double, snprintf("%.17g") and the shortest round-trip snprintf loop
 * (snprintf("%.*e", p) for p = 1..17 digits until strtod reads the same double back; at a power of two it can be
 * one digit longer than the shortest), on two sets:
 * "common" (uniform in [0,1) scaled by 10^-6 .. 10^9, either sign) and "bits" (random finite bit patterns).
 * Each figure is the best of 3 passes over the set (the slow snprintf loop: over its first N/10 numbers).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "numfmt.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t xs64(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static volatile size_t sink;

static size_t f_weir(double v, char *buf) { return weir_fmt_double(v, buf); }
static size_t f_17g(double v, char *buf) { return (size_t)snprintf(buf, 32, "%.17g", v); }
static size_t f_loop(double v, char *buf) {
    int n = 0;
    for (int p = 0; p < 17; p++) {
        n = snprintf(buf, 32, "%.*e", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return (size_t)n;
}

static double ns_per(size_t (*f)(double, char *), const double *v, int n) {
    char buf[64];
    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        size_t s = 0;
        const double t0 = now_s();
        for (int i = 0; i < n; i++)
            s += f(v[i], buf);
        const double t = (now_s() - t0) / n * 1e9;
        sink += s;
        if (t < best)
            best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 1000000;
    double *common = malloc(sizeof(double) * (size_t)n), *bits = malloc(sizeof(double) * (size_t)n);
    if (!common || !bits || n <= 0)
        return 1;
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < n; i++) {
        const uint64_t u = xs64(&st);
        common[i] = ((double)(u >> 11) * 0x1p-53) * pow(10, (int)(u % 16) - 6) * ((u >> 4) & 1 ? -1 : 1);
        uint64_t b;
        do
            b = xs64(&st);
        while (((b >> 52) & 0x7ff) == 0x7ff);
        memcpy(&bits[i], &b, sizeof(b));
    }
    printf("%-28s %12s %12s\n", "ns per number", "common", "bits");
    printf("%-28s %12.1f %12.1f\n", "weir_fmt_double", ns_per(f_weir, common, n), ns_per(f_weir, bits, n));
    printf("%-28s %12.1f %12.1f\n", "snprintf %.17g", ns_per(f_17g, common, n), ns_per(f_17g, bits, n));
    printf("%-28s %12.1f %12.1f\n", "snprintf shortest loop", ns_per(f_loop, common, n / 10 + 1),
           ns_per(f_loop, bits, n / 10 + 1));
    free(common);
    free(bits);
    return 0;
}
