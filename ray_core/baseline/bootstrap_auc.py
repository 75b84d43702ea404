"""Bootstrap confidence interval of a classifier's ROC AUC, in parallel with multiprocessing.Pool.

How sure are we of a model's AUC on an evaluation set? Resample the set with replacement many times,
compute the AUC of each resample, and read the interval off the spread. Every replicate needs the whole
evaluation set and takes a fraction of a second of CPU: embarrassingly parallel work that shares one
large input.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_core/README.md):

    diff -u ray_core/baseline/bootstrap_auc.py ray_core/ray_version/bootstrap_auc.py
"""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
from tqdm import tqdm

from workshop import cli, data


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, with tied scores given their average rank."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(sorted_scores)]
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based average rank of each tie group
    n_pos = int(sorted_labels.sum())
    n_neg = len(sorted_labels) - n_pos
    return float((ranks[sorted_labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_replicate(scores: np.ndarray, labels: np.ndarray, seed: int, replicate: int, sample_size: int) -> float:
    """AUC of one resample. The resample depends only on (seed, replicate): any process, same answer."""
    rng = np.random.default_rng([seed, replicate])
    idx = rng.integers(0, len(scores), size=sample_size)
    return roc_auc(scores[idx], labels[idx])


_shared: dict[str, np.ndarray] = {}  # the evaluation set, once per Pool worker (see _init_worker)


def _init_worker(scores: np.ndarray, labels: np.ndarray) -> None:
    """Runs once in each Pool worker: the evaluation set arrives once per worker, not once per task."""
    _shared["scores"], _shared["labels"] = scores, labels


def bootstrap_task(args: tuple[int, int, int]) -> tuple[int, float]:
    """One replicate in a Pool worker, on the evaluation set the initializer left there."""
    seed, replicate, sample_size = args
    return replicate, bootstrap_replicate(_shared["scores"], _shared["labels"], seed, replicate, sample_size)


def run_bootstrap(scores, labels, seed, replicates, sample_size):
    """All replicate AUCs, in replicate order."""
    aucs = [0.0] * replicates
    tasks = [(seed, replicate, sample_size) for replicate in range(replicates)]
    chunksize = max(1, replicates // (4 * (os.cpu_count() or 1)))  # the same batching Pool.map does
    pool = mp.Pool(initializer=_init_worker, initargs=(scores, labels))  # one worker process per core
    with pool, tqdm(total=replicates, desc="replicates", unit="rep") as progress:
        for replicate, auc in pool.imap_unordered(bootstrap_task, tasks, chunksize=chunksize):
            aucs[replicate] = auc
            progress.update()
    return aucs


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--rows", type=cli.positive_int, default=4_000_000, help="rows in the evaluation set")
    parser.add_argument("--replicates", type=cli.positive_int, default=32, help="bootstrap replicates (one task each)")
    parser.add_argument(
        "--sample-size", type=cli.positive_int, default=None, help="rows per resample (default: --rows)"
    )
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.replicates = 20_000, 16
    sample_size = args.sample_size or args.rows
    cli.prepare_output(args.output)

    scores, labels = data.make_scored_eval_set(args.rows, args.seed)
    print(f"Evaluation set: {args.rows:,} rows ({(scores.nbytes + labels.nbytes) / 1e6:.0f} MB), "
          f"{args.replicates} replicates of {sample_size:,} rows")

    with cli.Timer() as timer:
        aucs = run_bootstrap(scores, labels, args.seed, args.replicates, sample_size)
    point = roc_auc(scores, labels)
    low, high = np.percentile(aucs, [2.5, 97.5])

    print(f"AUC {point:.4f}, 95% bootstrap interval [{low:.4f}, {high:.4f}] from {len(aucs)} replicates")
    print(f"Work time: {timer.seconds:.2f} s")
    path = cli.write_result(
        args, seconds=timer.seconds,
        answer={"auc": point, "ci_low": float(low), "ci_high": float(high), "replicate_aucs": aucs},
        rows=args.rows, replicates=args.replicates, sample_size=sample_size,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
