/**
 * @file kmeans_model.h
 * @brief The numerical core of the `kmeans` operator: one streaming k-means
 *        model (k-means++ initialisation, Lloyd refinement, Spark MLlib's
 *        decayed mini-batch update, dead-cluster splitting), its running
 *        scaler and its random number generator. Internal to operators/kmeans/;
 *        kmeans.c wraps it into an operator, the unit tests and the benchmark
 *        call it directly.
 *
 * Spaces. A raw feature vector x (d doubles) is first mapped to the *model
 * space* y, where centroids live and are averaged:
 *   - euclidean: y = x (centroids are in the units of the input);
 *   - cosine:    y = u / |u| with u = (x - mean) / sd when standardizing, else
 *                u = x (centroids are decayed means of unit vectors).
 * Assignment happens in the *assignment space* z: for euclidean z = y / sd per
 * feature when standardizing (a weighted euclidean metric; centroid means are
 * invariant to per-feature scaling, so they can stay in input units), else
 * z = y; for cosine z = y and the centroids are normalised.
 *
 * Layout. Centroids are a contiguous row-major k x d array of doubles. The
 * assignment step reads a feature-major (d x kp, kp = k rounded up to 8) copy in assignment space,
 * rebuilt after every update, so that its inner loop runs over the k
 * centroids: each SIMD lane accumulates one centroid's distance in feature
 * order, which vectorises without re-associating floating-point sums (no
 * -ffast-math) and gives bit-identical results to the scalar loop.
 *
 * Ownership: a model owns all of its arrays (one block, plus the init
 * buffer); kmeans_model_free() accepts a zeroed model. Nothing here
 * allocates per point.
 */
#ifndef WEIR_KMEANS_MODEL_H
#define WEIR_KMEANS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

/** xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
typedef struct kmeans_rng {
    uint64_t s[4]; /**< generator state; snapshotted */
} kmeans_rng_t;

/** @brief Seed the generator from one 64-bit value (splitmix64 expansion). */
void kmeans_rng_seed(kmeans_rng_t *r, uint64_t seed);
/** @returns the next 64 random bits. */
uint64_t kmeans_rng_next(kmeans_rng_t *r);
/** @returns a uniform double in [0, 1) (53 random bits). */
double kmeans_rng_uniform(kmeans_rng_t *r);
/** @returns splitmix64 of x (a good 64-bit mixer, used to derive per-key seeds). */
uint64_t kmeans_splitmix64(uint64_t x);

typedef enum kmeans_metric {
    KMEANS_EUCLIDEAN = 0, /**< distance = sqrt(sum (z_j - c_j)^2) */
    KMEANS_COSINE = 1,    /**< distance = 1 - cos(z, c) */
} kmeans_metric_t;

/** What a model needs from the operator's configuration (shared, read-only). */
typedef struct kmeans_params {
    int k; /**< clusters */
    int d; /**< features */
    kmeans_metric_t metric;
    bool standardize;     /**< running mean/variance scaling */
    double decay;         /**< a in (0, 1]: forgetfulness per time unit */
    bool decay_per_point; /**< time unit: true = points (a^m per batch), false = batches (a) */
    double dead_fraction; /**< re-seed a cluster whose weight < dead_fraction * largest */
    int init_size;        /**< points buffered for k-means++ */
    int init_iterations;  /**< Lloyd iterations on the init buffer (per run) */
    int init_runs;        /**< k-means++ runs on the init buffer; the lowest inertia wins */
} kmeans_params_t;

/** One streaming k-means model with its scaler, batch accumulators and init buffer. */
typedef struct kmeans_model {
    const kmeans_params_t *p; /**< borrowed */
    bool ready;               /**< initialised (version >= 1) */
    kmeans_rng_t rng;         /**< used by k-means++ seeding */
    int64_t version;          /**< 0 before init, 1 after init, +1 per update */
    uint64_t reseeds;         /**< dead clusters re-seeded so far */
    double *c;                /**< k*d centroids in model space, row-major */
    double *w;                /**< k cluster weights n */
    int kp;                   /**< k rounded up to KMEANS_LANES: the stride of zt */
    double *zt;               /**< d*kp feature-major centroids in assignment space, padding 0 (derived) */
    /* running scaler over raw x (Welford), merged at batch ends */
    uint64_t sc_n;   /**< points in the scaler */
    double *sc_mean; /**< d running means */
    double *sc_m2;   /**< d sums of squared deviations */
    double *scale;   /**< d: 1/sd (or 1) (derived) */
    uint64_t pend_n; /**< points of the open batch not yet in the scaler */
    double *pend_mean, *pend_m2;
    /* the open mini-batch */
    double *bsum;    /**< k*d sums of model-space points per cluster */
    double *bcnt;    /**< k points per cluster */
    uint64_t bn;     /**< points in the batch */
    double binertia; /**< sum of distance^2 over the batch */
    /* the init buffer (raw x), freed after initialisation */
    int init_n;
    double *init_x; /**< init_cap*d, grown by doubling up to init_size*d (a key explosion of models with a
                         point or two each must not cost init_size points per key) */
    int init_cap;   /**< points init_x has room for */
    /* per-point scratch (no allocation per point) */
    double *y, *z; /**< d each */
    void *mem;     /**< the one allocation every array above except init_x lives in */
} kmeans_model_t;

/** @brief Allocate a model's arrays and seed its generator. */
void kmeans_model_init(kmeans_model_t *m, const kmeans_params_t *p, uint64_t seed);
/** @brief Free what the model owns (accepts a zeroed model). */
void kmeans_model_free(kmeans_model_t *m);

/**
 * @brief Buffer one raw point for initialisation (only while !m->ready).
 * @returns true when the buffer is full and kmeans_model_initialize() is due.
 */
bool kmeans_model_buffer(kmeans_model_t *m, const double *x);
/**
 * @brief init_runs times: k-means++ (greedy, 2 + ln k trials as in
 *        scikit-learn) on the init buffer, then up to init_iterations Lloyd
 *        iterations; the run with the lowest inertia on the buffer wins (as
 *        scikit-learn's n_init). Sets version 1, weights = final cluster
 *        sizes. Needs at least one buffered point.
 * @returns the inertia (sum of distance^2) of the buffer under the new model.
 */
double kmeans_model_initialize(kmeans_model_t *m);
/** @brief Free the init buffer (after the held records have been assigned). */
void kmeans_model_drop_init(kmeans_model_t *m);
/** @returns the raw point i of the init buffer (valid until initialisation). */
static inline const double *kmeans_model_init_point(const kmeans_model_t *m, int i) {
    return m->init_x + (size_t)i * (size_t)m->p->d;
}

/**
 * @brief Map raw x into model space (into m->y).
 * @returns false when the point has no direction (cosine, zero vector).
 */
bool kmeans_model_project(kmeans_model_t *m, const double *x);
/**
 * @brief Nearest centroid of m->y (call kmeans_model_project first).
 * @returns the cluster index; *distance gets the reported distance.
 */
int kmeans_model_assign(kmeans_model_t *m, double *distance);
/** @brief Add m->y (assigned to `cluster` at `distance`) and raw x to the open batch. */
void kmeans_model_observe(kmeans_model_t *m, const double *x, int cluster, double distance);
/**
 * @brief One streaming point: kmeans_model_project + kmeans_model_assign +
 *        kmeans_model_observe in one call, with the same arithmetic (same
 *        bits), without copying x into m->y when model space is input space
 *        (euclidean; m->y is then not updated).
 * @returns the cluster (*distance gets the reported distance), or -1 when the
 *          point has no direction (cosine): nothing is added.
 */
int kmeans_model_add(kmeans_model_t *m, const double *x, double *distance);
/**
 * @brief Close the open batch: decayed update c' = (c n a + sum)/(n a + m),
 *        n' = n a + m, dead-cluster splitting, scaler merge; version + 1.
 * @returns the number of clusters re-seeded by this update.
 */
int kmeans_model_update(kmeans_model_t *m);

/** Centroid lanes per SIMD block: zt's stride kp is k rounded up to a multiple of this. */
#define KMEANS_LANES 8

/**
 * @brief The hot loop: nearest of k centroids (feature-major zt, stride kp) to z.
 * @returns the lowest index with the smallest raw value; *raw gets it
 *          (euclidean: squared distance; cosine: 1 - dot).
 */
int kmeans_nearest(const double *restrict zt, int kp, const double *restrict z, int k, int d, kmeans_metric_t metric,
                   double *restrict raw);
/** @returns the instruction set kmeans_nearest runs with: "baseline", "avx2" or "avx512f". */
const char *kmeans_simd_name(void);

/** @brief Write the model's state (not its params) into an open snapshot frame. */
void kmeans_model_write(const kmeans_model_t *m, weir_writer_t *w);
/** @brief Read what kmeans_model_write wrote; errors are sticky in r. */
void kmeans_model_read(kmeans_model_t *m, weir_reader_t *r);

#endif
