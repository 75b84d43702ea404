"""Bootstrap confidence interval of a classifier's ROC AUC, in parallel with Ray tasks.

How sure are we of a model's AUC on an evaluation set? Resample the set with replacement many times,
compute the AUC of each resample, and read the interval off the spread. Every replicate needs the whole
evaluation set and takes a fraction of a second of CPU: embarrassingly parallel work that shares one
large input.

Twin: ray_core/baseline/bootstrap_auc.py (diff the two files to see the Ray changes; the numbered
comments [1]..[5] are explained in ray_core/README.md).
"""

from __future__ import annotations

import os
import time

import numpy as np
import ray
from tqdm import tqdm

from workshop import cli, data

MODULE, PAIR, SIDE = "ray_core", "bootstrap_auc", "ray_version"


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


@ray.remote(max_retries=3)  # [2] a task whose worker process dies is run again, up to 3 times
def bootstrap_task(scores, labels, seed, replicate, sample_size, crash_marker=None):
    """One replicate as a Ray task. `scores` and `labels` arrive as zero-copy views of the object store."""
    if crash_marker is not None and not os.path.exists(crash_marker):  # --inject-failure, first attempt only
        open(crash_marker, "w").close()
        os._exit(1)  # the worker process dies: no exception, no cleanup, as in an out-of-memory kill
    node = ray.get_runtime_context().get_node_id()
    return replicate, bootstrap_replicate(scores, labels, seed, replicate, sample_size), node


def run_bootstrap(scores, labels, seed, replicates, sample_size, crash_marker=None):
    """All replicate AUCs, in replicate order, and the set of nodes that computed them."""
    aucs = [0.0] * replicates
    scores_ref, labels_ref = ray.put(scores), ray.put(labels)  # [3] into the object store once, not once per task
    pending = [
        bootstrap_task.remote(  # [4] .remote() returns at once with an ObjectRef; the task runs in a worker
            scores_ref, labels_ref, seed, replicate, sample_size,
            str(crash_marker) if crash_marker and replicate == replicates // 2 else None,
        )
        for replicate in range(replicates)
    ]
    nodes = set()
    with tqdm(total=replicates, desc="replicates", unit="rep") as progress:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)  # [5] handle results in the order they finish
            replicate, auc, node = ray.get(done[0])
            aucs[replicate] = auc
            nodes.add(node)
            progress.update()
    return aucs, nodes


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--rows", type=cli.positive_int, default=4_000_000, help="rows in the evaluation set")
    parser.add_argument("--replicates", type=cli.positive_int, default=32, help="bootstrap replicates (one task each)")
    parser.add_argument(
        "--sample-size", type=cli.positive_int, default=None, help="rows per resample (default: --rows)"
    )
    parser.add_argument(
        "--inject-failure", action="store_true", help="kill the worker process of one task mid-run (Ray retries it)"
    )
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.replicates = 20_000, 16
    sample_size = args.sample_size or args.rows
    output = cli.prepare_output(args.output)

    started = time.perf_counter()
    with cli.ray_errors():  # one clear line, not a traceback or a long wait, if the cluster is unreachable
        ray.init()  # [1] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    startup = time.perf_counter() - started
    crash_marker = output.resolve() / "injected_failure.marker" if args.inject_failure else None
    if crash_marker:
        crash_marker.unlink(missing_ok=True)

    scores, labels = data.make_scored_eval_set(args.rows, args.seed)
    print(f"Evaluation set: {args.rows:,} rows ({(scores.nbytes + labels.nbytes) / 1e6:.0f} MB), "
          f"{args.replicates} replicates of {sample_size:,} rows, {ray.cluster_resources().get('CPU', 0):.0f} Ray CPUs")

    with cli.Timer() as timer:
        aucs, nodes = run_bootstrap(scores, labels, args.seed, args.replicates, sample_size, crash_marker)
    if args.trace:  # [6] every task and actor call of this job, as a timeline for Perfetto
        ray.timeline(filename=str(args.trace))
    point = roc_auc(scores, labels)
    low, high = np.percentile(aucs, [2.5, 97.5])

    print(f"AUC {point:.4f}, 95% bootstrap interval [{low:.4f}, {high:.4f}] from {len(aucs)} replicates")
    print(f"Work time: {timer.seconds:.2f} s on {len(nodes)} node(s) (Ray start-up {startup:.1f} s, not included)")
    injected = bool(crash_marker) and crash_marker.exists()
    if injected:
        print("Injected failure: one worker process was killed; Ray re-ran its task and the answer is complete.")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"auc": point, "ci_low": float(low), "ci_high": float(high), "replicate_aucs": aucs},
        rows=args.rows, replicates=args.replicates, sample_size=sample_size,
        startup_seconds=startup, nodes=len(nodes), injected_failure=injected,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
