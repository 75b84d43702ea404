"""The tuning baseline as plain random search: every configuration trained to its last epoch, for make bench.

    python ray_tune/benchmarks/random_search.py --smoke-test

Runs ray_tune/baseline/tune_mlp.py's own main() (same flags, same output and result.json) with Optuna's
RandomSampler and no pruner in place of TPE and successive halving. Beside the baseline and Tune, this row shows
how much of a search's gain is the sampler and early stopping, which need no Ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ (run as `python ray_tune/benchmarks/random_search.py`)
from tools.tour import load_script  # noqa: E402

BASELINE = Path(__file__).resolve().parents[1] / "baseline" / "tune_mlp.py"


def main() -> None:
    peek = argparse.ArgumentParser(add_help=False)  # --seed for the sampler; the baseline's parser checks it
    peek.add_argument("--seed", default="0")
    text = peek.parse_known_args()[0].seed
    seed = int(text) if text.lstrip("-").isdigit() else 0
    create_study = optuna.create_study

    def random_study(**kwargs):  # the baseline's study, with random draws and every trial to its last epoch
        return create_study(**{**kwargs, "sampler": optuna.samplers.RandomSampler(seed),
                               "pruner": optuna.pruners.NopPruner()})

    optuna.create_study = random_study  # in this process only: the baseline calls it as optuna.create_study
    load_script(BASELINE).main()

if __name__ == "__main__":
    main()
