"""The tuning problem that both sides of ray_tune share: the dataset and the search-space file check.

Both are incidental to what the module teaches (how the trials are run), so they live here once.
Nothing here knows about Ray.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

HYPERPARAMETERS = ("lr", "width", "weight_decay", "batch_size")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "lograndint", "choice")  # named like ray.tune's functions


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


def load_search_space(path: Path) -> dict:
    """Read and check a search-space JSON file; raise ValueError with a one-line reason if it is not usable.

    The file names every hyperparameter, each either a fixed number or a distribution, for example
    {"lr": {"type": "loguniform", "low": 1e-4, "high": 0.1}, "width": {"type": "lograndint", "low": 8,
    "high": 256}, "weight_decay": 0.0, "batch_size": {"type": "choice", "values": [32, 64, 128]}}.
    """
    try:
        space = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"search space {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(space, dict) or not space:
        raise ValueError(f"search space {path} is empty: give a JSON object with {', '.join(HYPERPARAMETERS)}")
    unknown = sorted(set(space) - set(HYPERPARAMETERS))
    missing = [name for name in HYPERPARAMETERS if name not in space]
    if unknown or missing:
        raise ValueError(f"search space {path}: unknown {unknown}, missing {missing}; "
                         f"expected exactly {', '.join(HYPERPARAMETERS)}")
    for name, spec in space.items():
        check_dimension(name, spec)
    return space


def check_dimension(name: str, spec) -> None:
    """One entry of a search space: a positive number, or {"type": ..., "low": ..., "high": ...} / choice."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec < 0 or (name != "weight_decay" and spec <= 0):
            raise ValueError(f"search space: {name} = {spec} must be positive")
        return
    if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
        raise ValueError(f"search space: {name} must be a number or an object with \"type\" one of "
                         f"{', '.join(DISTRIBUTIONS)}, got {spec!r}")
    if spec["type"] == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) for v in values):
            raise ValueError(f"search space: {name} choice needs a non-empty list of numbers in \"values\"")
        return
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ValueError(f"search space: {name} {spec['type']} needs numbers \"low\" and \"high\"")
    if low >= high:
        raise ValueError(f"search space: {name} has low {low} >= high {high}; the lower bound must be smaller")
    if spec["type"].startswith("log") and low <= 0:
        raise ValueError(f"search space: {name} {spec['type']} needs low > 0, got {low}")
    if spec["type"].endswith("randint") and name not in ("width", "batch_size"):
        raise ValueError(f"search space: {name} is a real number; use uniform or loguniform")
    if name in ("width", "batch_size") and not spec["type"].endswith("randint"):
        raise ValueError(f"search space: {name} is a whole number; use randint, lograndint or choice")
