"""Hyperparameter search for a small PyTorch MLP with Ray Tune: parallel trials, ASHA early stopping, Optuna.

The same search as the baseline (same search space, same number of trials), but the trials run in parallel,
each reports its validation score and a checkpoint after every epoch, the ASHA scheduler stops trials that
fall behind, and Optuna proposes the next configuration from the scores so far. A stopped experiment
continues with --restore, and a trial whose process dies continues from its last checkpoint.

Twin: ray_tune/baseline/tune_mlp.py (diff the two files to see the Ray changes; the numbered
comments [1]..[10] are explained in ray_tune/README.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from torch import nn
from tqdm import tqdm

from workshop import cli, ray_connect, tuning
from workshop.data import make_classification_problem

MODULE, PAIR, SIDE = "ray_tune", "tune_mlp", "ray_version"
FEATURES, CLASSES = 16, 4  # shape of the generated classification problem
REPORTED_METRICS = {"val_accuracy": "max", "val_loss": "min", "train_loss": "min"}  # what train_mlp reports

# The search space, written with the names of ray.tune's sampling functions (randint bounds: high excluded).
SEARCH_SPACE = {
    "lr": {"type": "loguniform", "low": 1e-3, "high": 0.1},
    "width": {"type": "lograndint", "low": 8, "high": 257},
    "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
    "batch_size": {"type": "choice", "values": [32, 64, 128, 256]},
}


def make_model(features: int, width: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, classes))


def train_epoch(model, optimizer, X, y, batch_size: int, seed: int, epoch: int) -> float:
    """One pass over the training set in a shuffled order fixed by (seed, epoch); returns the mean loss."""
    model.train()
    order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(X)))
    total = 0.0
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(X)


@torch.no_grad()
def evaluate(model, X, y) -> tuple[float, float]:
    """(loss, accuracy) on held-out data."""
    model.eval()
    logits = model(X)
    return nn.functional.cross_entropy(logits, y).item(), (logits.argmax(dim=1) == y).float().mean().item()


def train_mlp(config: dict, data: dict) -> None:
    """One trial: train one configuration, report metrics and a checkpoint to Tune after every epoch."""
    X_train, y_train, X_val, y_val = (torch.tensor(a) for a in data["arrays"])  # a copy: trials may share the arrays
    torch.manual_seed(config["seed"])
    model = make_model(X_train.shape[1], config["width"], data["classes"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # no "Checkpoint created" per epoch
    start_epoch = 0
    checkpoint = tune.get_checkpoint()  # [1] set when the trial is resumed (restore, or a retry after a crash)
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
    for epoch in range(start_epoch, config["epochs"]):
        train_loss = train_epoch(model, optimizer, X_train, y_train, config["batch_size"], config["seed"], epoch)
        val_loss, val_accuracy = evaluate(model, X_val, y_val)
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                       Path(folder) / "state.pt")
            tune.report(  # [2] Tune records the metrics and copies the checkpoint to storage; ASHA may stop us here
                {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy,
                 "resumed_from_epoch": start_epoch},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


class SearchProgress(tune.Callback):
    """A progress bar over finished trials, in the driver."""

    def __init__(self, num_samples: int, disable: bool = False):
        self.bar = tqdm(total=num_samples, desc="trials finished", unit="trial", disable=disable)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.bar is not None:  # None: a copy restored with the experiment (see __getstate__)
            self.bar.update()

    def __getstate__(self):  # Tune saves callbacks with the experiment; the restored copy stays silent
        return {"bar": None}


def run_search(space, data, args, experiment: Path, callbacks: list) -> tune.ResultGrid:
    """Tune: trials in parallel, ASHA stops the weak ones early, Optuna picks the next configurations."""
    trainable = tune.with_resources(  # [3] each trial holds 1 CPU: that many trials run at once
        tune.with_parameters(train_mlp, data=data),  # [4] data to the object store once
        {"cpu": 1},
    )
    if args.restore:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)  # [5]
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={**tuning.to_tune_space(space), "epochs": args.epochs, "seed": args.seed},
            tune_config=tune.TuneConfig(
                metric=args.metric, mode=REPORTED_METRICS[args.metric], num_samples=args.num_samples,
                search_alg=OptunaSearch(seed=args.seed),  # [6] a model-based searcher proposes configurations
                scheduler=ASHAScheduler(max_t=args.epochs, grace_period=1, reduction_factor=3),  # [7] stops laggards
                max_concurrent_trials=args.max_concurrent_trials,
                reuse_actors=True,  # the process of a finished trial runs the next one: no process start per trial
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",  # short folder names
            ),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(experiment.parent),  # [5] absolute; restore reads it back
                failure_config=tune.FailureConfig(max_failures=2),  # [8] a crashed trial resumes from its checkpoint
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=args.metric,
                    checkpoint_score_order=REPORTED_METRICS[args.metric],
                ),  # keep each trial's best checkpoint, and its latest for resuming
                callbacks=callbacks, verbose=2 if args.verbose else 0,  # our own progress bar instead of Tune's tables
            ),
        )
    return tuner.fit()


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--num-samples", type=cli.positive_int, default=16, help="trials (configurations) to try")
    parser.add_argument("--epochs", type=cli.positive_int, default=20, help="epochs per trial at most")
    parser.add_argument("--train-rows", type=cli.positive_int, default=20_000, help="rows in the training set")
    parser.add_argument("--val-rows", type=cli.positive_int, default=5_000, help="rows in the validation set")
    parser.add_argument("--search-space", type=Path, default=None,
                        help="JSON file with the search space (default: SEARCH_SPACE in this file)")
    parser.add_argument("--metric", default="val_accuracy",
                        help="reported metric to optimise (accuracy is maximised, losses minimised)")
    parser.add_argument("--max-concurrent-trials", type=cli.positive_int, default=None,
                        help="trials running at once (default: one per CPU of the cluster; smoke test: 2)")
    parser.add_argument("--restore", action="store_true",
                        help="continue the experiment saved under --output instead of starting a new one")
    args = parser.parse_args()
    if args.smoke_test:
        args.num_samples, args.epochs, args.train_rows, args.val_rows = 4, 4, 1_500, 500
        args.max_concurrent_trials = args.max_concurrent_trials or 2
    space = SEARCH_SPACE
    if args.search_space is not None:
        if not args.search_space.is_file():
            cli.fail(f"search space file {args.search_space} not found; pass an existing JSON file")
        try:
            space = tuning.load_search_space(args.search_space)
        except ValueError as exc:
            parser.error(str(exc))
    if args.metric not in REPORTED_METRICS:  # Tune would only notice at the first result, after start-up
        parser.error(f"--metric {args.metric!r} is never reported by the trainable; choose one of "
                     f"{', '.join(REPORTED_METRICS)}")
    experiment = (args.output / PAIR).resolve()  # [5] Tune wants an absolute storage path
    if args.restore and not tune.Tuner.can_restore(experiment):
        cli.fail(f"no Tune experiment to restore in {experiment}; run once without --restore first")
    output = cli.prepare_output(args.output)
    if not args.restore:
        shutil.rmtree(experiment, ignore_errors=True)  # a new run starts over instead of mixing with the old one

    # Tune saves its experiment state whenever it deletes an old checkpoint (num_to_keep), and warns when that
    # happens every few seconds. With epochs of a second and a tiny state that is expected and cheap.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not args.verbose:  # Tune's new output engine prints its configuration box even at verbose=0; the old one not
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = time.perf_counter()
    ray_connect.preflight()  # one clear line in seconds, not a traceback or a long wait, if the cluster is unreachable
    ray.init()  # [9] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    ray_connect.require_resources(1)
    startup = time.perf_counter() - started

    arrays = make_classification_problem(args.train_rows, args.val_rows, FEATURES, CLASSES, args.seed)
    data = {"arrays": arrays, "classes": CLASSES}
    print(f"Data: {args.train_rows:,} training and {args.val_rows:,} validation rows, {FEATURES} features, "
          f"{CLASSES} classes. Search: {args.num_samples} trials x {args.epochs} epochs, Optuna + ASHA, "
          f"{ray.cluster_resources().get('CPU', 0):.0f} Ray CPUs")

    progress = SearchProgress(args.num_samples, disable=args.restore)  # restore: callbacks come back from storage
    with cli.Timer() as timer:
        results = run_search(space, data, args, experiment, [] if args.restore else [progress])
    if args.trace:  # [10] every task and actor call of this job, as a timeline for Perfetto
        ray.timeline(filename=str(args.trace))
    progress.bar.close()
    if results.errors:  # a trial that failed more than max_failures times
        cli.fail(f"{len(results.errors)} trial(s) failed; first error: {str(results.errors[0]).strip().splitlines()[-1]}")
    frame = results.get_dataframe()  # one row per trial: its last reported metrics and its config
    mode = REPORTED_METRICS[args.metric]
    best = results.get_best_result(metric=args.metric, mode=mode, scope="all")  # best epoch of any trial
    best_checkpoint = best.get_best_checkpoint(metric=args.metric, mode=mode)
    best_accuracy = float(best.metrics_dataframe["val_accuracy"].max())
    epochs_run = int(frame["training_iteration"].sum())
    stopped_early = int((frame["training_iteration"] < args.epochs).sum())
    history = [r.metrics_dataframe for r in results]  # one row per reported epoch, per trial
    resumed = sum(int((h["resumed_from_epoch"] > 0).any()) for h in history if "resumed_from_epoch" in h)
    complete = results.num_terminated == args.num_samples  # else: stopped by Ctrl-C

    columns = {f"config/{k}": k for k in tuning.HYPERPARAMETERS}
    table = frame[["trial_id", *columns, "training_iteration", "val_accuracy"]].rename(columns=columns)
    print(table.rename(columns={"training_iteration": "epochs", "val_accuracy": "last val acc"}).to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    config = {k: best.config[k] for k in tuning.HYPERPARAMETERS}
    print(f"Best: val_accuracy {best_accuracy:.4f} with {config}")
    print(f"Best checkpoint: {best_checkpoint.path}")
    print(f"Epochs run: {epochs_run} of {args.num_samples * args.epochs}; {stopped_early} trials stopped early by ASHA")
    print(f"Work time: {timer.seconds:.2f} s (Ray start-up {startup:.1f} s, not included)")
    if resumed:
        print(f"{resumed} trial(s) resumed from a checkpoint (after a restore, or after their process died).")
    if not complete:
        print(f"Stopped early (Ctrl-C) with {len(frame)} of {args.num_samples} trials started. "
              f"Continue with the same command plus --restore; finished trials are not run again.")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"best_val_accuracy": best_accuracy},
        best_config=config, best_checkpoint=best_checkpoint.path, experiment=str(experiment),
        trials=len(frame), complete=complete, restored=args.restore,
        trials_stopped_early=stopped_early, epochs_run=epochs_run, epochs_budget=args.num_samples * args.epochs,
        trials_resumed_from_checkpoint=resumed, startup_seconds=startup,
        num_samples=args.num_samples, epochs=args.epochs, train_rows=args.train_rows, val_rows=args.val_rows,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
