/**
 * @file arima_model.h
 * @brief ARIMA(p,d,q) with a deterministic trend: conditional sum of squares,
 *        exact Gaussian likelihood by the Kalman filter, maximum-likelihood
 *        fitting (analytic score, Fisher scoring with BFGS correction, NLopt
 *        L-BFGS as fallback), forecasts with intervals and psi-weights.
 *
 * This is the numerical library behind the `arima` operator. It has no weir
 * dependency (only libc, libm and NLopt) so that it can be unit-tested and
 * benchmarked alone.
 *
 * The model and every number it reports follow statsmodels 0.13.5's
 * `statsmodels.tsa.arima.model.ARIMA` with its defaults (docs/arima.md):
 *
 *     y_t = beta' x_t + u_t,     phi(B) (1 - B)^d u_t = theta(B) eps_t,
 *     eps_t ~ N(0, sigma2),      x_t = (1, t) subset by `trend`, t = 1..n.
 *
 *  - State space as SARIMAX builds it: the d differencing states first, then
 *    the r = max(p, q + 1) ARMA states in companion form (AR in the first
 *    column of T, R = [1, theta_1..theta_{r-1}]'), Z = [1..1, 1, 0..0].
 *  - Initialisation: ARMA block stationary (discrete Lyapunov equation), the
 *    differencing states *approximately diffuse* with variance 1e6 in the
 *    units of y, and the first d log-likelihood terms burned. This is what
 *    statsmodels does by default and it is not the same as differencing the
 *    series first (the difference shows for series far from zero).
 *  - sigma2 is a free parameter (statsmodels' concentrate_scale=False); the
 *    AR and MA polynomials are kept stationary / invertible through
 *    statsmodels' Monahan (1984) transform of partial autocorrelations.
 *  - AIC, AICc and BIC use nobs_effective = n - d and k = all parameters
 *    including sigma2, as statsmodels' MLEResults does.
 *
 * Parameter vectors are ordered as statsmodels orders them:
 *     [const] [drift] ar.L1..ar.Lp ma.L1..ma.Lq sigma2
 * (statsmodels 0.13.5 names the time-trend coefficient `x1`; we call it
 * `drift`, its meaning when d = 1.)
 *
 * Thread safety: every function is reentrant; nothing is global.
 */
#ifndef WEIR_ARIMA_MODEL_H
#define WEIR_ARIMA_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#define ARIMA_MAX_P 8
#define ARIMA_MAX_Q 8
#define ARIMA_MAX_D 2
/** Largest r = max(p, q + 1). */
#define ARIMA_MAX_R (ARIMA_MAX_P > ARIMA_MAX_Q + 1 ? ARIMA_MAX_P : ARIMA_MAX_Q + 1)
/** Largest state dimension m = d + r. */
#define ARIMA_MAX_M (ARIMA_MAX_D + ARIMA_MAX_R)
/** Largest parameter vector: 2 trend + p + q + sigma2. */
#define ARIMA_MAX_PARAMS (2 + ARIMA_MAX_P + ARIMA_MAX_Q + 1)
/** statsmodels' approximate-diffuse initial variance (MLEModel initial_variance). */
#define ARIMA_DIFFUSE_VARIANCE 1e6

/** Deterministic trend, with statsmodels' meaning. */
typedef enum arima_trend {
    ARIMA_TREND_N = 0, /**< none */
    ARIMA_TREND_C,     /**< constant (the mean when d = 0) */
    ARIMA_TREND_T,     /**< linear time trend; with d = 1 the drift */
    ARIMA_TREND_CT,    /**< both */
} arima_trend_t;

/** The model's order and trend. */
typedef struct arima_spec {
    int p, d, q;
    arima_trend_t trend;
} arima_spec_t;

/** A state-space model built from a parameter vector (see arima_ssm_build). */
typedef struct arima_ssm {
    int m; /**< state dimension d + r */
    int d, r;
    double T[ARIMA_MAX_M * ARIMA_MAX_M]; /**< transition, row-major m x m */
    double R[ARIMA_MAX_M];               /**< selection (one disturbance) */
    double sigma2;                       /**< disturbance variance */
    double beta[2];                      /**< const, drift (0 if absent) */
} arima_ssm_t;

/** Kalman filter state: the one-step prediction of the next observation's state. */
typedef struct arima_kstate {
    int m;
    double a[ARIMA_MAX_M];               /**< predicted state mean */
    double P[ARIMA_MAX_M * ARIMA_MAX_M]; /**< predicted state covariance */
    double t;                            /**< trend time index of the next observation (1-based) */
    bool steady;                         /**< P has converged: updates keep P */
} arima_kstate_t;

/** Result of a fit. */
typedef struct arima_fit {
    int nparams;                     /**< length of params (incl. sigma2) */
    double params[ARIMA_MAX_PARAMS]; /**< statsmodels order, original units */
    double loglik;
    double aic, aicc, bic;
    int nobs; /**< observations used (n, as statsmodels' nobs) */
    bool converged;
    int iterations;  /**< likelihood+gradient evaluations */
    int nevals;      /**< likelihood evaluations in all */
    char error[128]; /**< "" on success, else the reason */
} arima_fit_t;

/** Fitting options. Zero-initialised means the defaults. */
typedef struct arima_opts {
    int maxeval;     /**< likelihood evaluations (default 2000) */
    double ftol_rel; /**< relative tolerance on -loglik (default 1e-11) */
    bool no_css;     /**< unused since the CSS stage was dropped (kept for source compatibility) */
} arima_opts_t;

/** @returns the number of trend terms (0, 1 or 2). */
int arima_k_trend(arima_trend_t trend);
/** @returns the number of parameters including sigma2. */
int arima_nparams(const arima_spec_t *spec);
/**
 * @brief Check an order/trend combination (p, q <= 8, d <= 2; statsmodels'
 *        rule: no trend term of lower order than d).
 * @returns 0, or -1 with a message in errstr.
 */
int arima_spec_check(const arima_spec_t *spec, char *errstr, size_t errstr_size);
/** @brief Name of parameter i in statsmodels' style ("const", "drift", "ar.L1", "sigma2"...). */
void arima_param_name(const arima_spec_t *spec, int i, char *buf, size_t size);

/**
 * @brief statsmodels' constrain_stationary_univariate: map n unconstrained
 *        reals to the coefficients of a stationary AR polynomial
 *        1 - c_1 B - ... - c_n B^n (Monahan 1984, via partial autocorrelations
 *        r_k = u_k / sqrt(1 + u_k^2)).
 */
void arima_constrain_stationary(const double *u, int n, double *c);
/** @brief The inverse (unconstrain_stationary_univariate). @returns -1 if c is not stationary. */
int arima_unconstrain_stationary(const double *c, int n, double *u);

/**
 * @brief Conditional sum of squares of the ARMA recursion on the differenced
 *        series, e_t = w_t - sum phi_i w_{t-i} - sum theta_j e_{t-j} with
 *        w = Delta^d (y - beta'x), summed over t >= p with earlier e_t = 0.
 * @param params statsmodels order; sigma2 (if present) is ignored.
 * @param sigma2 if not NULL, gets SSE / (n - d - p).
 * @returns the sum of squares, or NAN when n - d <= p.
 */
double arima_css(const arima_spec_t *spec, const double *y, int n, const double *params, double *sigma2);

/** @brief Build the state-space form for params (statsmodels order, with sigma2). */
void arima_ssm_build(const arima_spec_t *spec, const double *params, arima_ssm_t *ssm);
/**
 * @brief statsmodels' default initial state: a = 0; P = diag(diffuse) for the
 *        differencing states, sigma2 * Lyapunov solution for the ARMA block.
 * @param diffuse the approximate-diffuse variance (ARIMA_DIFFUSE_VARIANCE).
 * @returns 0, or -1 if the Lyapunov equation is singular (unit root).
 */
int arima_kstate_init(const arima_ssm_t *ssm, double diffuse, arima_kstate_t *ks);
/**
 * @brief Run the Kalman filter over y[0..n) from ks (updated in place to the
 *        prediction for observation n).
 * @param burn number of leading log-likelihood terms left out (d).
 * @returns the log-likelihood, or NAN on a non-positive variance or a NaN.
 */
double arima_filter(const arima_ssm_t *ssm, arima_kstate_t *ks, const double *y, int n, int burn);
/**
 * @brief Feed one observation: *yhat and *var get its one-step prediction
 *        and prediction variance (before the update). NaN y skips the update
 *        (missing value) but still predicts.
 */
void arima_kstate_step(const arima_ssm_t *ssm, arima_kstate_t *ks, double y, double *yhat, double *var);
/**
 * @brief Forecast h steps ahead from ks (not modified): mean[i] and se[i] for
 *        observation n+1+i, from the state-space prediction (which equals
 *        sigma2 * sum psi_j^2 once the filter has converged).
 */
void arima_forecast(const arima_ssm_t *ssm, const arima_kstate_t *ks, int h, double *mean, double *se);

/**
 * @brief Exact log-likelihood of y at params (statsmodels' `llf` at those params).
 * @returns the log-likelihood, or NAN if it cannot be evaluated.
 */
double arima_loglik(const arima_spec_t *spec, const double *y, int n, const double *params);

/**
 * @brief psi-weights of the ARIMA: psi(B) = theta(B) / (phi(B) (1 - B)^d), psi_0 = 1.
 * @param nw number of weights wanted (psi_0 .. psi_{nw-1}).
 */
void arima_psi_weights(const arima_spec_t *spec, const double *params, int nw, double *psi);

/**
 * @brief Fit by exact maximum likelihood: Hannan-Rissanen start values (or
 *        warm->params when warm is not NULL and valid), then Fisher scoring
 *        with a BFGS correction on the transformed parameters using the
 *        analytic gradient (NLopt L-BFGS if that does not converge).
 * @param ks if not NULL, gets the Kalman state after y[n-1] at the estimate
 *        (ready for arima_forecast / arima_kstate_step).
 * @returns 0, or -1 with out->error set (too few points, constant series,
 *          NaN, optimiser failure). out is always filled as far as possible.
 */
int arima_fit(const arima_spec_t *spec, const double *y, int n, const arima_fit_t *warm, const arima_opts_t *opts,
              arima_fit_t *out, arima_kstate_t *ks);

/** @brief Normal quantile for a central interval of coverage level (0.95 -> 1.959964). */
double arima_z_quantile(double level);

#endif
