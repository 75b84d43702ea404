"""A multi-class tabular classification problem, generated from a seed, for the training pairs.

Both sides of a training pair (and every Ray Train worker) call `make_classification_split` with the same
arguments and get the same bytes, so no data is shipped between processes and nothing is downloaded.
"""

from __future__ import annotations

import numpy as np


def make_classification_split(
    rows: int, features: int, classes: int, seed: int, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train float32, y_train int64, X_val float32, y_val int64): a Gaussian mixture, two blobs per class.

    Two blobs per class make the class boundaries non-linear, so an MLP beats a linear model; the blobs
    overlap enough that held-out accuracy stays well below 100% (about 0.9 for an MLP at the defaults).
    The held-out split is a seeded permutation: the same seed gives the same split everywhere.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng([seed, 7])
    centres = rng.normal(scale=0.5, size=(2 * classes, features))
    blob = rng.integers(0, 2 * classes, size=rows)
    X = (centres[blob] + rng.normal(size=(rows, features))).astype(np.float32)
    y = (blob % classes).astype(np.int64)
    order = rng.permutation(rows)
    n_val = max(1, int(round(rows * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], X[val], y[val]
