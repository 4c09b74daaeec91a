/* The numerical core of the kmeans operator (see kmeans_model.h). */
#include "kmeans_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ---- random numbers: splitmix64 + xoshiro256** ---- */

uint64_t kmeans_splitmix64(uint64_t x) {
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void kmeans_rng_seed(kmeans_rng_t *r, uint64_t seed) {
    /* splitmix64 as a stream: never yields an all-zero state. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        r->s[i] = kmeans_splitmix64(x);
        x += 0x9e3779b97f4a7c15ULL;
    }
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kmeans_rng_next(kmeans_rng_t *r) {
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double kmeans_rng_uniform(kmeans_rng_t *r) { return (double)(kmeans_rng_next(r) >> 11) * 0x1.0p-53; }

/* ---- the hot loop ---- */

/*
 * Nearest centroid of one point z (d features). The centroids are stored
 * feature-major with a padded stride kp (zt[j*kp + c], kp = k rounded up to
 * KMEANS_LANES): the kernel walks blocks of up to 8 vector registers of
 * centroids (64 lanes with AVX-512, 32 with AVX2, 16 with SSE2; then 32, 16,
 * 8 for the rest), every block keeps its lane accumulators in registers for
 * the whole feature loop (8 independent add chains: the adds of one lane are
 * a dependent chain, so narrower blocks left the FP units waiting on latency),
 * and each SIMD lane owns one centroid and adds its terms in feature order:
 * no re-association, so the result equals the scalar loop bit for bit, on
 * every instruction set. Floating-point contraction is off here: an FMA
 * rounds differently, and a model must give the same bits on every CPU
 * (a snapshot may be restored on another machine). The argmin is fused
 * (block minimum by a comparison tree, then the first lane holding it), so
 * ties go to the lowest index exactly as a sequential scan.
 *
 * The same body is compiled for the baseline target (SSE2 on x86-64) and,
 * on x86-64, for AVX2 and AVX-512F; the widest the CPU has is picked once.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

#define KM_ALWAYS_INLINE inline __attribute__((always_inline))
#define KM_WMAX 64 /* the widest block: 8 AVX-512 accumulators */

/* Fold one block of W lanes (n of them real) into the running argmin. */
static KM_ALWAYS_INLINE void block_argmin(double *restrict a, int W, int n, int c0, int *best, double *bv) {
    if (n < W)
        for (int l = n; l < W; l++)
            a[l] = INFINITY; /* padding lanes */
    double t[KM_WMAX / 2];
    for (int l = 0; l < W / 2; l++)
        t[l] = a[l] < a[l + W / 2] ? a[l] : a[l + W / 2];
    for (int h = W / 4; h >= 1; h /= 2)
        for (int l = 0; l < h; l++)
            t[l] = t[l] < t[l + h] ? t[l] : t[l + h];
    if (t[0] < *bv) {
        /* The first lane holding the minimum (t[0] is one of a's values) through bit masks, first of the groups
         * of 8 lanes, then of the lanes of the first group holding it: a loop that stops at that lane
         * mispredicted its exit about once a point (which lane wins is unpredictable). */
        int g = 0;
        if (W > 8) {
            unsigned gh = 0;
            for (int i = 0; i < W / 8; i++) {
                double m = a[8 * i];
                for (int l = 1; l < 8; l++)
                    m = a[8 * i + l] < m ? a[8 * i + l] : m;
                gh |= (unsigned)(m == t[0]) << i;
            }
            g = __builtin_ctz(gh);
        }
        unsigned lh = 0;
        for (int l = 0; l < 8; l++)
            lh |= (unsigned)(a[8 * g + l] == t[0]) << l;
        *bv = t[0];
        *best = c0 + 8 * g + __builtin_ctz(lh);
    }
}

/* Vectors of N doubles, N matching the target's registers (2: SSE2, 4: AVX2, 8: AVX-512). */
typedef double km_v2 __attribute__((vector_size(16)));
typedef double km_v2u __attribute__((vector_size(16), aligned(8), may_alias)); /* unaligned loads */
typedef double km_v4 __attribute__((vector_size(32)));
typedef double km_v4u __attribute__((vector_size(32), aligned(8), may_alias));
typedef double km_v8 __attribute__((vector_size(64)));
typedef double km_v8u __attribute__((vector_size(64), aligned(8), may_alias));

/*
 * KM_KERNEL(name, attr, V, N, WMAX) defines the kernel `name` for one target:
 * blocks of W = WMAX (then 32, 16, 8) lanes, W/N vector accumulators held in registers
 * across the feature loop, raw values (squared distance, or 1 - dot) stored
 * to a[W], then the fused argmin.
 */
#define KM_KERNEL(name, attr, V, N, WMAX)                                                                              \
    attr static KM_ALWAYS_INLINE void name##_block(const double *restrict zt, size_t kp, const double *restrict z,     \
                                                   int d, kmeans_metric_t metric, int W, double *restrict a) {         \
        V acc[WMAX / N];                                                                                               \
        for (int v = 0; v < W / N; v++)                                                                                \
            acc[v] = (V){0};                                                                                           \
        if (metric == KMEANS_EUCLIDEAN) {                                                                              \
            for (int j = 0; j < d; j++) {                                                                              \
                const double zj = z[j];                                                                                \
                const double *row = zt + (size_t)j * kp;                                                               \
                for (int v = 0; v < W / N; v++) {                                                                      \
                    const V t = zj - *(const V##u *)(row + v * N);                                                     \
                    acc[v] += t * t;                                                                                   \
                }                                                                                                      \
            }                                                                                                          \
        } else {                                                                                                       \
            for (int j = 0; j < d; j++) {                                                                              \
                const double zj = z[j];                                                                                \
                const double *row = zt + (size_t)j * kp;                                                               \
                for (int v = 0; v < W / N; v++)                                                                        \
                    acc[v] += zj * *(const V##u *)(row + v * N);                                                       \
            }                                                                                                          \
            for (int v = 0; v < W / N; v++)                                                                            \
                acc[v] = 1.0 - acc[v];                                                                                 \
        }                                                                                                              \
        memcpy(a, acc, (size_t)W * sizeof(double));                                                                    \
    }                                                                                                                  \
    attr static int name(const double *restrict zt, int kp, const double *restrict z, int k, int d,                    \
                         kmeans_metric_t metric, double *restrict raw) {                                               \
        double a[WMAX];                                                                                                \
        int best = 0, c0 = 0;                                                                                          \
        double bv = INFINITY;                                                                                          \
        for (; c0 + WMAX <= kp; c0 += WMAX) {                                                                          \
            name##_block(zt + c0, (size_t)kp, z, d, metric, WMAX, a);                                                  \
            block_argmin(a, WMAX, k - c0 < WMAX ? k - c0 : WMAX, c0, &best, &bv);                                      \
        }                                                                                                              \
        if (WMAX > 32 && c0 + 32 <= kp) {                                                                              \
            name##_block(zt + c0, (size_t)kp, z, d, metric, 32, a);                                                    \
            block_argmin(a, 32, k - c0 < 32 ? k - c0 : 32, c0, &best, &bv);                                            \
            c0 += 32;                                                                                                  \
        }                                                                                                              \
        if (WMAX > 16 && c0 + 16 <= kp) {                                                                              \
            name##_block(zt + c0, (size_t)kp, z, d, metric, 16, a);                                                    \
            block_argmin(a, 16, k - c0 < 16 ? k - c0 : 16, c0, &best, &bv);                                            \
            c0 += 16;                                                                                                  \
        }                                                                                                              \
        if (c0 < kp) { /* kp is a multiple of 8 */                                                                     \
            name##_block(zt + c0, (size_t)kp, z, d, metric, 8, a);                                                     \
            block_argmin(a, 8, k - c0 < 8 ? k - c0 : 8, c0, &best, &bv);                                               \
        }                                                                                                              \
        *raw = bv;                                                                                                     \
        return best;                                                                                                   \
    }

typedef int (*nearest_fn_t)(const double *restrict, int, const double *restrict, int, int, kmeans_metric_t,
                            double *restrict);

KM_KERNEL(nearest_base, , km_v2, 2, 16)
#if defined(__x86_64__) && defined(__GNUC__)
#define KM_X86_DISPATCH 1
KM_KERNEL(nearest_avx2, __attribute__((target("avx2"))), km_v4, 4, 32)
KM_KERNEL(nearest_avx512, __attribute__((target("avx512f"))), km_v8, 8, 64)
#endif

#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif

static nearest_fn_t nearest_impl;
static const char *nearest_name = "baseline";

/* The widest kernel the CPU runs; WEIR_KMEANS_SIMD=baseline|avx2|avx512 caps it (benchmarks). */
static nearest_fn_t nearest_resolve(void) {
    nearest_fn_t f = nearest_base;
    const char *name = "baseline";
#ifdef KM_X86_DISPATCH
    const char *cap = getenv("WEIR_KMEANS_SIMD");
    const int max = !cap || !strcmp(cap, "avx512") ? 2 : !strcmp(cap, "avx2") ? 1 : 0;
    __builtin_cpu_init();
    if (max >= 2 && __builtin_cpu_supports("avx512f")) {
        f = nearest_avx512;
        name = "avx512f";
    } else if (max >= 1 && __builtin_cpu_supports("avx2")) {
        f = nearest_avx2;
        name = "avx2";
    }
#endif
    __atomic_store_n(&nearest_name, name, __ATOMIC_RELAXED);
    __atomic_store_n(&nearest_impl, f, __ATOMIC_RELEASE);
    return f;
}

const char *kmeans_simd_name(void) {
    if (!__atomic_load_n(&nearest_impl, __ATOMIC_ACQUIRE))
        nearest_resolve();
    return __atomic_load_n(&nearest_name, __ATOMIC_RELAXED);
}

int kmeans_nearest(const double *restrict zt, int kp, const double *restrict z, int k, int d, kmeans_metric_t metric,
                   double *restrict raw) {
    nearest_fn_t f = __atomic_load_n(&nearest_impl, __ATOMIC_ACQUIRE);
    if (!f)
        f = nearest_resolve();
    return f(zt, kp, z, k, d, metric, raw);
}

/* The distance reported for a raw value from kmeans_distances. */
static inline double reported(kmeans_metric_t metric, double raw) {
    if (metric == KMEANS_EUCLIDEAN)
        return sqrt(raw > 0.0 ? raw : 0.0);
    return raw > 0.0 ? raw : 0.0; /* 1 - cos, clamped against rounding */
}

/* ---- derived arrays ---- */

static void model_rescale(kmeans_model_t *m) {
    const int d = m->p->d;
    for (int j = 0; j < d; j++) {
        double s = 1.0;
        if (m->p->standardize && m->sc_n > 1) {
            double sd = sqrt(m->sc_m2[j] / (double)m->sc_n);
            if (sd > 0.0 && isfinite(sd))
                s = 1.0 / sd;
        }
        m->scale[j] = s;
    }
}

static void model_rebuild_zt(kmeans_model_t *m) {
    const int k = m->p->k, d = m->p->d;
    for (int c = 0; c < k; c++) {
        const double *row = m->c + (size_t)c * (size_t)d;
        if (m->p->metric == KMEANS_COSINE) {
            double n2 = 0.0;
            for (int j = 0; j < d; j++)
                n2 += row[j] * row[j];
            double inv = n2 > 0.0 ? 1.0 / sqrt(n2) : 0.0;
            for (int j = 0; j < d; j++)
                m->zt[(size_t)j * (size_t)m->kp + (size_t)c] = row[j] * inv;
        } else {
            for (int j = 0; j < d; j++)
                m->zt[(size_t)j * (size_t)m->kp + (size_t)c] = row[j] * m->scale[j];
        }
    }
}

/* ---- life cycle ---- */

/* Doubles in n rounded up to whole 64-byte cache lines. */
static size_t lines(size_t n) { return (n + 7) & ~(size_t)7; }

/* The next n doubles of a model's block, on a 64-byte boundary. */
static double *carve(double **cur, size_t n) {
    double *a = *cur;
    *cur += lines(n);
    return a;
}

void kmeans_model_init(kmeans_model_t *m, const kmeans_params_t *p, uint64_t seed) {
    const size_t k = (size_t)p->k, d = (size_t)p->d;
    memset(m, 0, sizeof(*m));
    m->p = p;
    kmeans_rng_seed(&m->rng, seed);
    m->kp = (p->k + KMEANS_LANES - 1) / KMEANS_LANES * KMEANS_LANES;
    const size_t kp = (size_t)m->kp;
    /* One zeroed block, the per-point arrays first and each array on a cache line: their relative addresses
     * (hence any 4 KiB aliasing between the point scratch and the centroids) no longer depend on what the heap
     * handed out before, which made the per-point time vary by ~10 % from run to run. */
    m->mem = weir_calloc(7 * lines(d) + 2 * lines(k) + 2 * lines(k * d) + lines(kp * d) + 8, sizeof(double));
    double *cur = (double *)(((uintptr_t)m->mem + 63) & ~(uintptr_t)63);
    m->y = carve(&cur, d);
    m->z = carve(&cur, d);
    m->scale = carve(&cur, d);
    m->zt = carve(&cur, kp * d);
    m->bsum = carve(&cur, k * d);
    m->bcnt = carve(&cur, k);
    m->c = carve(&cur, k * d);
    m->w = carve(&cur, k);
    m->sc_mean = carve(&cur, d);
    m->sc_m2 = carve(&cur, d);
    m->pend_mean = carve(&cur, d);
    m->pend_m2 = carve(&cur, d);
    model_rescale(m);
}

void kmeans_model_free(kmeans_model_t *m) {
    if (!m)
        return;
    free(m->mem);
    free(m->init_x);
    memset(m, 0, sizeof(*m));
}

/* ---- initialisation ---- */

bool kmeans_model_buffer(kmeans_model_t *m, const double *x) {
    const size_t d = (size_t)m->p->d;
    if (m->init_n == m->init_cap && m->init_cap < m->p->init_size) {
        int cap = m->init_cap ? 2 * m->init_cap : 4;
        m->init_cap = cap < m->p->init_size ? cap : m->p->init_size;
        m->init_x = weir_realloc(m->init_x, (size_t)m->init_cap * d * sizeof(double));
    }
    if (m->init_n < m->p->init_size)
        memcpy(m->init_x + (size_t)m->init_n++ * d, x, d * sizeof(double));
    return m->init_n >= m->p->init_size;
}

void kmeans_model_drop_init(kmeans_model_t *m) {
    free(m->init_x);
    m->init_x = NULL;
    m->init_n = 0;
    m->init_cap = 0;
}

static double sqdist(const double *a, const double *b, int d) {
    double s = 0.0;
    for (int j = 0; j < d; j++) {
        double t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* Map m->y into assignment space (m->z). */
static inline const double *model_to_z(kmeans_model_t *m, const double *y) {
    if (m->p->metric == KMEANS_COSINE || !m->p->standardize)
        return y; /* the scale is 1: z = y */
    const int d = m->p->d;
    for (int j = 0; j < d; j++)
        m->z[j] = y[j] * m->scale[j];
    return m->z;
}

/* Scratch of one initialisation: the buffer in model (Y) and assignment (Z) space. */
typedef struct init_work {
    int n;
    const double *Y, *Z;
    double *closest, *trial, *best; /* n each */
    int *labels;                    /* n */
} init_work_t;

/* One k-means++ seeding plus Lloyd iterations into m->c. @returns the inertia on the buffer. */
static double init_once(kmeans_model_t *m, init_work_t *iw) {
    const int k = m->p->k, d = m->p->d, n = iw->n;
    const double *Y = iw->Y, *Z = iw->Z;
    double *closest = iw->closest, *trial = iw->trial, *best = iw->best;
    int *labels = iw->labels;
    /* Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant with
     * 2 + ln k candidate centres per step, keeping the one that lowers the
     * potential most). Distances are squared euclidean in Z. */
    int first = (int)(kmeans_rng_uniform(&m->rng) * n);
    if (first >= n)
        first = n - 1;
    memcpy(m->c, Y + (size_t)first * (size_t)d, (size_t)d * sizeof(double));
    double pot = 0.0;
    for (int i = 0; i < n; i++) {
        closest[i] = sqdist(Z + (size_t)i * (size_t)d, Z + (size_t)first * (size_t)d, d);
        pot += closest[i];
    }
    const int trials = 2 + (int)log((double)k);
    for (int c = 1; c < k; c++) {
        double best_pot = INFINITY;
        int best_id = n - 1;
        for (int t = 0; t < trials; t++) {
            double r = kmeans_rng_uniform(&m->rng) * pot, cum = 0.0;
            int id = n - 1;
            for (int i = 0; i < n; i++) {
                cum += closest[i];
                if (cum > r) {
                    id = i;
                    break;
                }
            }
            double tpot = 0.0;
            const double *zc = Z + (size_t)id * (size_t)d;
            for (int i = 0; i < n; i++) {
                double dd = sqdist(Z + (size_t)i * (size_t)d, zc, d);
                trial[i] = dd < closest[i] ? dd : closest[i];
                tpot += trial[i];
            }
            if (tpot < best_pot) {
                best_pot = tpot;
                best_id = id;
                double *tmp = best;
                best = trial;
                trial = tmp;
            }
        }
        double *tmp = closest;
        closest = best;
        best = tmp;
        pot = best_pot;
        memcpy(m->c + (size_t)c * (size_t)d, Y + (size_t)best_id * (size_t)d, (size_t)d * sizeof(double));
    }
    model_rebuild_zt(m);
    /* Lloyd iterations on the buffer. An empty cluster keeps its centre; the
     * dead-cluster rule of the updates takes care of it later. */
    for (int i = 0; i < n; i++)
        labels[i] = -1;
    for (int it = 0; it < m->p->init_iterations; it++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            double raw;
            int l = kmeans_nearest(m->zt, m->kp, Z + (size_t)i * (size_t)d, k, d, m->p->metric, &raw);
            changed += l != labels[i];
            labels[i] = l;
        }
        if (!changed)
            break;
        memset(m->bsum, 0, (size_t)k * (size_t)d * sizeof(double));
        memset(m->bcnt, 0, (size_t)k * sizeof(double));
        for (int i = 0; i < n; i++) {
            double *s = m->bsum + (size_t)labels[i] * (size_t)d;
            const double *y = Y + (size_t)i * (size_t)d;
            for (int j = 0; j < d; j++)
                s[j] += y[j];
            m->bcnt[labels[i]] += 1.0;
        }
        for (int c = 0; c < k; c++)
            if (m->bcnt[c] > 0.0)
                for (int j = 0; j < d; j++)
                    m->c[(size_t)c * (size_t)d + (size_t)j] = m->bsum[(size_t)c * (size_t)d + (size_t)j] / m->bcnt[c];
        model_rebuild_zt(m);
    }
    /* Final assignment: weights and inertia. */
    double inertia = 0.0;
    memset(m->w, 0, (size_t)k * sizeof(double));
    for (int i = 0; i < n; i++) {
        double raw;
        int l = kmeans_nearest(m->zt, m->kp, Z + (size_t)i * (size_t)d, k, d, m->p->metric, &raw);
        double dist = reported(m->p->metric, raw);
        inertia += dist * dist;
        m->w[l] += 1.0;
    }
    iw->closest = closest;
    iw->trial = trial;
    iw->best = best;
    return inertia;
}

double kmeans_model_initialize(kmeans_model_t *m) {
    const int k = m->p->k, d = m->p->d, n = m->init_n;
    const size_t nd = (size_t)n * (size_t)d, kd = (size_t)k * (size_t)d;
    if (n <= 0)
        return 0.0;
    /* Scaler statistics of the buffer (Welford). */
    m->sc_n = 0;
    memset(m->sc_mean, 0, (size_t)d * sizeof(double));
    memset(m->sc_m2, 0, (size_t)d * sizeof(double));
    if (m->p->standardize) {
        for (int i = 0; i < n; i++) {
            const double *x = kmeans_model_init_point(m, i);
            m->sc_n++;
            for (int j = 0; j < d; j++) {
                double delta = x[j] - m->sc_mean[j];
                m->sc_mean[j] += delta / (double)m->sc_n;
                m->sc_m2[j] += delta * (x[j] - m->sc_mean[j]);
            }
        }
    }
    model_rescale(m);
    /* Model-space (Y) and assignment-space (Z) copies of the buffer. */
    double *Y = weir_malloc(nd * sizeof(double));
    double *Z = weir_malloc(nd * sizeof(double));
    for (int i = 0; i < n; i++) {
        kmeans_model_project(m, kmeans_model_init_point(m, i));
        memcpy(Y + (size_t)i * (size_t)d, m->y, (size_t)d * sizeof(double));
        memcpy(Z + (size_t)i * (size_t)d, model_to_z(m, m->y), (size_t)d * sizeof(double));
    }
    init_work_t iw = {
        .n = n,
        .Y = Y,
        .Z = Z,
        .closest = weir_malloc((size_t)n * sizeof(double)),
        .trial = weir_malloc((size_t)n * sizeof(double)),
        .best = weir_malloc((size_t)n * sizeof(double)),
        .labels = weir_malloc((size_t)n * sizeof(int)),
    };
    /* init_runs seedings (scikit-learn's n_init): keep the lowest inertia. */
    double *best_c = weir_malloc(kd * sizeof(double));
    double *best_w = weir_malloc((size_t)k * sizeof(double));
    double best_inertia = INFINITY;
    const int runs = m->p->init_runs > 0 ? m->p->init_runs : 1;
    for (int run = 0; run < runs; run++) {
        double inertia = init_once(m, &iw);
        if (inertia < best_inertia) {
            best_inertia = inertia;
            memcpy(best_c, m->c, kd * sizeof(double));
            memcpy(best_w, m->w, (size_t)k * sizeof(double));
        }
    }
    memcpy(m->c, best_c, kd * sizeof(double));
    memcpy(m->w, best_w, (size_t)k * sizeof(double));
    model_rebuild_zt(m);
    memset(m->bsum, 0, kd * sizeof(double));
    memset(m->bcnt, 0, (size_t)k * sizeof(double));
    m->bn = 0;
    m->binertia = 0.0;
    m->pend_n = 0;
    m->ready = true;
    m->version = 1;
    free(best_c);
    free(best_w);
    free(Y);
    free(Z);
    free(iw.closest);
    free(iw.trial);
    free(iw.best);
    free(iw.labels);
    return best_inertia;
}

/* ---- per point ---- */

bool kmeans_model_project(kmeans_model_t *m, const double *x) {
    const int d = m->p->d;
    if (m->p->metric == KMEANS_EUCLIDEAN) {
        memcpy(m->y, x, (size_t)d * sizeof(double));
        return true;
    }
    double n2 = 0.0;
    for (int j = 0; j < d; j++) {
        double u = m->p->standardize ? (x[j] - m->sc_mean[j]) * m->scale[j] : x[j];
        m->y[j] = u;
        n2 += u * u;
    }
    if (!(n2 > 0.0) || !isfinite(n2)) {
        memset(m->y, 0, (size_t)d * sizeof(double));
        return false;
    }
    double inv = 1.0 / sqrt(n2);
    for (int j = 0; j < d; j++)
        m->y[j] *= inv;
    return true;
}

int kmeans_model_assign(kmeans_model_t *m, double *distance) {
    const double *z = model_to_z(m, m->y);
    double raw;
    int b = kmeans_nearest(m->zt, m->kp, z, m->p->k, m->p->d, m->p->metric, &raw);
    *distance = reported(m->p->metric, raw);
    return b;
}

/* Add model-space point y (raw x, assigned to `cluster` at `distance`) to the open batch. */
static inline void observe(kmeans_model_t *m, const double *restrict x, const double *restrict y, int cluster,
                           double distance) {
    const int d = m->p->d;
    double *restrict s = m->bsum + (size_t)cluster * (size_t)d;
    for (int j = 0; j < d; j++)
        s[j] += y[j];
    m->bcnt[cluster] += 1.0;
    m->bn++;
    m->binertia += distance * distance;
    if (m->p->standardize) {
        const double n = (double)++m->pend_n;
        double *restrict mean = m->pend_mean, *restrict m2 = m->pend_m2;
        for (int j = 0; j < d; j++) {
            double delta = x[j] - mean[j];
            mean[j] += delta / n;
            m2[j] += delta * (x[j] - mean[j]);
        }
    }
}

void kmeans_model_observe(kmeans_model_t *m, const double *x, int cluster, double distance) {
    observe(m, x, m->y, cluster, distance);
}

int kmeans_model_add(kmeans_model_t *m, const double *x, double *distance) {
    const kmeans_params_t *p = m->p;
    const double *y = x; /* euclidean: model space is input space, no copy */
    if (p->metric != KMEANS_EUCLIDEAN) {
        if (!kmeans_model_project(m, x))
            return -1;
        y = m->y;
    }
    double raw;
    const int c = kmeans_nearest(m->zt, m->kp, model_to_z(m, y), p->k, p->d, p->metric, &raw);
    const double dist = reported(p->metric, raw);
    observe(m, x, y, c, dist);
    *distance = dist;
    return c;
}

int kmeans_model_update(kmeans_model_t *m) {
    const int k = m->p->k, d = m->p->d;
    /* Spark MLlib StreamingKMeans: discount a per batch, or a^m per point. */
    const double a = m->p->decay_per_point ? pow(m->p->decay, (double)m->bn) : m->p->decay;
    for (int c = 0; c < k; c++) {
        const double na = m->w[c] * a, mc = m->bcnt[c];
        const double nn = na + mc;
        if (mc > 0.0) {
            double *row = m->c + (size_t)c * (size_t)d;
            const double *s = m->bsum + (size_t)c * (size_t)d;
            for (int j = 0; j < d; j++)
                row[j] = (row[j] * na + s[j]) / nn;
        }
        m->w[c] = nn;
    }
    /* Dead clusters: split the largest, as Spark does, until none is left. */
    int reseeded = 0;
    for (int round = 0; round < k - 1; round++) {
        int imax = 0, imin = 0;
        for (int c = 1; c < k; c++) {
            if (m->w[c] > m->w[imax])
                imax = c;
            if (m->w[c] < m->w[imin])
                imin = c;
        }
        if (imax == imin || !(m->w[imin] < m->p->dead_fraction * m->w[imax]))
            break;
        const double weight = (m->w[imax] + m->w[imin]) / 2.0;
        m->w[imax] = m->w[imin] = weight;
        double *l = m->c + (size_t)imax * (size_t)d, *s = m->c + (size_t)imin * (size_t)d;
        for (int j = 0; j < d; j++) {
            const double x = l[j];
            const double p = 1e-14 * fmax(fabs(x), 1.0);
            l[j] = x + p;
            s[j] = x - p;
        }
        reseeded++;
    }
    m->reseeds += (uint64_t)reseeded;
    /* Merge the batch into the running scaler (Chan et al.). */
    if (m->pend_n > 0) {
        const double na = (double)m->sc_n, nb = (double)m->pend_n, n = na + nb;
        for (int j = 0; j < d; j++) {
            const double delta = m->pend_mean[j] - m->sc_mean[j];
            m->sc_mean[j] += delta * nb / n;
            m->sc_m2[j] += m->pend_m2[j] + delta * delta * na * nb / n;
        }
        m->sc_n += m->pend_n;
        m->pend_n = 0;
        memset(m->pend_mean, 0, (size_t)d * sizeof(double));
        memset(m->pend_m2, 0, (size_t)d * sizeof(double));
    }
    model_rescale(m);
    model_rebuild_zt(m);
    memset(m->bsum, 0, (size_t)k * (size_t)d * sizeof(double));
    memset(m->bcnt, 0, (size_t)k * sizeof(double));
    m->bn = 0;
    m->binertia = 0.0;
    m->version++;
    return reseeded;
}

/* ---- snapshot ---- */

static void w_f64s(weir_writer_t *w, const double *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        weir_w_f64(w, v[i]);
}

static void r_f64s(weir_reader_t *r, double *v, size_t n) {
    for (size_t i = 0; i < n && !r->err; i++)
        v[i] = weir_r_f64(r);
}

void kmeans_model_write(const kmeans_model_t *m, weir_writer_t *w) {
    const size_t k = (size_t)m->p->k, d = (size_t)m->p->d;
    weir_w_u8(w, m->ready ? 1 : 0);
    for (int i = 0; i < 4; i++)
        weir_w_u64(w, m->rng.s[i]);
    weir_w_i64(w, m->version);
    weir_w_u64(w, m->reseeds);
    w_f64s(w, m->c, k * d);
    w_f64s(w, m->w, k);
    weir_w_u64(w, m->sc_n);
    w_f64s(w, m->sc_mean, d);
    w_f64s(w, m->sc_m2, d);
    weir_w_u64(w, m->pend_n);
    w_f64s(w, m->pend_mean, d);
    w_f64s(w, m->pend_m2, d);
    w_f64s(w, m->bsum, k * d);
    w_f64s(w, m->bcnt, k);
    weir_w_u64(w, m->bn);
    weir_w_f64(w, m->binertia);
    weir_w_u32(w, (uint32_t)m->init_n);
    if (m->init_n)
        w_f64s(w, m->init_x, (size_t)m->init_n * d);
}

void kmeans_model_read(kmeans_model_t *m, weir_reader_t *r) {
    const size_t k = (size_t)m->p->k, d = (size_t)m->p->d;
    m->ready = weir_r_u8(r) != 0;
    for (int i = 0; i < 4; i++)
        m->rng.s[i] = weir_r_u64(r);
    m->version = weir_r_i64(r);
    m->reseeds = weir_r_u64(r);
    r_f64s(r, m->c, k * d);
    r_f64s(r, m->w, k);
    m->sc_n = weir_r_u64(r);
    r_f64s(r, m->sc_mean, d);
    r_f64s(r, m->sc_m2, d);
    m->pend_n = weir_r_u64(r);
    r_f64s(r, m->pend_mean, d);
    r_f64s(r, m->pend_m2, d);
    r_f64s(r, m->bsum, k * d);
    r_f64s(r, m->bcnt, k);
    m->bn = weir_r_u64(r);
    m->binertia = weir_r_f64(r);
    uint32_t n = weir_r_u32(r);
    if (r->err)
        return;
    if (n > (uint32_t)m->p->init_size || (m->ready && n)) {
        weir_r_fail(r, "kmeans: init buffer of %u points does not fit init_size %d", n, m->p->init_size);
        return;
    }
    kmeans_model_drop_init(m);
    if (n) {
        m->init_x = weir_malloc((size_t)n * d * sizeof(double));
        m->init_cap = (int)n;
        r_f64s(r, m->init_x, (size_t)n * d);
        m->init_n = (int)n;
    }
    model_rescale(m);
    model_rebuild_zt(m);
}
