/**
 * @file arima_model.c
 * @brief ARIMA numerics: see arima_model.h for the model and its conventions.
 *
 * Fitting works on the series divided by a scale s (the RMS of the
 * differenced, de-trended series) so that the optimiser sees O(1) numbers;
 * the approximate-diffuse variance is divided by s^2 at the same time, which
 * keeps the scaled likelihood exactly equal to the original one minus
 * (n - d) log s. The reported log-likelihood is recomputed on the original
 * series at the estimate.
 */
#include "arima_model.h"

#include <float.h>
#include <math.h>
#include <nlopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836
/* Kalman filter: P is steady once no element moves by more than this (relative). */
#define KF_STEADY_TOL 1e-13
/* Returned by objectives where the likelihood cannot be evaluated. */
#define BAD_OBJECTIVE 1e10
/* Unconstrained AR/MA coordinates are kept in [-U_MAX, U_MAX] (|pacf| < 0.99999). */
#define U_MAX 220.0

int arima_k_trend(arima_trend_t trend) { return trend == ARIMA_TREND_CT ? 2 : trend == ARIMA_TREND_N ? 0 : 1; }

int arima_nparams(const arima_spec_t *spec) { return arima_k_trend(spec->trend) + spec->p + spec->q + 1; }

/* Steady-state pieces shared by the filters: PZ = P Z' (Z sums the first nz
 * states) and F = Z P Z'. Returns F. */
static double steady_pz(const double *P, int m, int nz, double *PZ) {
    double F = 0;
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < nz; j++)
            s += P[i * m + j];
        PZ[i] = s;
    }
    for (int i = 0; i < nz; i++)
        F += PZ[i];
    return F;
}

static bool has_const(arima_trend_t t) { return t == ARIMA_TREND_C || t == ARIMA_TREND_CT; }
static bool has_drift(arima_trend_t t) { return t == ARIMA_TREND_T || t == ARIMA_TREND_CT; }

int arima_spec_check(const arima_spec_t *spec, char *errstr, size_t errstr_size) {
    if (spec->p < 0 || spec->p > ARIMA_MAX_P || spec->q < 0 || spec->q > ARIMA_MAX_Q) {
        snprintf(errstr, errstr_size, "p and q must be between 0 and %d", ARIMA_MAX_P);
        return -1;
    }
    if (spec->d < 0 || spec->d > ARIMA_MAX_D) {
        snprintf(errstr, errstr_size, "d must be between 0 and %d", ARIMA_MAX_D);
        return -1;
    }
    /* statsmodels: trend terms of lower order than d vanish under differencing. */
    if ((has_const(spec->trend) && spec->d > 0) || (has_drift(spec->trend) && spec->d > 1)) {
        snprintf(errstr, errstr_size, "trend terms of lower order than d are not allowed (d = %d: use trend 'n'%s)",
                 spec->d, spec->d == 1 ? " or 't' for a drift" : "");
        return -1;
    }
    return 0;
}

void arima_param_name(const arima_spec_t *spec, int i, char *buf, size_t size) {
    int kt = arima_k_trend(spec->trend);
    if (i < kt)
        snprintf(buf, size, "%s", has_const(spec->trend) && i == 0 ? "const" : "drift");
    else if (i < kt + spec->p)
        snprintf(buf, size, "ar.L%d", i - kt + 1);
    else if (i < kt + spec->p + spec->q)
        snprintf(buf, size, "ma.L%d", i - kt - spec->p + 1);
    else
        snprintf(buf, size, "sigma2");
}

/* ---- Monahan transform (statsmodels' constrain/unconstrain_stationary_univariate) ---- */

void arima_constrain_stationary(const double *u, int n, double *c) {
    double y[ARIMA_MAX_R][ARIMA_MAX_R];
    for (int k = 0; k < n; k++) {
        double r = u[k] / sqrt(1.0 + u[k] * u[k]);
        for (int i = 0; i < k; i++)
            y[k][i] = y[k - 1][i] + r * y[k - 1][k - i - 1];
        y[k][k] = r;
    }
    for (int i = 0; i < n; i++)
        c[i] = -y[n - 1][i];
}

int arima_unconstrain_stationary(const double *c, int n, double *u) {
    double y[ARIMA_MAX_R][ARIMA_MAX_R];
    if (n == 0)
        return 0;
    for (int i = 0; i < n; i++)
        y[n - 1][i] = -c[i];
    for (int k = n - 1; k > 0; k--) {
        double den = 1.0 - y[k][k] * y[k][k];
        if (!(den > 0))
            return -1;
        for (int i = 0; i < k; i++)
            y[k - 1][i] = (y[k][i] - y[k][k] * y[k][k - i - 1]) / den;
    }
    for (int k = 0; k < n; k++) {
        double r = y[k][k];
        if (!(fabs(r) < 1.0))
            return -1;
        u[k] = r / sqrt(1.0 - r * r);
    }
    return 0;
}

/* ---- helpers ---- */

/* Difference x (length n) d times in place; returns the new length n - d. */
static int difference(double *x, int n, int d) {
    for (int k = 0; k < d; k++) {
        for (int i = 0; i + 1 < n - k; i++)
            x[i] = x[i + 1] - x[i];
    }
    return n - d;
}

/* Regressor j (0 = const, 1 = drift) at 1-based time t. */
static double trend_value(arima_trend_t trend, int j, double t) {
    int col = has_const(trend) ? j : j + 1; /* 0 -> 1, 1 -> t */
    return col == 0 ? 1.0 : t;
}

static double trend_mean(const double *beta, arima_trend_t trend, double t) {
    double mu = 0;
    if (has_const(trend))
        mu += beta[0];
    if (has_drift(trend))
        mu += beta[has_const(trend) ? 1 : 0] * t;
    return mu;
}

/* ---- CSS ---- */

/* CSS on an already differenced series w (length nw) with differenced
 * regressor means mu (length nw, may be NULL). */
static double css_core(int p, int q, const double *phi, const double *theta, const double *w, const double *mu, int nw,
                       double *e) {
    double sse = 0;
    for (int t = 0; t < nw; t++) {
        if (t < p) {
            e[t] = 0;
            continue;
        }
        double v = w[t] - (mu ? mu[t] : 0);
        for (int i = 1; i <= p; i++)
            v -= phi[i - 1] * (w[t - i] - (mu ? mu[t - i] : 0));
        for (int j = 1; j <= q && j <= t; j++)
            v -= theta[j - 1] * e[t - j];
        e[t] = v;
        sse += v * v;
    }
    return sse;
}

/* Differenced regressor means for beta: Delta^d (beta'x_t), t = 1..n. */
static void diff_trend(const arima_spec_t *spec, const double *beta, int n, double *mu) {
    for (int i = 0; i < n; i++)
        mu[i] = trend_mean(beta, spec->trend, i + 1);
    difference(mu, n, spec->d);
}

double arima_css(const arima_spec_t *spec, const double *y, int n, const double *params, double *sigma2) {
    int kt = arima_k_trend(spec->trend);
    int nw = n - spec->d;
    if (nw <= spec->p)
        return NAN;
    double *w = malloc(sizeof(double) * 3 * (size_t)n);
    double *mu = w + n, *e = w + 2 * n;
    memcpy(w, y, sizeof(double) * (size_t)n);
    difference(w, n, spec->d);
    double beta[2] = {0, 0};
    for (int j = 0; j < kt; j++)
        beta[j] = params[j];
    diff_trend(spec, beta, n, mu);
    double sse = css_core(spec->p, spec->q, params + kt, params + kt + spec->p, w, kt ? mu : NULL, nw, e);
    if (sigma2)
        *sigma2 = sse / (nw - spec->p);
    free(w);
    return sse;
}

/* ---- state space ---- */

void arima_ssm_build(const arima_spec_t *spec, const double *params, arima_ssm_t *ssm) {
    int kt = arima_k_trend(spec->trend);
    int d = spec->d, p = spec->p, q = spec->q;
    int r = p > q + 1 ? p : q + 1;
    int m = d + r;
    memset(ssm, 0, sizeof(*ssm));
    ssm->m = m;
    ssm->d = d;
    ssm->r = r;
    double *T = ssm->T;
    /* differencing block: upper-triangular ones, plus the first ARMA state */
    for (int i = 0; i < d; i++) {
        for (int j = i; j < d; j++)
            T[i * m + j] = 1;
        T[i * m + d] = 1;
    }
    /* ARMA companion block */
    for (int i = 0; i < p; i++)
        T[(d + i) * m + d] = params[kt + i];
    for (int i = 0; i + 1 < r; i++)
        T[(d + i) * m + d + i + 1] = 1;
    ssm->R[d] = 1;
    for (int j = 0; j < q; j++)
        ssm->R[d + 1 + j] = params[kt + p + j];
    ssm->sigma2 = params[kt + p + q];
    /* the mean is beta[0] + beta[1] * t whatever the trend kind */
    if (has_const(spec->trend))
        ssm->beta[0] = params[0];
    if (has_drift(spec->trend))
        ssm->beta[1] = params[kt - 1];
}

/* Solve X_k = A X_k A' + C_k (r x r, row-major, C_k symmetric, the k-th at
 * offset k * stride) for nrhs right-hand sides by the Kronecker form on the
 * upper triangle, one LU factorisation for all. Returns -1 if singular (a
 * unit root). */
static int lyap_multi(int r, const double *A, int nrhs, const double *C, double *X, int stride) {
    enum { NU_MAX = ARIMA_MAX_R * (ARIMA_MAX_R + 1) / 2 };
    int nu = r * (r + 1) / 2;
    int idx[ARIMA_MAX_R][ARIMA_MAX_R], piv[NU_MAX];
    double M[NU_MAX * NU_MAX];
    int k = 0;
    for (int i = 0; i < r; i++)
        for (int j = i; j < r; j++)
            idx[i][j] = idx[j][i] = k++;
    memset(M, 0, sizeof(double) * (size_t)nu * (size_t)nu);
    for (int i = 0; i < r; i++)
        for (int j = i; j < r; j++) {
            double *Mr = M + idx[i][j] * nu;
            Mr[idx[i][j]] += 1.0;
            for (int a = 0; a < r; a++) {
                double aia = A[i * r + a];
                if (aia == 0)
                    continue;
                for (int b = 0; b < r; b++) {
                    double ajb = A[j * r + b];
                    if (ajb != 0)
                        Mr[idx[a][b]] -= aia * ajb;
                }
            }
        }
    for (int c = 0; c < nu; c++) {
        int pv = c;
        for (int i = c + 1; i < nu; i++)
            if (fabs(M[i * nu + c]) > fabs(M[pv * nu + c]))
                pv = i;
        if (fabs(M[pv * nu + c]) < 1e-13)
            return -1;
        piv[c] = pv;
        if (pv != c)
            for (int j = 0; j < nu; j++) {
                double t = M[c * nu + j];
                M[c * nu + j] = M[pv * nu + j];
                M[pv * nu + j] = t;
            }
        double inv = 1.0 / M[c * nu + c];
        for (int i = c + 1; i < nu; i++) {
            double f = M[i * nu + c] *= inv;
            if (f != 0)
                for (int j = c + 1; j < nu; j++)
                    M[i * nu + j] -= f * M[c * nu + j];
        }
    }
    for (int s = 0; s < nrhs; s++) {
        const double *Cs = C + (size_t)s * (size_t)stride;
        double b[NU_MAX];
        for (int i = 0; i < r; i++)
            for (int j = i; j < r; j++)
                b[idx[i][j]] = Cs[i * r + j];
        for (int c = 0; c < nu; c++)
            if (piv[c] != c) {
                double t = b[c];
                b[c] = b[piv[c]];
                b[piv[c]] = t;
            }
        for (int c = 0; c < nu; c++) {
            for (int i = c + 1; i < nu; i++)
                b[i] -= M[i * nu + c] * b[c];
        }
        for (int i = nu - 1; i >= 0; i--) {
            double v = b[i];
            for (int j = i + 1; j < nu; j++)
                v -= M[i * nu + j] * b[j];
            b[i] = v / M[i * nu + i];
        }
        double *Xs = X + (size_t)s * (size_t)stride;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++)
                Xs[i * r + j] = b[idx[i][j]];
    }
    return 0;
}

int arima_kstate_init(const arima_ssm_t *ssm, double diffuse, arima_kstate_t *ks) {
    int m = ssm->m, d = ssm->d, r = ssm->r;
    memset(ks, 0, sizeof(*ks));
    ks->m = m;
    ks->t = 1;
    for (int i = 0; i < d; i++)
        ks->P[i * m + i] = diffuse;
    double A[ARIMA_MAX_R * ARIMA_MAX_R] = {0}, Q[ARIMA_MAX_R * ARIMA_MAX_R] = {0}, P0[ARIMA_MAX_R * ARIMA_MAX_R];
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
            A[i * r + j] = ssm->T[(d + i) * m + d + j];
            Q[i * r + j] = ssm->R[d + i] * ssm->R[d + j];
        }
    if (lyap_multi(r, A, 1, Q, P0, 0))
        return -1;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            ks->P[(d + i) * m + d + j] = ssm->sigma2 * P0[i * r + j];
    return 0;
}

static inline double ssm_mean(const arima_ssm_t *ssm, double t) { return ssm->beta[0] + ssm->beta[1] * t; }

/* a <- T a (m x m dense, small) */
static inline void mat_vec(int m, const double *T, const double *a, double *out) {
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < m; j++)
            s += T[i * m + j] * a[j];
        out[i] = s;
    }
}

/* TP = T P (m x m, row-major): the first half of the prediction T P T'. */
static inline void mat_mat(int m, const double *T, const double *P, double *TP) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int k = 0; k < m; k++)
                s += T[i * m + k] * P[k * m + j];
            TP[i * m + j] = s;
        }
}

/* out = T x for the SARIMAX transition (d differencing states, then the ARMA
 * companion block). out may be x. */
static inline void t_vec(int d, int r, int p, const double *phi, const double *x, double *out) {
    double xd = x[d], s = xd;
    for (int i = d - 1; i >= 0; i--) {
        s += x[i];
        out[i] = s;
    }
    for (int i = 0; i < r; i++)
        out[d + i] = (i < p ? phi[i] * xd : 0.0) + (i + 1 < r ? x[d + i + 1] : 0.0);
}

/* One full Kalman update; returns the log-likelihood term (0 if !count) and
 * sets *steady when P stopped moving. */
static double kf_update(const arima_ssm_t *ssm, arima_kstate_t *ks, double y, double *yhat_out, double *F_out,
                        bool *bad) {
    int m = ssm->m, nz = ssm->d + 1;
    double *a = ks->a, *P = ks->P;
    double PZ[ARIMA_MAX_M] = {0};
    double za = 0;
    for (int i = 0; i < nz; i++)
        za += a[i];
    double F = steady_pz(P, m, nz, PZ);
    double yhat = za + ssm_mean(ssm, ks->t);
    if (yhat_out)
        *yhat_out = yhat;
    if (F_out)
        *F_out = F;
    ks->t += 1;
    if (isnan(y)) {
        /* missing: predict only */
        double ta[ARIMA_MAX_M], TP[ARIMA_MAX_M * ARIMA_MAX_M];
        mat_vec(m, ssm->T, a, ta);
        memcpy(a, ta, sizeof(double) * (size_t)m);
        mat_mat(m, ssm->T, P, TP);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                double s = 0;
                for (int k = 0; k < m; k++)
                    s += TP[i * m + k] * ssm->T[j * m + k];
                P[i * m + j] = s + ssm->sigma2 * ssm->R[i] * ssm->R[j];
            }
        ks->steady = false;
        return 0;
    }
    if (!(F > 0)) {
        *bad = true;
        return NAN;
    }
    double v = y - yhat;
    double finv = 1.0 / F;
    /* filtered */
    double af[ARIMA_MAX_M], Pf[ARIMA_MAX_M * ARIMA_MAX_M];
    for (int i = 0; i < m; i++)
        af[i] = a[i] + PZ[i] * v * finv;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            Pf[i * m + j] = P[i * m + j] - PZ[i] * PZ[j] * finv;
    /* predicted */
    mat_vec(m, ssm->T, af, a);
    double TP[ARIMA_MAX_M * ARIMA_MAX_M];
    mat_mat(m, ssm->T, Pf, TP);
    double maxdiff = 0, maxabs = 0;
    for (int i = 0; i < m; i++)
        for (int j = i; j < m; j++) {
            double s = 0;
            for (int k = 0; k < m; k++)
                s += TP[i * m + k] * ssm->T[j * m + k];
            s += ssm->sigma2 * ssm->R[i] * ssm->R[j];
            double diff = fabs(s - P[i * m + j]);
            if (diff > maxdiff)
                maxdiff = diff;
            if (fabs(s) > maxabs)
                maxabs = fabs(s);
            P[i * m + j] = P[j * m + i] = s;
        }
    ks->steady = maxdiff <= KF_STEADY_TOL * (maxabs > 1 ? maxabs : 1);
    return -0.5 * (LOG_2PI + log(F) + v * v * finv);
}

double arima_filter(const arima_ssm_t *ssm, arima_kstate_t *ks, const double *y, int n, int burn) {
    int m = ssm->m, nz = ssm->d + 1;
    double ll = 0;
    bool bad = false;
    int t = 0;
    for (; t < n && !ks->steady; t++) {
        if (isnan(y[t]))
            return NAN;
        double term = kf_update(ssm, ks, y[t], NULL, NULL, &bad);
        if (bad)
            return NAN;
        if (t >= burn)
            ll += term;
    }
    if (t >= n)
        return ll;
    /* steady state: F and the gain are fixed; only the mean moves */
    double PZ[ARIMA_MAX_M], K[ARIMA_MAX_M];
    double F = steady_pz(ks->P, m, nz, PZ);
    if (!(F > 0))
        return NAN;
    double finv = 1.0 / F;
    mat_vec(m, ssm->T, PZ, K);
    for (int i = 0; i < m; i++)
        K[i] *= finv;
    double *a = ks->a;
    double sumsq = 0;
    int cnt = 0;
    double tt = ks->t;
    double b0 = ssm->beta[0], b1 = ssm->beta[1];
    double na[ARIMA_MAX_M];
    /* T as arima_ssm_build makes it (differencing + companion): O(m) steps */
    int d = ssm->d, r = ssm->r;
    double phi[ARIMA_MAX_R];
    bool structured = d + r == m;
    for (int i = 0; i < r && structured; i++)
        phi[i] = ssm->T[(d + i) * m + d];
    for (int i = 0; i < m && structured; i++)
        for (int j = 0; j < m; j++) {
            double want = i < d ? (j >= i && j <= d) : j == d ? phi[i - d] : j == i + 1;
            if (ssm->T[i * m + j] != want)
                structured = false;
        }
    for (; t < n; t++) {
        double yt = y[t];
        if (isnan(yt))
            return NAN;
        double za = 0;
        for (int i = 0; i < nz; i++)
            za += a[i];
        double v = yt - za - b0 - b1 * tt;
        tt += 1;
        if (t >= burn) {
            sumsq += v * v;
            cnt++;
        }
        if (structured)
            t_vec(d, r, r, phi, a, na);
        else
            mat_vec(m, ssm->T, a, na);
        for (int i = 0; i < m; i++)
            a[i] = na[i] + K[i] * v;
    }
    ks->t = tt;
    ll += -0.5 * (cnt * (LOG_2PI + log(F)) + sumsq * finv);
    return ll;
}

void arima_kstate_step(const arima_ssm_t *ssm, arima_kstate_t *ks, double y, double *yhat, double *var) {
    bool bad = false;
    kf_update(ssm, ks, y, yhat, var, &bad);
}

void arima_forecast(const arima_ssm_t *ssm, const arima_kstate_t *ks0, int h, double *mean, double *se) {
    arima_kstate_t ks = *ks0;
    for (int i = 0; i < h; i++) {
        double yhat, var;
        kf_update(ssm, &ks, NAN, &yhat, &var, &(bool){false});
        mean[i] = yhat;
        se[i] = var > 0 ? sqrt(var) : 0;
    }
}

static int build_model(const arima_spec_t *spec, const double *params, double diffuse, arima_ssm_t *ssm,
                       arima_kstate_t *ks) {
    arima_ssm_build(spec, params, ssm);
    if (!(ssm->sigma2 > 0))
        return -1;
    return arima_kstate_init(ssm, diffuse, ks);
}

double arima_loglik(const arima_spec_t *spec, const double *y, int n, const double *params) {
    arima_ssm_t ssm;
    arima_kstate_t ks;
    if (build_model(spec, params, ARIMA_DIFFUSE_VARIANCE, &ssm, &ks))
        return NAN;
    return arima_filter(&ssm, &ks, y, n, spec->d);
}

void arima_psi_weights(const arima_spec_t *spec, const double *params, int nw, double *psi) {
    int kt = arima_k_trend(spec->trend);
    const double *phi = params + kt, *theta = params + kt + spec->p;
    /* phi*(B) = phi(B) (1 - B)^d as 1 - sum a_i B^i */
    double poly[ARIMA_MAX_P + ARIMA_MAX_D + 1] = {1};
    int deg = 0;
    for (int i = 1; i <= spec->p; i++)
        poly[i] = -phi[i - 1];
    deg = spec->p;
    for (int k = 0; k < spec->d; k++) {
        for (int i = deg + 1; i >= 1; i--)
            poly[i] -= poly[i - 1];
        deg++;
    }
    for (int j = 0; j < nw; j++) {
        double s = j == 0 ? 1.0 : j <= spec->q ? theta[j - 1] : 0.0;
        for (int i = 1; i <= deg && i <= j; i++)
            s -= poly[i] * psi[j - i];
        psi[j] = s;
    }
}

/* ---- quantiles ---- */

/* Inverse standard normal CDF (Acklam's rational approximation refined by
 * one Halley step with erfc: full double precision). */
static double norm_ppf(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                               1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static const double dd[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    double x;
    if (p <= 0)
        return -INFINITY;
    if (p >= 1)
        return INFINITY;
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1);
    } else if (p <= 1 - 0.02425) {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    } else {
        double q = sqrt(-2 * log(1 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((dd[0] * q + dd[1]) * q + dd[2]) * q + dd[3]) * q + 1);
    }
    double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
    double u = e * sqrt(2 * M_PI) * exp(x * x / 2);
    return x - u / (1 + x * u / 2);
}

double arima_z_quantile(double level) { return norm_ppf(0.5 + level / 2); }

/* ---- exact log-likelihood with its analytic score and Fisher information ----
 *
 * kf_score runs the same filter as arima_filter (statsmodels' state space,
 * approximate-diffuse start, first d terms burned) and, when asked, carries
 * alongside it the derivatives of the predicted state mean and covariance
 * with respect to every model parameter (the "score recursion": the filter
 * equations differentiated, Harvey 1989 section 3.4.6). The initial ARMA
 * covariance sigma2 * X, X = A X A' + R R', is differentiated through the
 * Lyapunov equation: dX = A dX A' + (dA X A' + A X dA' + dR R' + R dR'),
 * the same linear system with other right-hand sides.
 *
 * Once P (and every dP) has stopped moving the gain, F and their
 * derivatives are constant, and each remaining step costs O(m) per
 * direction: a_{t+1} = T a_t + K v_t, da = dT a + T da + dK v + K dv.
 *
 * Besides the gradient of the log-likelihood it accumulates the expected
 * (Fisher) information sum_t dv dv'/F + dF dF'/(2 F^2), which drives the
 * scoring iterations of the fit. */

/* Y = T X T' for a symmetric m x m X (row-major); W gets T X. */
static void t_sandwich(int d, int r, int p, const double *phi, const double *X, double *W, double *Y) {
    int m = d + r;
    /* W = T X: row combinations */
    for (int i = d - 1; i >= 0; i--)
        for (int j = 0; j < m; j++)
            W[i * m + j] = X[i * m + j] + (i + 1 < d ? W[(i + 1) * m + j] : X[d * m + j]);
    for (int i = 0; i < r; i++) {
        double f = i < p ? phi[i] : 0.0;
        const double *next = i + 1 < r ? X + (d + i + 1) * m : NULL;
        for (int j = 0; j < m; j++)
            W[(d + i) * m + j] = f * X[d * m + j] + (next ? next[j] : 0.0);
    }
    /* Y = W T': row i of Y is T applied to row i of W */
    for (int i = 0; i < m; i++)
        t_vec(d, r, p, phi, W + i * m, Y + i * m);
}

/* Relative tolerance under which dP counts as converged (only the gradient
 * depends on it; the likelihood's own switch is KF_STEADY_TOL on P). */
#define KF_DSTEADY_TOL 1e-11

enum {
    KF_M = ARIMA_MAX_M,
    KF_MM = ARIMA_MAX_M * ARIMA_MAX_M,
    KF_NP = ARIMA_MAX_PARAMS,
    KF_RR = ARIMA_MAX_R * ARIMA_MAX_R
};

/* The model at params, the filter's predicted state, and the derivatives of
 * that state along every parameter direction k (0 .. np-1, statsmodels order:
 * trend terms, AR, MA, sigma2). */
typedef struct kf_score {
    int kt, p, q, d, r, m, nz, burn, np;
    const double *phi, *theta;
    double s2, b0, b1;        /* sigma2, constant, drift */
    int drift_dir, const_dir; /* the direction of the drift / the constant, or -1 */
    double R[KF_M];           /* selection vector */
    double a[KF_M], P[KF_MM]; /* predicted state mean and covariance */
    double da[KF_NP][KF_M], dP[KF_NP][KF_MM];
    double ll, tt;       /* log-likelihood so far; trend time of the next observation */
    double *grad, *info; /* NULL when np == 0 */
} kf_score_t;

/* One observation's quantities that every direction's recursion reads. */
typedef struct kf_step {
    double PZ[KF_M], v, finv;
    double af[KF_M]; /* filtered state mean */
    double W[KF_MM]; /* T Pf, from the sandwich */
} kf_step_t;

/* The steady-state tail: gain, its derivatives, and the running sums. */
typedef struct kf_steady {
    double PZ[KF_M], K[KF_M], F, finv;
    double dK[KF_NP][KF_M], dF[KF_NP], sv[KF_NP], sdd[KF_NP * KF_NP];
    int aro[KF_NP]; /* AR index of each direction, or -1 */
    /* direction-major copies, so the inner loops vectorise over k */
    double D[KF_M][KF_NP], dKt[KF_M][KF_NP], E[KF_M][KF_NP], dmc[KF_NP], dmt[KF_NP];
    double sumsq;
    int cnt;
} kf_steady_t;

/* The model's dimensions, parameters and selection vector. false when sigma2 <= 0. */
static bool kf_model(kf_score_t *s, const arima_spec_t *spec, const double *params, double *grad, double *info) {
    const arima_trend_t trend = spec->trend;
    s->kt = arima_k_trend(trend), s->p = spec->p, s->q = spec->q, s->d = spec->d;
    s->r = s->p > s->q + 1 ? s->p : s->q + 1, s->m = s->d + s->r, s->nz = s->d + 1, s->burn = s->d;
    s->np = grad ? s->kt + s->p + s->q + 1 : 0;
    s->phi = params + s->kt, s->theta = params + s->kt + s->p;
    s->s2 = params[s->kt + s->p + s->q];
    s->grad = grad, s->info = info;
    if (!(s->s2 > 0))
        return false;
    s->b0 = has_const(trend) ? params[0] : 0.0, s->b1 = has_drift(trend) ? params[s->kt - 1] : 0.0;
    s->drift_dir = has_drift(trend) ? s->kt - 1 : -1, s->const_dir = has_const(trend) ? 0 : -1;
    memset(s->R, 0, sizeof(s->R));
    s->R[s->d] = 1;
    for (int j = 0; j < s->q; j++)
        s->R[s->d + 1 + j] = s->theta[j];
    return true;
}

/* The ARMA part's initial covariance X (X = A X A' + R R', sigma2 left out)
 * and, with derivatives, dX for each AR and MA direction at X + (1 + j) RR. */
static int kf_initial_cov(const kf_score_t *s, double *X) {
    const int r = s->r, p = s->p, q = s->q;
    const double *phi = s->phi;
    double A[KF_RR] = {0}, C[(KF_NP + 1) * KF_RR];
    int nrhs = 1;
    for (int i = 0; i < p; i++)
        A[i * r] = phi[i];
    for (int i = 0; i + 1 < r; i++)
        A[i * r + i + 1] = 1;
    const double *Ra = s->R + s->d;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            C[i * r + j] = Ra[i] * Ra[j];
    if (!s->np)
        return lyap_multi(r, A, nrhs, C, X, KF_RR);
    /* right-hand sides need X itself for the AR directions: solve first */
    if (lyap_multi(r, A, 1, C, X, KF_RR))
        return -1;
    double Wx[KF_RR]; /* A X */
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            Wx[i * r + j] = (i < p ? phi[i] * X[j] : 0.0) + (i + 1 < r ? X[(i + 1) * r + j] : 0.0);
    for (int k = 0; k < p + q; k++) {
        double *Ck = C + (size_t)(1 + k) * KF_RR;
        memset(Ck, 0, sizeof(double) * (size_t)(r * r));
        if (k < p) { /* dA = e_k e_0': S = e_k (A X)[:,0]', C = S + S' */
            for (int l = 0; l < r; l++) {
                Ck[k * r + l] += Wx[l * r];
                Ck[l * r + k] += Wx[l * r];
            }
        } else { /* dR = e_{j+1} */
            int e = k - p + 1;
            for (int l = 0; l < r; l++) {
                Ck[e * r + l] += Ra[l];
                Ck[l * r + e] += Ra[l];
            }
        }
    }
    if (p + q > 0 && lyap_multi(r, A, p + q, C + KF_RR, X + KF_RR, KF_RR))
        return -1;
    return 0;
}

/* The first prediction: a = 0, P = diffuse on the d integrated states and
 * sigma2 X on the ARMA part; dP from dX (AR, MA) and X (sigma2). */
static void kf_initial_state(kf_score_t *s, const double *X, double diffuse) {
    const int d = s->d, r = s->r, m = s->m, kt = s->kt, np = s->np;
    memset(s->a, 0, sizeof(s->a));
    memset(s->P, 0, sizeof(s->P));
    for (int i = 0; i < d; i++)
        s->P[i * m + i] = diffuse;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++)
            s->P[(d + i) * m + d + j] = s->s2 * X[i * r + j];
    for (int k = 0; k < np; k++) {
        memset(s->da[k], 0, sizeof(double) * (size_t)m);
        memset(s->dP[k], 0, sizeof(double) * (size_t)(m * m));
        const double *Xk = NULL;
        double f = 1.0;
        if (k >= kt && k < kt + s->p + s->q)
            Xk = X + (size_t)(1 + k - kt) * KF_RR, f = s->s2;
        else if (k == np - 1)
            Xk = X;
        if (Xk)
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++)
                    s->dP[k][(d + i) * m + d + j] = f * Xk[i * r + j];
    }
    if (np) {
        memset(s->grad, 0, sizeof(double) * (size_t)np);
        memset(s->info, 0, sizeof(double) * (size_t)(np * np));
    }
    s->ll = 0, s->tt = 1;
}

/* Pn = T Pf T' + sigma2 R R'. @returns whether P has stopped moving. */
static bool kf_cov_predict(const kf_score_t *s, const double *Pf, double *W, double *Pn) {
    const int m = s->m;
    t_sandwich(s->d, s->r, s->p, s->phi, Pf, W, Pn);
    double maxdiff = 0, maxabs = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double x = Pn[i * m + j] + s->s2 * s->R[i] * s->R[j];
            if (j >= i) {
                maxdiff = fmax(maxdiff, fabs(x - s->P[i * m + j]));
                maxabs = fmax(maxabs, fabs(x));
            }
            Pn[i * m + j] = x;
        }
    return maxdiff <= KF_STEADY_TOL * (maxabs > 1 ? maxabs : 1);
}

/* Direction k through one step: dv, dF, and the next da, dP (the filter
 * equations differentiated). Clears *steady while dP still moves. */
static void kf_direction_step(kf_score_t *s, int k, const kf_step_t *st, double *dv, double *dF, bool *steady) {
    const int d = s->d, m = s->m, kt = s->kt, p = s->p, q = s->q;
    const double *PZ = st->PZ, v = st->v, finv = st->finv;
    double *dak = s->da[k], *dPk = s->dP[k];
    double dPZ[KF_M], dza = 0;
    const double dFk = steady_pz(dPk, m, s->nz, dPZ);
    for (int i = 0; i < s->nz; i++)
        dza += dak[i];
    double dvk = -dza - (k == s->const_dir ? 1.0 : k == s->drift_dir ? s->tt : 0.0);
    *dv = dvk, *dF = dFk;
    double daf[KF_M], dPf[KF_MM], dW[KF_MM], dPn[KF_MM];
    const double c1 = v * finv, c2 = dvk * finv, c3 = v * dFk * finv * finv, c4 = dFk * finv * finv;
    for (int i = 0; i < m; i++)
        daf[i] = dak[i] + dPZ[i] * c1 + PZ[i] * (c2 - c3);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            dPf[i * m + j] = dPk[i * m + j] - (dPZ[i] * PZ[j] + PZ[i] * dPZ[j]) * finv + PZ[i] * PZ[j] * c4;
    t_sandwich(d, s->r, p, s->phi, dPf, dW, dPn);
    t_vec(d, s->r, p, s->phi, daf, dak);
    if (k >= kt && k < kt + p) { /* dT = e_{d+j} e_d' */
        int j = k - kt;
        for (int l = 0; l < m; l++) {
            dPn[(d + j) * m + l] += st->W[l * m + d];
            dPn[l * m + d + j] += st->W[l * m + d];
        }
        dak[d + j] += st->af[d];
    } else if (k >= kt + p && k < kt + p + q) { /* dR = e_{d+1+j} */
        int e = d + 1 + (k - kt - p);
        for (int l = 0; l < m; l++) {
            dPn[e * m + l] += s->s2 * s->R[l];
            dPn[l * m + e] += s->s2 * s->R[l];
        }
    } else if (k == s->np - 1) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
                dPn[i * m + j] += s->R[i] * s->R[j];
    }
    if (*steady) {
        double dd = 0, dm = 0;
        for (int i = 0; i < m * m; i++) {
            dd = fmax(dd, fabs(dPn[i] - dPk[i]));
            dm = fmax(dm, fabs(dPn[i]));
        }
        if (dd > KF_DSTEADY_TOL * (dm > 1 ? dm : 1))
            *steady = false;
    }
    memcpy(dPk, dPn, sizeof(double) * (size_t)(m * m));
}

/* One observation before steady state. @returns -1 (F <= 0 or a NaN value),
 * else 1 when P and every dP have stopped moving, 0 otherwise. */
static int kf_transient_step(kf_score_t *s, int t, double yt) {
    const int m = s->m, np = s->np;
    kf_step_t st;
    double za = 0;
    const double F = steady_pz(s->P, m, s->nz, st.PZ);
    for (int i = 0; i < s->nz; i++)
        za += s->a[i];
    if (!(F > 0) || isnan(yt))
        return -1;
    const double finv = 1.0 / F, v = yt - za - s->b0 - s->b1 * s->tt;
    st.finv = finv, st.v = v;
    const bool use = t >= s->burn;
    if (use)
        s->ll += -0.5 * (LOG_2PI + log(F) + v * v * finv);
    double Pf[KF_MM], Pn[KF_MM];
    for (int i = 0; i < m; i++)
        st.af[i] = s->a[i] + st.PZ[i] * v * finv;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            Pf[i * m + j] = s->P[i * m + j] - st.PZ[i] * st.PZ[j] * finv;
    bool steady = kf_cov_predict(s, Pf, st.W, Pn);
    double dv[KF_NP], dF[KF_NP];
    for (int k = 0; k < np; k++)
        kf_direction_step(s, k, &st, &dv[k], &dF[k], &steady);
    if (use)
        for (int k = 0; k < np; k++) {
            s->grad[k] += -0.5 * (dF[k] * finv + 2 * v * dv[k] * finv - v * v * dF[k] * finv * finv);
            for (int l = k; l < np; l++)
                s->info[k * np + l] += dv[k] * dv[l] * finv + 0.5 * dF[k] * dF[l] * finv * finv;
        }
    memcpy(s->P, Pn, sizeof(double) * (size_t)(m * m));
    t_vec(s->d, s->r, s->p, s->phi, st.af, s->a);
    s->tt += 1;
    return steady;
}

/* Steady state: F, the gain K and their derivatives are fixed from here on.
 * false when F <= 0. */
static bool kf_steady_gain(const kf_score_t *s, kf_steady_t *ss) {
    const int d = s->d, m = s->m, kt = s->kt, p = s->p, np = s->np;
    ss->F = steady_pz(s->P, m, s->nz, ss->PZ);
    if (!(ss->F > 0))
        return false;
    const double finv = ss->finv = 1.0 / ss->F;
    t_vec(d, s->r, p, s->phi, ss->PZ, ss->K);
    for (int i = 0; i < m; i++)
        ss->K[i] *= finv;
    memset(ss->sv, 0, sizeof(ss->sv));
    for (int k = 0; k < np; k++) {
        double dPZ[KF_M];
        ss->dF[k] = steady_pz(s->dP[k], m, s->nz, dPZ);
        ss->aro[k] = k >= kt && k < kt + p ? k - kt : -1;
        t_vec(d, s->r, p, s->phi, dPZ, ss->dK[k]);
        if (ss->aro[k] >= 0)
            ss->dK[k][d + ss->aro[k]] += ss->PZ[d];
        for (int i = 0; i < m; i++)
            ss->dK[k][i] = ss->dK[k][i] * finv - ss->K[i] * ss->dF[k] * finv;
    }
    memset(ss->sdd, 0, sizeof(ss->sdd));
    for (int k = 0; k < np; k++) {
        for (int i = 0; i < m; i++)
            ss->D[i][k] = s->da[k][i], ss->dKt[i][k] = ss->dK[k][i], ss->E[i][k] = 0;
        if (ss->aro[k] >= 0)
            ss->E[d + ss->aro[k]][k] = 1;
        ss->dmc[k] = k == s->const_dir ? 1.0 : 0.0;
        ss->dmt[k] = k == s->drift_dir ? 1.0 : 0.0;
    }
    ss->sumsq = 0;
    ss->cnt = 0;
    return true;
}

/* Every direction through one steady step, O(m) each:
 * da = dT a + T da + dK v + K dv (D holds da, direction-major). */
static void kf_steady_directions(const kf_score_t *s, kf_steady_t *ss, double v, double ad, bool use) {
    static const double zero[KF_NP] = {0};
    const int d = s->d, r = s->r, p = s->p, np = s->np;
    double dv[KF_NP], Dd[KF_NP];
    for (int k = 0; k < np; k++)
        dv[k] = -ss->dmc[k] - ss->dmt[k] * s->tt, Dd[k] = ss->D[d][k];
    for (int i = 0; i < s->nz; i++)
        for (int k = 0; k < np; k++)
            dv[k] -= ss->D[i][k];
    for (int k = 0; k < np; k++) {
        double sacc = Dd[k];
        for (int i = d - 1; i >= 0; i--) {
            sacc += ss->D[i][k];
            ss->D[i][k] = sacc;
        }
    }
    for (int i = 0; i < r; i++) {
        double f = i < p ? s->phi[i] : 0.0;
        double *Di = ss->D[d + i];
        const double *Dn = i + 1 < r ? ss->D[d + i + 1] : zero;
        for (int k = 0; k < np; k++)
            Di[k] = f * Dd[k] + Dn[k];
    }
    for (int i = 0; i < s->m; i++) {
        const double Ki = ss->K[i];
        for (int k = 0; k < np; k++)
            ss->D[i][k] += ss->dKt[i][k] * v + Ki * dv[k] + ss->E[i][k] * ad;
    }
    if (use) {
        for (int k = 0; k < np; k++)
            ss->sv[k] += v * dv[k];
        for (int k = 0; k < np; k++) {
            const double dvk = dv[k];
            for (int l = 0; l < np; l++)
                ss->sdd[k * KF_NP + l] += dvk * dv[l];
        }
    }
}

/* The observations t .. n-1 in steady state. false on a NaN value. */
static bool kf_steady_run(kf_score_t *s, kf_steady_t *ss, const double *y, int t, int n) {
    const int d = s->d, m = s->m;
    for (; t < n; t++) {
        const double yt = y[t];
        if (isnan(yt))
            return false;
        double za = 0;
        for (int i = 0; i < s->nz; i++)
            za += s->a[i];
        const double v = yt - za - s->b0 - s->b1 * s->tt;
        const double ad = s->a[d];
        const bool use = t >= s->burn;
        if (use)
            ss->sumsq += v * v, ss->cnt++;
        t_vec(d, s->r, s->p, s->phi, s->a, s->a);
        for (int i = 0; i < m; i++)
            s->a[i] += ss->K[i] * v;
        if (s->np)
            kf_steady_directions(s, ss, v, ad, use);
        s->tt += 1;
    }
    return true;
}

/* The steady tail's sums into the log-likelihood, gradient and information. */
static void kf_steady_finish(kf_score_t *s, const kf_steady_t *ss) {
    const int np = s->np, cnt = ss->cnt;
    const double finv = ss->finv, sumsq = ss->sumsq;
    const double *dF = ss->dF;
    s->ll += -0.5 * (cnt * (LOG_2PI + log(ss->F)) + sumsq * finv);
    for (int k = 0; k < np; k++) {
        s->grad[k] += -0.5 * (cnt * dF[k] * finv + 2 * ss->sv[k] * finv - sumsq * dF[k] * finv * finv);
        for (int l = k; l < np; l++)
            s->info[k * np + l] += ss->sdd[k * KF_NP + l] * finv + 0.5 * cnt * dF[k] * dF[l] * finv * finv;
    }
}

/**
 * Log-likelihood of y at params (statsmodels order, with sigma2) with the
 * approximate-diffuse variance `diffuse`; when grad is not NULL, also its
 * gradient grad[np] and the Fisher information info[np * np] (full,
 * symmetric) with respect to params. Returns NAN where it cannot be
 * evaluated (sigma2 <= 0, unit root, non-positive F).
 */
static double kf_score(const arima_spec_t *spec, const double *params, const double *y, int n, double diffuse,
                       double *grad, double *info) {
    kf_score_t s;
    double X[(KF_NP + 1) * KF_RR];
    if (!kf_model(&s, spec, params, grad, info) || kf_initial_cov(&s, X))
        return NAN;
    kf_initial_state(&s, X, diffuse);
    int t = 0, steady = 0;
    for (; t < n && !steady; t++)
        if ((steady = kf_transient_step(&s, t, y[t])) < 0)
            return NAN;
    if (t < n) {
        kf_steady_t ss;
        if (!kf_steady_gain(&s, &ss) || !kf_steady_run(&s, &ss, y, t, n))
            return NAN;
        kf_steady_finish(&s, &ss);
    }
    for (int k = 0; k < s.np; k++)
        for (int l = 0; l < k; l++)
            info[k * s.np + l] = info[l * s.np + k];
    return s.ll;
}

/* ---- fitting ---- */

typedef struct fit_problem {
    const arima_spec_t *spec;
    const double *y; /* scaled series */
    int n, ne;       /* ne = n - d likelihood terms */
    double diffuse;  /* scaled diffuse variance */
    int kt, k;       /* trend terms, coordinates (all parameters, sigma2 as log) */
    int nevals, ngrads;
} fit_problem_t;

/* arima_constrain_stationary with its Jacobian J[i * n + j] = dc_i / du_j. */
static void constrain_jac(const double *u, int n, double *c, double *J) {
    double y[ARIMA_MAX_R][ARIMA_MAX_R], dy[ARIMA_MAX_R][ARIMA_MAX_R][ARIMA_MAX_R];
    for (int k = 0; k < n; k++) {
        double s = 1.0 + u[k] * u[k];
        double r = u[k] / sqrt(s), dr = 1.0 / (s * sqrt(s));
        for (int i = 0; i < k; i++) {
            y[k][i] = y[k - 1][i] + r * y[k - 1][k - i - 1];
            for (int j = 0; j < k; j++)
                dy[k][i][j] = dy[k - 1][i][j] + r * dy[k - 1][k - i - 1][j];
            dy[k][i][k] = dr * y[k - 1][k - i - 1];
        }
        y[k][k] = r;
        for (int j = 0; j < k; j++)
            dy[k][k][j] = 0;
        dy[k][k][k] = dr;
    }
    for (int i = 0; i < n; i++) {
        c[i] = -y[n - 1][i];
        for (int j = 0; j < n; j++)
            J[i * n + j] = -dy[n - 1][i][j];
    }
}

/* x (unconstrained) -> params (statsmodels order, scaled units); J (k x k,
 * J[i * k + j] = dparams_i / dx_j) if not NULL. */
static void x_to_params(const fit_problem_t *fp, const double *x, double *params, double *J) {
    const arima_spec_t *s = fp->spec;
    int kt = fp->kt, p = s->p, q = s->q, k = fp->k;
    double u[ARIMA_MAX_R], Jb[ARIMA_MAX_R * ARIMA_MAX_R];
    if (J)
        memset(J, 0, sizeof(double) * (size_t)(k * k));
    for (int j = 0; j < kt; j++) {
        params[j] = x[j];
        if (J)
            J[j * k + j] = 1;
    }
    for (int blk = 0; blk < 2; blk++) {
        int nb = blk ? q : p, off = blk ? kt + p : kt;
        double sign = blk ? -1.0 : 1.0;
        for (int i = 0; i < nb; i++)
            u[i] = fmax(-U_MAX, fmin(U_MAX, x[off + i]));
        constrain_jac(u, nb, params + off, Jb);
        for (int i = 0; i < nb; i++) {
            params[off + i] *= sign;
            if (J)
                for (int j = 0; j < nb; j++)
                    J[(off + i) * k + off + j] = fabs(x[off + j]) < U_MAX ? sign * Jb[i * nb + j] : 0.0;
        }
    }
    params[k - 1] = exp(x[k - 1]);
    if (J)
        J[(k - 1) * k + k - 1] = params[k - 1];
}

/* params -> x; -1 if AR not stationary, MA not invertible or sigma2 <= 0. */
static int params_to_x(const fit_problem_t *fp, const double *params, double *x) {
    const arima_spec_t *s = fp->spec;
    int kt = fp->kt;
    for (int j = 0; j < kt; j++)
        x[j] = params[j];
    if (arima_unconstrain_stationary(params + kt, s->p, x + kt))
        return -1;
    double negma[ARIMA_MAX_Q];
    for (int i = 0; i < s->q; i++)
        negma[i] = -params[kt + s->p + i];
    if (arima_unconstrain_stationary(negma, s->q, x + kt + s->p))
        return -1;
    for (int i = kt; i < kt + s->p + s->q; i++)
        if (!isfinite(x[i]) || fabs(x[i]) > U_MAX)
            return -1;
    double s2 = params[kt + s->p + s->q];
    if (!(s2 > 0) || !isfinite(s2))
        return -1;
    x[fp->k - 1] = log(s2);
    return 0;
}

/* Least squares by the normal equations (ncol <= ARIMA_MAX_PARAMS); X is
 * column-major with stride nrow. Returns -1 if singular. */
static int ols(const double *X, int nrow, int ncol, const double *Y, double *beta) {
    double A[ARIMA_MAX_PARAMS][ARIMA_MAX_PARAMS + 1];
    for (int i = 0; i < ncol; i++) {
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int t = 0; t < nrow; t++)
                s += X[i * nrow + t] * X[j * nrow + t];
            A[i][j] = A[j][i] = s;
        }
        double s = 0;
        for (int t = 0; t < nrow; t++)
            s += X[i * nrow + t] * Y[t];
        A[i][ncol] = s;
    }
    for (int c = 0; c < ncol; c++) {
        int piv = c;
        for (int i = c + 1; i < ncol; i++)
            if (fabs(A[i][c]) > fabs(A[piv][c]))
                piv = i;
        if (!(fabs(A[piv][c]) > 1e-12 * (fabs(A[c][c]) + 1e-300)))
            return -1;
        for (int j = 0; j <= ncol; j++) {
            double t = A[c][j];
            A[c][j] = A[piv][j];
            A[piv][j] = t;
        }
        for (int i = c + 1; i < ncol; i++) {
            double f = A[i][c] / A[c][c];
            for (int j = c; j <= ncol; j++)
                A[i][j] -= f * A[c][j];
        }
    }
    for (int i = ncol - 1; i >= 0; i--) {
        double s = A[i][ncol];
        for (int j = i + 1; j < ncol; j++)
            s -= A[i][j] * beta[j];
        beta[i] = s / A[i][i];
    }
    for (int i = 0; i < ncol; i++)
        if (!isfinite(beta[i]))
            return -1;
    return 0;
}

/* Hannan-Rissanen start values as statsmodels' SARIMAX.start_params computes
 * them (its `_conditional_sum_squares`): a long AR(max(2q, p + 1)) for residuals, then
 * OLS of z_t on its p lags and q lagged residuals. z is the de-trended,
 * differenced series. ar/ma are left zero where the estimate is not
 * stationary / invertible or there are too few points. */
static void hr_start(int p, int q, const double *z, int nw, double *ar, double *ma) {
    memset(ar, 0, sizeof(double) * (size_t)p);
    memset(ma, 0, sizeof(double) * (size_t)q);
    /* the long AR must be longer than p, or its lagged residuals are exact
     * combinations of the p lags of z (singular regression for p > 2q) */
    int k = q == 0 ? 0 : 2 * q > p + 1 ? 2 * q : p + 1, r = k + q > p ? k + q : p;
    int ny = nw - r;
    if (p + q == 0 || ny < 2 * (p + q) + 2 || nw - k < 2 * k + 2)
        return;
    double *X = calloc((size_t)nw * (size_t)(k + p + q + 2), sizeof(double));
    double *resid = X + (size_t)nw * (size_t)(k > p + q ? k : p + q);
    double beta[ARIMA_MAX_PARAMS];
    if (q > 0) {
        int nl = nw - k;
        double phil[ARIMA_MAX_PARAMS];
        if (k > ARIMA_MAX_PARAMS)
            goto out;
        for (int j = 0; j < k; j++)
            for (int t = k; t < nw; t++)
                X[j * nl + (t - k)] = z[t - 1 - j];
        if (ols(X, nl, k, z + k, phil))
            goto out;
        for (int t = k; t < nw; t++) {
            double v = z[t];
            for (int j = 0; j < k; j++)
                v -= phil[j] * z[t - 1 - j];
            resid[t - k] = v;
        }
    }
    for (int i = 0; i < p; i++)
        for (int t = r; t < nw; t++)
            X[i * ny + (t - r)] = z[t - 1 - i];
    for (int j = 0; j < q; j++)
        for (int t = r; t < nw; t++)
            X[(p + j) * ny + (t - r)] = resid[t - 1 - j - k];
    if (ols(X, ny, p + q, z + r, beta))
        goto out;
    double u[ARIMA_MAX_R], neg[ARIMA_MAX_Q];
    if (arima_unconstrain_stationary(beta, p, u) == 0)
        memcpy(ar, beta, sizeof(double) * (size_t)p);
    for (int j = 0; j < q; j++)
        neg[j] = -beta[p + j];
    if (arima_unconstrain_stationary(neg, q, u) == 0)
        memcpy(ma, beta + p, sizeof(double) * (size_t)q);
out:
    free(X);
}

/* f(x) = -loglik / ne at the transformed coordinates x; with g, also its
 * gradient; with H, also the Fisher information in x (J' I J / ne). */
static double mle_eval(fit_problem_t *fp, const double *x, double *g, double *H) {
    enum { NP = ARIMA_MAX_PARAMS };
    double params[NP], J[NP * NP], gp[NP], Ip[NP * NP];
    int k = fp->k;
    fp->nevals++;
    x_to_params(fp, x, params, g ? J : NULL);
    double ll = kf_score(fp->spec, params, fp->y, fp->n, fp->diffuse, g ? gp : NULL, g ? Ip : NULL);
    if (!isfinite(ll))
        return BAD_OBJECTIVE;
    if (g) {
        double sc = 1.0 / fp->ne;
        fp->ngrads++;
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int i = 0; i < k; i++)
                s += J[i * k + j] * gp[i];
            g[j] = -s * sc;
        }
        if (H) {
            double IJ[NP * NP];
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) {
                    double s = 0;
                    for (int l = 0; l < k; l++)
                        s += Ip[i * k + l] * J[l * k + j];
                    IJ[i * k + j] = s;
                }
            for (int a = 0; a < k; a++)
                for (int b = a; b < k; b++) {
                    double s = 0;
                    for (int i = 0; i < k; i++)
                        s += J[i * k + a] * IJ[i * k + b];
                    H[a * k + b] = H[b * k + a] = s * sc;
                }
        }
    }
    return -ll / fp->ne;
}

/* Solve A x = b for a symmetric positive definite k x k A (Cholesky).
 * Returns -1 if A is not numerically positive definite. */
static int chol_solve(int k, const double *A, const double *b, double *x) {
    double L[ARIMA_MAX_PARAMS * ARIMA_MAX_PARAMS];
    for (int j = 0; j < k; j++) {
        double s = A[j * k + j];
        for (int l = 0; l < j; l++)
            s -= L[j * k + l] * L[j * k + l];
        if (!(s > 1e-300))
            return -1;
        double ljj = sqrt(s);
        L[j * k + j] = ljj;
        for (int i = j + 1; i < k; i++) {
            double t = A[i * k + j];
            for (int l = 0; l < j; l++)
                t -= L[i * k + l] * L[j * k + l];
            L[i * k + j] = t / ljj;
        }
    }
    for (int i = 0; i < k; i++) {
        double s = b[i];
        for (int l = 0; l < i; l++)
            s -= L[i * k + l] * x[l];
        x[i] = s / L[i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) {
        double s = x[i];
        for (int l = i + 1; l < k; l++)
            s -= L[l * k + i] * x[l];
        x[i] = s / L[i * k + i];
    }
    for (int i = 0; i < k; i++)
        if (!isfinite(x[i]))
            return -1;
    return 0;
}

/* Largest move of one coordinate per scoring step. */
#define STEP_MAX 2.0

/* Quasi-Newton minimisation of f from x (updated in place): the Hessian
 * model is the Fisher information at the current point (scoring:
 * Gauss-Newton for the Gaussian likelihood) corrected by one BFGS update
 * with the last step and the exact gradients, which damps scoring's
 * oscillation where the information differs from the Hessian (small n,
 * nearly cancelling roots).
 * A backtracking line search keeps every step a decrease; when it fails
 * the model restarts from the information at the current point. Stops when
 * the predicted gain g' H^-1 g / 2 falls under ftol * max(1, |f|).
 * Returns 1 converged, 0 not converged (x is the best point), -1 when the
 * likelihood cannot be evaluated at the start. */
static int scoring(fit_problem_t *fp, double *x, int maxit, double ftol, double *fout) {
    enum { NP = ARIMA_MAX_PARAMS };
    int k = fp->k;
    double g[NP], H[NP * NP];
    double f = mle_eval(fp, x, g, H);
    bool fresh = true; /* H is the information at x */
    *fout = f;
    if (!(f < BAD_OBJECTIVE))
        return -1;
    for (int it = 0; it < maxit; it++) {
        double A[NP * NP], delta[NP], hmax = 0, mu = 0;
        for (int i = 0; i < k; i++)
            hmax = fmax(hmax, H[i * k + i]);
        int bad = -1;
        for (int tries = 0; tries < 10 && bad; tries++) {
            memcpy(A, H, sizeof(double) * (size_t)(k * k));
            for (int i = 0; i < k; i++)
                A[i * k + i] += mu * H[i * k + i] + 1e-12 * hmax + 1e-200;
            bad = chol_solve(k, A, g, delta);
            mu = mu > 0 ? mu * 100 : 1e-8;
        }
        if (bad)
            return 0;
        double dec = 0, mx = 0;
        for (int i = 0; i < k; i++) {
            delta[i] = -delta[i];
            dec -= g[i] * delta[i];
            mx = fmax(mx, fabs(delta[i]));
        }
        if (!(dec >= 0))
            return 0;
        if (0.5 * dec <= ftol * fmax(1.0, fabs(f)))
            return 1;
        double step = mx > STEP_MAX ? STEP_MAX / mx : 1.0;
        bool accepted = false;
        for (int ls = 0; ls < 40 && !accepted; ls++) {
            double xt[NP], gt[NP], Ht[NP * NP];
            for (int i = 0; i < k; i++)
                xt[i] = x[i] + step * delta[i];
            double ft = mle_eval(fp, xt, gt, Ht);
            if (ft < BAD_OBJECTIVE && ft <= f - 1e-4 * step * dec) {
                /* BFGS update of H with s = xt - x, yv = gt - g */
                double sv[NP], yv[NP], Hs[NP], sHs = 0, ys = 0;
                for (int i = 0; i < k; i++)
                    sv[i] = xt[i] - x[i], yv[i] = gt[i] - g[i];
                for (int i = 0; i < k; i++) {
                    double t = 0;
                    for (int j = 0; j < k; j++)
                        t += H[i * k + j] * sv[j];
                    Hs[i] = t;
                    sHs += sv[i] * t;
                    ys += yv[i] * sv[i];
                }
                memcpy(H, Ht, sizeof(double) * (size_t)(k * k));
                sHs = 0;
                for (int i = 0; i < k; i++) {
                    double t = 0;
                    for (int j = 0; j < k; j++)
                        t += H[i * k + j] * sv[j];
                    Hs[i] = t;
                    sHs += sv[i] * t;
                }
                if (ys > 1e-14 * sHs && sHs > 0)
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++)
                            H[i * k + j] += yv[i] * yv[j] / ys - Hs[i] * Hs[j] / sHs;
                memcpy(x, xt, sizeof(double) * (size_t)k);
                memcpy(g, gt, sizeof(double) * (size_t)k);
                f = ft;
                accepted = true;
                fresh = false;
            } else {
                step *= ft < BAD_OBJECTIVE ? 0.5 : 0.1;
            }
        }
        *fout = f;
        if (!accepted) {
            if (!fresh) { /* restart the model from the information here */
                f = mle_eval(fp, x, g, H);
                fresh = true;
                continue;
            }
            /* no decrease along a descent direction: roundoff level */
            return 0.5 * dec <= 1e3 * ftol * fmax(1.0, fabs(f)) ? 1 : 0;
        }
    }
    return 0;
}

static double nlopt_objective(unsigned k, const double *x, double *grad, void *data) {
    (void)k;
    return mle_eval(data, x, grad, NULL);
}

/* L-BFGS with the analytic gradient from x (in place): the fallback when
 * scoring does not converge. Returns the NLopt result code. */
static nlopt_result minimise(fit_problem_t *fp, double *x, double ftol, int maxeval, double *fmin) {
    nlopt_opt opt = nlopt_create(NLOPT_LD_LBFGS, (unsigned)fp->k);
    if (!opt)
        return NLOPT_OUT_OF_MEMORY;
    nlopt_set_min_objective(opt, nlopt_objective, fp);
    nlopt_set_ftol_rel(opt, ftol);
    nlopt_set_xtol_rel(opt, 1e-10);
    nlopt_set_maxeval(opt, maxeval);
    nlopt_set_vector_storage(opt, 10);
    *fmin = HUGE_VAL;
    nlopt_result res = nlopt_optimize(opt, x, fmin);
    nlopt_destroy(opt);
    return res;
}

static void fill_criteria(const arima_spec_t *spec, int n, arima_fit_t *out) {
    int k = arima_nparams(spec);
    double ne = n - spec->d;
    out->aic = -2 * out->loglik + 2 * k;
    out->aicc = ne - k - 1 > 0 ? out->aic + 2.0 * k * (k + 1) / (ne - k - 1) : NAN;
    out->bic = -2 * out->loglik + k * log(ne);
}

int arima_fit(const arima_spec_t *spec, const double *y, int n, const arima_fit_t *warm, const arima_opts_t *opts,
              arima_fit_t *out, arima_kstate_t *ks) {
    arima_opts_t o = opts ? *opts : (arima_opts_t){0};
    if (o.maxeval <= 0)
        o.maxeval = 2000;
    if (!(o.ftol_rel > 0))
        o.ftol_rel = 1e-11;
    memset(out, 0, sizeof(*out));
    out->nparams = arima_nparams(spec);
    out->nobs = n;
    out->loglik = out->aic = out->aicc = out->bic = NAN;
    for (int i = 0; i < out->nparams; i++)
        out->params[i] = NAN;
    if (arima_spec_check(spec, out->error, sizeof(out->error)))
        return -1;
    int kt = arima_k_trend(spec->trend), k = out->nparams;
    int nw = n - spec->d;
    if (nw < k + 2) {
        snprintf(out->error, sizeof(out->error), "too few points: %d, need at least %d for ARIMA(%d,%d,%d)", n,
                 k + 2 + spec->d, spec->p, spec->d, spec->q);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(y[i])) {
            snprintf(out->error, sizeof(out->error), "non-finite value at position %d", i);
            return -1;
        }
    int rc = -1;
    double *buf = malloc(sizeof(double) * (size_t)n * 7);
    if (!buf) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    double *ys = buf, *w = buf + n, *dx = buf + 2 * n, *e = buf + 4 * n, *mu = buf + 5 * n, *res = buf + 6 * n;
    /* differenced series and regressors; OLS of w on them for the scale and trend start */
    memcpy(w, y, sizeof(double) * (size_t)n);
    difference(w, n, spec->d);
    for (int j = 0; j < kt; j++) {
        for (int t = 0; t < n; t++)
            dx[j * n + t] = trend_value(spec->trend, j, t + 1);
        difference(dx + j * n, n, spec->d);
    }
    /* compact dx to stride nw */
    for (int j = 1; j < kt; j++)
        memmove(dx + j * nw, dx + j * n, sizeof(double) * (size_t)nw);
    double beta[2] = {0, 0};
    if (kt == 1) {
        double sxx = 0, sxy = 0;
        for (int t = 0; t < nw; t++) {
            sxx += dx[t] * dx[t];
            sxy += dx[t] * w[t];
        }
        beta[0] = sxy / sxx;
    } else if (kt == 2) {
        double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
        for (int t = 0; t < nw; t++) {
            double x1 = dx[t], x2 = dx[nw + t];
            a11 += x1 * x1, a12 += x1 * x2, a22 += x2 * x2, b1 += x1 * w[t], b2 += x2 * w[t];
        }
        double det = a11 * a22 - a12 * a12;
        beta[0] = (a22 * b1 - a12 * b2) / det;
        beta[1] = (a11 * b2 - a12 * b1) / det;
    }
    double ss = 0, wmax = 0;
    for (int t = 0; t < nw; t++) {
        double r = w[t];
        for (int j = 0; j < kt; j++)
            r -= beta[j] * dx[j * nw + t];
        res[t] = r;
        ss += r * r;
        wmax = fmax(wmax, fabs(w[t]));
    }
    double scale = sqrt(ss / nw);
    if (!(scale > 1e-10 * fmax(wmax, DBL_MIN)) || !isfinite(scale)) {
        snprintf(out->error, sizeof(out->error), "constant series: no variation left after differencing%s",
                 kt ? " and trend removal" : "");
        goto done;
    }
    for (int i = 0; i < n; i++)
        ys[i] = y[i] / scale;
    for (int t = 0; t < nw; t++)
        w[t] /= scale;
    fit_problem_t fp = {
        .spec = spec, .y = ys, .n = n, .ne = nw, .k = k, .kt = kt, .diffuse = ARIMA_DIFFUSE_VARIANCE / (scale * scale)};
    double x[ARIMA_MAX_PARAMS] = {0}, params[ARIMA_MAX_PARAMS];
    double fmin;
    bool started = false;
    if (warm && !warm->error[0] && warm->nparams == k && isfinite(warm->loglik)) {
        for (int j = 0; j < k; j++)
            params[j] = warm->params[j];
        for (int j = 0; j < kt; j++)
            params[j] /= scale;
        params[k - 1] /= scale * scale;
        started = params_to_x(&fp, params, x) == 0;
    }
    if (!started) {
        /* Start values: Hannan-Rissanen (what statsmodels starts from), the
         * trend from OLS, sigma2 from the conditional sum of squares there. */
        double hr[ARIMA_MAX_PARAMS] = {0};
        for (int j = 0; j < kt; j++)
            hr[j] = beta[j] / scale;
        for (int t = 0; t < nw; t++)
            res[t] /= scale;
        hr_start(spec->p, spec->q, res, nw, hr + kt, hr + kt + spec->p);
        for (int t = 0; t < nw; t++) {
            double v = 0;
            for (int j = 0; j < kt; j++)
                v += hr[j] * dx[j * nw + t];
            mu[t] = v;
        }
        double sse = css_core(spec->p, spec->q, hr + kt, hr + kt + spec->p, w, mu, nw, e);
        hr[k - 1] = nw - spec->p > 0 && sse > 0 && isfinite(sse) ? sse / (nw - spec->p) : 1.0;
        if (params_to_x(&fp, hr, x)) {
            for (int j = kt; j < k - 1; j++)
                x[j] = 0;
            x[k - 1] = log(hr[k - 1] > 0 && isfinite(hr[k - 1]) ? hr[k - 1] : 1.0);
        }
    }
    int sc = scoring(&fp, x, o.maxeval < 200 ? o.maxeval / 2 : 100, o.ftol_rel, &fmin);
    bool converged = sc == 1;
    if (sc == 0) {
        /* fallback: L-BFGS with the analytic gradient from the best point */
        nlopt_result nr = minimise(&fp, x, o.ftol_rel, o.maxeval, &fmin);
        if (nr < 0 && nr != NLOPT_ROUNDOFF_LIMITED) {
            out->nevals = fp.nevals;
            out->iterations = fp.ngrads;
            snprintf(out->error, sizeof(out->error), "optimiser failed (NLopt code %d)", (int)nr);
            goto done;
        }
        converged = nr != NLOPT_MAXEVAL_REACHED && nr != NLOPT_MAXTIME_REACHED;
    }
    out->nevals = fp.nevals;
    out->iterations = fp.ngrads;
    if (!(fmin < BAD_OBJECTIVE)) {
        snprintf(out->error, sizeof(out->error), "likelihood could not be evaluated (singular model)");
        goto done;
    }
    out->converged = converged;
    x_to_params(&fp, x, params, NULL);
    for (int j = 0; j < kt; j++)
        params[j] *= scale;
    params[k - 1] *= scale * scale;
    memcpy(out->params, params, sizeof(double) * (size_t)k);
    {
        arima_ssm_t ssm;
        arima_kstate_t kst;
        if (build_model(spec, params, ARIMA_DIFFUSE_VARIANCE, &ssm, &kst)) {
            snprintf(out->error, sizeof(out->error), "estimate is on the unit circle");
            goto done;
        }
        out->loglik = arima_filter(&ssm, &kst, y, n, spec->d);
        if (!isfinite(out->loglik)) {
            snprintf(out->error, sizeof(out->error), "likelihood is not finite at the estimate");
            goto done;
        }
        if (ks)
            *ks = kst;
    }
    fill_criteria(spec, n, out);
    if (!out->converged)
        snprintf(out->error, sizeof(out->error), "not converged after %d evaluations", out->nevals);
    rc = out->converged ? 0 : -1;
done:
    free(buf);
    return rc;
}
