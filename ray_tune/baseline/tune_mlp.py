"""Hyperparameter search for a small PyTorch MLP without Ray: Optuna with a pruner, one trial after another.

Both sides run the same search: the same search space and number of trials, Optuna's TPE sampler proposing each
configuration from the scores so far, and successive halving (ASHA's rule) stopping the trials that fall behind.
The baseline runs one trial after another. Ray Tune runs the trials in parallel, continues a stopped search with
--restore, and restarts a trial whose process died from its last checkpoint.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_tune/README.md):

    diff -u ray_tune/baseline/tune_mlp.py ray_tune/ray_version/tune_mlp.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from torch import nn

from workshop import cli, tuning
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


def train_mlp(config: dict, data: dict, report) -> None:
    """One trial: train one configuration and report each epoch's metrics."""
    X_train, y_train, X_val, y_val = (torch.tensor(a) for a in data["arrays"])
    torch.manual_seed(config["seed"])
    model = make_model(X_train.shape[1], config["width"], data["classes"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    for epoch in range(config["epochs"]):
        train_loss = train_epoch(model, optimizer, X_train, y_train, config["batch_size"], config["seed"], epoch)
        val_loss, val_accuracy = evaluate(model, X_val, y_val)
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        report(metrics, model)  # the pruner may stop the trial here


def search_space(space: dict) -> dict:
    """The search space as Optuna's distributions (randint: high excluded); the sampler draws from these."""
    samplers = {"uniform": FloatDistribution, "choice": CategoricalDistribution,  # Optuna's distributions
                "loguniform": lambda low, high: FloatDistribution(low, high, log=True),
                "randint": lambda low, high: IntDistribution(low, high - 1),
                "lograndint": lambda low, high: IntDistribution(low, high - 1, log=True)}
    return {name: spec if not isinstance(spec, dict)  # a fixed value stays fixed
            else samplers["choice"](spec["values"]) if spec["type"] == "choice"
            else samplers[spec["type"]](spec["low"], spec["high"])
            for name, spec in space.items()}


def run_search(space: dict, data: dict, args) -> list[dict]:
    """The search: TPE picks each next configuration, successive halving stops the weak trials early."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no log line per trial: the table below says it all
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),  # = ASHA's settings
    )
    space = search_space(space)
    sampled = {name: d for name, d in space.items() if isinstance(d, BaseDistribution)}
    trials = []
    for _ in range(args.num_samples):
        trial = study.ask(sampled)  # the sampler proposes a configuration
        config = {**space, **trial.params, "epochs": args.epochs, "seed": args.seed}
        record, started = {"trial_id": str(trial.number), "config": config, "history": []}, time.perf_counter()
        trials.append(record)

        def report(metrics: dict, model: nn.Module) -> None:  # record the epoch, keep the best weights, prune?
            if metrics["val_accuracy"] > max((h["val_accuracy"] for h in record["history"]), default=-1.0):
                record["best_state"] = {k: v.clone() for k, v in model.state_dict().items()}
            record["history"].append({**metrics, "timestamp": time.time(),  # and when, as Tune records it
                                      "time_total_s": time.perf_counter() - started})
            trial.report(metrics["val_accuracy"], step=metrics["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            train_mlp(config, data, report)
            study.tell(trial, max(h["val_accuracy"] for h in record["history"]))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"Trial {record['trial_id']} finished", flush=True)
    return trials


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--num-samples", type=cli.positive_int, default=16, help="trials (configurations) to try")
    parser.add_argument("--epochs", type=cli.positive_int, default=20, help="epochs per trial at most")
    parser.add_argument("--train-rows", type=cli.positive_int, default=20_000, help="rows in the training set")
    parser.add_argument("--val-rows", type=cli.positive_int, default=5_000, help="rows in the validation set")
    parser.add_argument("--search-space", type=Path, default=None,
                        help="JSON file with the search space (default: SEARCH_SPACE in this file)")
    args = parser.parse_args()
    if args.smoke_test:
        args.num_samples, args.epochs, args.train_rows, args.val_rows = 4, 4, 1_500, 500
    space = SEARCH_SPACE
    if args.search_space is not None:
        if not args.search_space.is_file():
            cli.fail(f"search space file {args.search_space} not found; pass an existing JSON file")
        try:
            space = tuning.load_search_space(args.search_space)
        except ValueError as exc:
            parser.error(str(exc))
    cli.prepare_output(args.output)

    arrays = make_classification_problem(args.train_rows, args.val_rows, FEATURES, CLASSES, args.seed)
    data = {"arrays": arrays, "classes": CLASSES}
    print(f"Data: {args.train_rows:,} training and {args.val_rows:,} validation rows, {FEATURES} features, "
          f"{CLASSES} classes. Search: {args.num_samples} trials x {args.epochs} epochs")

    with cli.Timer() as timer:
        trials = run_search(space, data, args)

    tuning.print_trials(trials)  # one line per trial: its configuration, epochs run, best validation accuracy
    best = max(trials, key=lambda t: max(h["val_accuracy"] for h in t["history"]))
    best_epoch = max(best["history"], key=lambda h: h["val_accuracy"])
    best_checkpoint = str(args.output / "best_model.pt")
    torch.save(best["best_state"], best_checkpoint)
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
