"""What both sides of ray_tune share besides the data (workshop/data.py): the search-space file check and the
table of trials both print. Each script writes the search space in its own library's terms (`search_space`).
"""

from __future__ import annotations

import json
from pathlib import Path

HYPERPARAMETERS = ("lr", "width", "weight_decay", "batch_size")
HISTORY = ["epoch", "train_loss", "val_loss", "val_accuracy", "timestamp", "time_total_s"]  # one row per epoch
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "lograndint", "choice")  # named like ray.tune's functions


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


def print_trials(trials: list[dict]) -> None:
    """The table both sides print: one line per trial record ({"trial_id", "config", "history"}, one history
    row per epoch run), with its configuration, the epoch it reached and its best validation accuracy."""
    print(f"{'trial':>8} {'lr':>9} {'width':>5} {'weight_decay':>12} {'batch':>5} {'epochs':>6} {'best val acc':>12}")
    for t in trials:
        c = t["config"]
        print(f"{t['trial_id']:>8} {c['lr']:>9.2e} {c['width']:>5} {c['weight_decay']:>12.2e} {c['batch_size']:>5} "
              f"{t['history'][-1]['epoch']:>6} {max(h['val_accuracy'] for h in t['history']):>12.4f}")
