"""Synthetic data, generated from a seed, that both sides of a pair use identically.

No downloads: every dataset in the workshop is made here, so every run works offline and
the same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import math

import numpy as np


def make_scored_eval_set(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's scores on a labelled evaluation set: (scores float64, labels bool).

    About 30% positives; positives score higher on average, so the ROC AUC is about 0.80.
    """
    rng = np.random.default_rng(seed)
    labels = rng.random(rows) < 0.3
    scores = rng.normal(loc=np.where(labels, 1.2, 0.0), scale=1.0)
    return scores, labels


HELD_OUT_SHARD = 1_000_000  # shard id of the held-out test set; training shards are 0, 1, 2, ...


def make_classification_shard(rows: int, dim: int, seed: int, shard: int) -> tuple[np.ndarray, np.ndarray]:
    """One shard of a linearly separable-ish binary classification problem: (X float64, y float64 in {0, 1}).

    Every shard of the same seed shares the same hidden true weights; `shard` picks the rows.
    """
    true_weights = np.random.default_rng(seed).normal(size=dim)
    rng = np.random.default_rng([seed, shard])
    X = rng.normal(size=(rows, dim))
    # An explicit sum rather than X @ w: BLAS may split the sum across threads, and the bits would
    # then depend on the thread count of the process that generates the shard.
    logits = (X * true_weights).sum(axis=1) + rng.normal(scale=0.5, size=rows)
    y = (logits > 0).astype(np.float64)
    return X, y


# ray_train: a multi-class tabular problem. Both sides of a training pair (and every Ray Train worker) call
# it with the same arguments and get the same bytes, so no data is shipped between processes.
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


# ray_tune: a classification problem whose labels come from a random "teacher" network.
def make_classification_problem(
    train_rows: int, val_rows: int, features: int, classes: int, seed: int, label_noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val): float32 features, int64 labels from a random nonlinear "teacher".

    The labels come from a small random tanh network, so a linear model is not enough and the width of the
    MLP matters; `label_noise` of the labels are then replaced by random classes, which caps the best
    reachable validation accuracy near 1 - label_noise * (classes - 1) / classes.
    """
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(features, 32)) / math.sqrt(features)
    head = rng.normal(size=(32, classes)) * 2.0
    X = rng.normal(size=(train_rows + val_rows, features))
    labels = (np.tanh(X @ hidden) @ head).argmax(axis=1)
    noisy = rng.random(len(labels)) < label_noise
    labels[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    X, labels = X.astype(np.float32), labels.astype(np.int64)
    return X[:train_rows], labels[:train_rows], X[train_rows:], labels[train_rows:]
