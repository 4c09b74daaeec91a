#!/usr/bin/python3
"""scikit-learn's MiniBatchKMeans.partial_fit on the data bench_kmeans reads.

usage: sklearn_bench.py FILE N D K BATCH [REPEAT]
FILE: N*D float64 row-major. Prints points/s (best of REPEAT) of partial_fit
over consecutive chunks of BATCH points, the first call (which seeds) excluded,
and of predict() over the same chunks (assignment only).
"""
import sys
import time

import numpy as np
from sklearn.cluster import MiniBatchKMeans

path, n, d, k, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
repeat = int(sys.argv[6]) if len(sys.argv) > 6 else 3
X = np.fromfile(path, dtype="<f8", count=n * d).reshape(n, d)
best_fit = best_pred = 0.0
for _ in range(repeat):
    mbk = MiniBatchKMeans(n_clusters=k, batch_size=batch, n_init=1, random_state=0)
    first = max(batch, 10 * k, 100)
    mbk.partial_fit(X[:first])
    t0 = time.perf_counter()
    for i in range(first, n, batch):
        mbk.partial_fit(X[i:i + batch])
    s = time.perf_counter() - t0
    best_fit = max(best_fit, (n - first) / s)
    t0 = time.perf_counter()
    for i in range(first, n, batch):
        mbk.predict(X[i:i + batch])
    s = time.perf_counter() - t0
    best_pred = max(best_pred, (n - first) / s)
print(f"sk_partial_fit_points_s={best_fit:.0f} sk_predict_points_s={best_pred:.0f}")
