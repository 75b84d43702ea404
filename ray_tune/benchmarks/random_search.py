"""The tuning baseline as plain random search: every configuration trained to its last epoch, for make bench.

    python ray_tune/benchmarks/random_search.py --smoke-test

Runs ray_tune/baseline/tune_mlp.py's own main() (same flags, same output and result.json) with Optuna's
RandomSampler and no pruner in place of TPE and successive halving. Beside the baseline and Tune, this row shows
how much of a search's gain is the sampler and early stopping, which need no Ray.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import optuna

BASELINE = Path(__file__).resolve().parents[1] / "baseline" / "tune_mlp.py"


def load_baseline():
    spec = importlib.util.spec_from_file_location("tune_mlp", BASELINE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=0)
    known, _ = seed.parse_known_args()
    create_study = optuna.create_study

    def random_study(**kwargs):  # the baseline's study, with random draws and every trial to its last epoch
        return create_study(**{**kwargs, "sampler": optuna.samplers.RandomSampler(known.seed),
                               "pruner": optuna.pruners.NopPruner()})

    optuna.create_study = random_study  # in this process only: the baseline calls it as optuna.create_study
    load_baseline().main()

if __name__ == "__main__":
    main()
