/*
 * bench_arima: time arima_fit on series files (one value per line) and the
 * throughput of many keys refitting. Used by bench/arima/run.sh.
 *   bench_arima fit P D Q FILE [REPEAT]   -> "ms_per_fit loglik"
 *   bench_arima keys NKEYS NPOINTS        -> "fits_per_s" (ARIMA(1,1,1), warm refits)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arima_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double *read_series(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    int cap = 1024;
    double *y = malloc(sizeof(double) * (size_t)cap);
    *n = 0;
    while (fscanf(f, "%lf", &y[*n]) == 1)
        if (++*n == cap)
            y = realloc(y, sizeof(double) * (size_t)(cap *= 2));
    fclose(f);
    return y;
}

int main(int argc, char **argv) {
    if (argc >= 6 && !strcmp(argv[1], "fit")) {
        arima_spec_t spec = {atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), ARIMA_TREND_N};
        if (spec.d == 0)
            spec.trend = ARIMA_TREND_C;
        int n, rep = argc > 6 ? atoi(argv[6]) : 20;
        double *y = read_series(argv[5], &n);
        arima_fit_t fit;
        double t0 = now_s();
        for (int i = 0; i < rep; i++)
            arima_fit(&spec, y, n, NULL, NULL, &fit, NULL);
        double dt = (now_s() - t0) / rep;
        printf("%.6f %.6f %s\n", dt * 1e3, fit.loglik, fit.error[0] ? fit.error : "ok");
        free(y);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "keys")) {
        int nkeys = atoi(argv[2]), npts = atoi(argv[3]);
        arima_spec_t spec = {1, 1, 1, ARIMA_TREND_N};
        double *y = malloc(sizeof(double) * (size_t)(npts + 10));
        arima_fit_t *fits = calloc((size_t)nkeys, sizeof(*fits));
        unsigned s = 12345;
        /* first fit per key (cold), then one warm refit per key after 10 new values */
        double t0 = now_s();
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < nkeys; k++) {
                double x = 0, e1 = 0, lvl = 0;
                s = 12345u + (unsigned)k;
                for (int i = 0; i < npts + 10; i++) {
                    s = s * 1103515245u + 12345u;
                    double e = ((s >> 8) & 0xffff) / 65536.0 - 0.5;
                    x = 0.5 * x + e - 0.3 * e1;
                    e1 = e;
                    lvl += x;
                    y[i] = lvl;
                }
                arima_fit_t out;
                if (pass == 0)
                    arima_fit(&spec, y, npts, NULL, NULL, &fits[k], NULL);
                else
                    arima_fit(&spec, y + 10, npts, &fits[k], NULL, &out, NULL);
            }
        double dt = now_s() - t0;
        printf("%.1f\n", 2.0 * nkeys / dt);
        free(y);
        free(fits);
        return 0;
    }
    fprintf(stderr, "usage: bench_arima fit P D Q FILE [REPEAT] | keys NKEYS NPOINTS\n");
    return 2;
}
