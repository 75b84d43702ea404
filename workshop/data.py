"""Synthetic data, generated from a seed, that both sides of a pair use identically.

No downloads: every dataset in the workshop is made here, so every run works offline and
the same seed gives the same bytes on every machine.
"""

from __future__ import annotations

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
