#!/usr/bin/python3
"""Write the benchmark series (fixed seeds) to DIR and time statsmodels' ARIMA
fit on each: prints "order n ms_per_fit loglik" lines. Usage: bench_statsmodels.py DIR

Timed like weir: one untimed warm-up fit first (imports, caches), and
fit(cov_type="none"), since weir does not estimate the parameters'
covariance either (that step is 7-18 % of statsmodels' fit time). run.sh runs
this with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: this machine sets them,
and they slow numpy's kernels 2-4x."""
import os
import sys
import time
import warnings

import numpy as np
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.arima_process import ArmaProcess

warnings.simplefilter("ignore")
ORDERS = [((1, 1, 1), [0.5], [-0.3]), ((2, 1, 2), [0.4, 0.2], [0.3, -0.2]), ((3, 0, 1), [0.5, -0.2, 0.1], [0.3])]
out = sys.argv[1]
for (p, d, q), ar, ma in ORDERS:
    for n in (100, 1000, 10000):
        rng = np.random.default_rng(1000 * p + n)
        x = ArmaProcess(np.r_[1, -np.array(ar)], np.r_[1, np.array(ma)]).generate_sample(
            n, distrvs=rng.standard_normal)
        for _ in range(d):
            x = np.cumsum(x)
        path = os.path.join(out, "arima_%d%d%d_%d.txt" % (p, d, q, n))
        np.savetxt(path, x, fmt="%.17g")
        trend = "c" if d == 0 else "n"
        rep = 5 if n <= 1000 else 1
        ARIMA(x, order=(p, d, q), trend=trend).fit(cov_type="none")  # warm-up, untimed
        t = time.perf_counter()
        for _ in range(rep):
            r = ARIMA(x, order=(p, d, q), trend=trend).fit(cov_type="none")
        dt = (time.perf_counter() - t) / rep
        print("%d%d%d %d %.6f %.6f" % (p, d, q, n, dt * 1e3, r.llf), flush=True)
