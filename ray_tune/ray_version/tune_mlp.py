"""Hyperparameter search for a small PyTorch MLP with Ray Tune: trials in parallel, a checkpoint every epoch.

Both sides run the same search: the same search space and number of trials, Optuna's TPE sampler proposing each
configuration from the scores so far, and successive halving (ASHA's rule) stopping the trials that fall behind.
The baseline runs one trial after another. Ray Tune runs the trials in parallel, continues a stopped search with
--restore, and restarts a trial whose process died from its last checkpoint.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_tune/README.md):

    diff -u ray_tune/baseline/tune_mlp.py ray_tune/ray_version/tune_mlp.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from torch import nn

from workshop import cli, ray_connect, tuning
from workshop.data import make_classification_problem

FEATURES, CLASSES = 16, 4  # shape of the generated classification problem

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
    """One trial: train one configuration and report each epoch's metrics."""
    X_train, y_train, X_val, y_val = (torch.tensor(a) for a in data["arrays"])
    torch.manual_seed(config["seed"])
    model = make_model(X_train.shape[1], config["width"], data["classes"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    start_epoch = 0
    if checkpoint := tune.get_checkpoint():  # [1] set when the trial is resumed (restore, or a retry after a crash)
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
    for epoch in range(start_epoch, config["epochs"]):
        train_loss = train_epoch(model, optimizer, X_train, y_train, config["batch_size"], config["seed"], epoch)
        val_loss, val_accuracy = evaluate(model, X_val, y_val)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                       Path(folder) / "state.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))  # [2] ASHA may stop it here


def search_space(space: dict) -> dict:
    """The search space as Tune's sampling functions (randint: high excluded); the searcher draws from these."""
    samplers = {"uniform": tune.uniform, "loguniform": tune.loguniform,  # Tune's sampling functions
                "randint": tune.randint, "lograndint": tune.lograndint, "choice": tune.choice}
    return {name: spec if not isinstance(spec, dict)  # a fixed value stays fixed
            else samplers["choice"](spec["values"]) if spec["type"] == "choice"
            else samplers[spec["type"]](spec["low"], spec["high"])
            for name, spec in space.items()}


class Progress(tune.Callback):  # Tune calls it in the driver: one line per finished trial, as the baseline prints
    def on_trial_complete(self, iteration, trials, trial, **info):
        print(f"Trial {trial.trial_id} finished", flush=True)


def run_search(space: dict, data: dict, args) -> list[dict]:
    """The search: TPE picks each next configuration, successive halving stops the weak trials early."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no log line per trial: the table below says it all
    experiment = args.output / "tune_mlp"  # where Tune keeps results and checkpoints (an absolute path)
    trainable = tune.with_resources(tune.with_parameters(train_mlp, data=data),  # [3] data to the object store once
                                    {"cpu": 1})  # [3] each trial holds 1 CPU: that many trials run at once
    if args.restore:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)  # [4] continue it
    else:
        shutil.rmtree(experiment, ignore_errors=True)  # a new search starts over instead of mixing with the old one
        tuner = tune.Tuner(  # [5] what to search, how many trials, how many at once; a trial's process runs the next
            trainable,
            param_space={**search_space(space), "epochs": args.epochs, "seed": args.seed},
            tune_config=tune.TuneConfig(
                metric="val_accuracy", mode="max", num_samples=args.num_samples,
                search_alg=OptunaSearch(seed=args.seed),  # [5] the baseline's TPE sampler, as Tune's searcher
                scheduler=ASHAScheduler(max_t=args.epochs, grace_period=1, reduction_factor=3),  # [5] its pruner
                max_concurrent_trials=args.max_concurrent_trials, reuse_actors=True,
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",  # short folder names
            ),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(experiment.parent),  # [6] restore reads it back
                failure_config=tune.FailureConfig(max_failures=2),  # [6] a crashed trial resumes from its checkpoint
                callbacks=[Progress()], verbose=0,  # no status tables: one line per finished trial
            ),
        )
    results = tuner.fit()
    if results.errors:  # a trial that failed more than max_failures times
        error = str(results.errors[0]).strip().splitlines()[-1]
        cli.fail(f"{len(results.errors)} trial(s) failed; first error: {error}")
    if results.num_terminated < args.num_samples:  # Ctrl-C: Tune stopped the search and saved it
        print("Stopped early (Ctrl-C). Continue with the same command plus --restore; finished trials are not run "
              "again.")
    return [{"trial_id": r.metrics["trial_id"], "config": r.config,  # the baseline's records, from Tune's results
             "history": r.metrics_dataframe[tuning.HISTORY].to_dict("records"),
             "best_checkpoint": r.get_best_checkpoint("val_accuracy", "max").path}
            for r in results if r.checkpoint]  # trials that reported an epoch (Ctrl-C may stop the rest sooner)


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--num-samples", type=cli.positive_int, default=16, help="trials (configurations) to try")
    parser.add_argument("--epochs", type=cli.positive_int, default=20, help="epochs per trial at most")
    parser.add_argument("--train-rows", type=cli.positive_int, default=20_000, help="rows in the training set")
    parser.add_argument("--val-rows", type=cli.positive_int, default=5_000, help="rows in the validation set")
    parser.add_argument("--search-space", type=Path, default=None,
                        help="JSON file with the search space (default: SEARCH_SPACE in this file)")
    parser.add_argument("--max-concurrent-trials", type=cli.positive_int, default=None,
                        help="trials running at once (default: one per CPU of the cluster; smoke test: 2)")
    parser.add_argument("--restore", action="store_true",
                        help="continue the search saved under --output instead of starting a new one")
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
    if args.restore and not tune.Tuner.can_restore(args.output / "tune_mlp"):  # [4] a saved search to continue?
        cli.fail(f"no Tune experiment to restore in {args.output / 'tune_mlp'}; run once without --restore first")
    cli.prepare_output(args.output)
    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init(logging_config=ray.LoggingConfig(log_level="WARNING"))  # [7] start or join Ray; quiet Ray logs

    arrays = make_classification_problem(args.train_rows, args.val_rows, FEATURES, CLASSES, args.seed)
    data = {"arrays": arrays, "classes": CLASSES}
    print(f"Data: {args.train_rows:,} training and {args.val_rows:,} validation rows, {FEATURES} features, "
          f"{CLASSES} classes. Search: {args.num_samples} trials x {args.epochs} epochs")

    with cli.Timer() as timer:
        trials = run_search(space, data, args)
    if not trials:
        cli.fail("stopped before any trial reported an epoch; run the same command again (add --restore to continue)")

    tuning.print_trials(trials)  # one line per trial: its configuration, epochs run, best validation accuracy
    best = max(trials, key=lambda t: max(h["val_accuracy"] for h in t["history"]))
    best_epoch = max(best["history"], key=lambda h: h["val_accuracy"])
    best_checkpoint = best["best_checkpoint"]
    config = {k: best["config"][k] for k in tuning.HYPERPARAMETERS}
    epochs_run = sum(t["history"][-1]["epoch"] for t in trials)  # the epoch each trial reached
    stopped_early = sum(t["history"][-1]["epoch"] < args.epochs for t in trials)
    print(f"Best: val_accuracy {best_epoch['val_accuracy']:.4f} at epoch {best_epoch['epoch']} with {config}")
    print(f"Best checkpoint: {best_checkpoint}")
    print(f"Epochs run: {epochs_run} of {args.num_samples * args.epochs}; {stopped_early} trials stopped early")
    print(f"Work time: {timer.seconds:.2f} s")
    path = cli.write_result(
        args, seconds=timer.seconds,
        answer={"best_val_accuracy": best_epoch["val_accuracy"],  # and the sampler's seeded first draws, in order:
                "first_configs": [{k: t["config"][k] for k in tuning.HYPERPARAMETERS} for t in trials[:10]]},
        best_config=config, best_epoch=best_epoch["epoch"], best_checkpoint=best_checkpoint,
        trials=[{k: t[k] for k in ("trial_id", "config", "history")} for t in trials],
        trials_stopped_early=stopped_early, epochs_run=epochs_run, epochs_budget=args.num_samples * args.epochs,
        num_samples=args.num_samples, epochs=args.epochs, train_rows=args.train_rows,
        val_rows=args.val_rows,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
