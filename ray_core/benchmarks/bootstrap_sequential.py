"""The bootstrap baseline without its Pool: one replicate after another, for make bench's "vs sequential" rows.

    python ray_core/benchmarks/bootstrap_sequential.py --smoke-test

Runs ray_core/baseline/bootstrap_auc.py's own main() (same flags, same output and result.json) with its
run_bootstrap() replaced by a plain loop over the same bootstrap_replicate(), so the baseline file holds only
the strongest way without Ray (the Pool) and this row still has its reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ (run as `python ray_core/benchmarks/bootstrap_sequential.py`)
from tools.tour import load_script  # noqa: E402

BASELINE = Path(__file__).resolve().parents[1] / "baseline" / "bootstrap_auc.py"


def main() -> None:
    baseline = load_script(BASELINE)

    def run_bootstrap(scores, labels, seed, replicates, sample_size):
        return [baseline.bootstrap_replicate(scores, labels, seed, replicate, sample_size)
                for replicate in tqdm(range(replicates), desc="replicates", unit="rep")]

    baseline.run_bootstrap = run_bootstrap
    baseline.main()


if __name__ == "__main__":
    main()
