"""Train an MLP classifier in one process with plain PyTorch: held-out validation, a checkpoint per epoch, --resume.

The data is a generated multi-class tabular problem (workshop/data.py). Every epoch trains on
shuffled mini-batches, measures loss and accuracy on the held-out split, and writes a checkpoint folder;
`--resume FOLDER` continues from such a folder.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_train/README.md):

    diff -u ray_train/baseline/train_classifier.py ray_train/ray_version/train_classifier.py
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from workshop import cli, data

CHECKPOINT_FILE = "checkpoint.pt"


def build_model(features: int, hidden: int, classes: int) -> nn.Module:
    """A three-layer MLP; the seed fixes its initial weights, so every run starts from the same model."""
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer) -> float:
    """One pass over the training batches; returns the mean training loss of the epoch."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    for X, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        count += len(y)
    return total / count


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> torch.Tensor:
    """Sums over the held-out batches: tensor([loss sum, correct predictions, examples])."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for X, y in loader:
        logits = model(X)
        sums += torch.tensor([
            nn.functional.cross_entropy(logits, y, reduction="sum").item(),
            (logits.argmax(dim=1) == y).sum().item(),
            len(y),
        ], dtype=torch.float64)
    return sums


def save_checkpoint(folder: Path, model: nn.Module, optimizer, epoch: int, history: list[dict]) -> None:
    """A checkpoint is a plain folder: model and optimizer state, the finished epoch, the metrics so far."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "history": history}
    torch.save(state, folder / CHECKPOINT_FILE)


def load_checkpoint(folder: Path) -> dict:
    return torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)  # tensors and plain values only


def check_checkpoint_folder(folder: Path) -> Path:
    """Fail with one line, before any training starts, if --resume does not name a readable checkpoint."""
    if not folder.is_dir():
        cli.fail(f"--resume {folder}: no such checkpoint folder; pass a folder that holds {CHECKPOINT_FILE}")
    try:
        state = load_checkpoint(folder)
        state["model"], state["epoch"]
    except Exception as exc:  # any unreadable or foreign file: say so in one line
        cli.fail(f"--resume {folder}: cannot read {CHECKPOINT_FILE} ({type(exc).__name__}); "
                 "pass a checkpoint folder written by train_classifier.py")
    return folder.resolve()


def train_loop(config: dict) -> dict:
    """Train for config["epochs"] epochs, validating and checkpointing after each; returns the final metrics."""
    torch.manual_seed(config["seed"])
    X_train, y_train, X_val, y_val = data.make_classification_split(
        config["rows"], config["features"], config["classes"], config["seed"])
    train_set = TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train))
    shuffle = torch.Generator()
    train_loader = DataLoader(train_set, batch_size=config["batch_size"],
                              sampler=RandomSampler(train_set, generator=shuffle))  # the order: from `shuffle` only
    val_loader = DataLoader(TensorDataset(torch.from_numpy(X_val), torch.from_numpy(y_val)), batch_size=1024)

    model = build_model(config["features"], config["hidden"], config["classes"])
    state = load_checkpoint(config["resume_from"]) if config["resume_from"] else None
    if state is not None:
        model.load_state_dict(state["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])

    start_epoch, history = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"Resumed from {config['resume_from']}: continuing after epoch {start_epoch}", flush=True)

    for epoch in range(start_epoch, config["epochs"]):
        started = time.perf_counter()
        shuffle.manual_seed(config["seed"] * 1000 + epoch)  # the order of an epoch depends only on (seed, epoch)
        train_loss = train_epoch(model, train_loader, optimizer)
        train_seconds = time.perf_counter() - started
        val_loss_sum, correct, count = evaluate(model, val_loader).tolist()
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss_sum / count,
                   "val_accuracy": correct / count, "train_seconds": train_seconds}
        save_checkpoint(Path(config["checkpoint_dir"]) / f"epoch_{epoch + 1:03d}", model, optimizer,
                        epoch + 1, history + [{**metrics, "epoch_seconds": time.perf_counter() - started}])
        metrics["epoch_seconds"] = time.perf_counter() - started
        history.append(metrics)
        print(f"epoch {epoch + 1}/{config['epochs']}  train loss {train_loss:.4f}  val loss {metrics['val_loss']:.4f}"
              f"  val accuracy {metrics['val_accuracy']:.4f}  ({metrics['epoch_seconds']:.1f} s)", flush=True)
    return summarize(history)


def summarize(history: list[dict]) -> dict:
    """The final metrics of a run, from its per-epoch history."""
    last = history[-1]
    return {
        "epochs": last["epoch"], "val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"],
        "first_train_loss": history[0]["train_loss"], "train_loss": last["train_loss"],
        "loss_fell": last["train_loss"] < history[0]["train_loss"],
        "train_losses": [h["train_loss"] for h in history], "val_losses": [h["val_loss"] for h in history],
        "train_seconds_per_epoch": sum(h["train_seconds"] for h in history) / len(history),
        "loop_seconds": sum(h["epoch_seconds"] for h in history),
    }


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--rows", type=cli.positive_int, default=200_000, help="examples (20%% held out)")
    parser.add_argument("--features", type=cli.positive_int, default=64, help="input features")
    parser.add_argument("--classes", type=cli.positive_int, default=8, help="classes")
    parser.add_argument("--hidden", type=cli.positive_int, default=256, help="hidden units per layer")
    parser.add_argument("--epochs", type=cli.positive_int, default=5, help="passes over the training split")
    parser.add_argument("--batch-size", type=cli.positive_int, default=256, help="examples per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--resume", type=Path, default=None, metavar="FOLDER",
                        help="continue from this checkpoint folder (one written by an earlier run, of either side)")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.epochs, args.hidden = 16_000, 6, 64
    if args.classes < 2:
        parser.error("--classes must be at least 2")
    resume_from = check_checkpoint_folder(args.resume) if args.resume else None
    output = cli.prepare_output(args.output)

    config = {
        "rows": args.rows, "features": args.features, "classes": args.classes, "hidden": args.hidden,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "resume_from": str(resume_from) if resume_from else None,
        "checkpoint_dir": str(output.resolve() / "checkpoints"),
    }
    print(f"Training an MLP on {args.rows:,} examples x {args.features} features, {args.classes} classes, "
          f"{args.epochs} epochs, batch {args.batch_size}, in one process ({torch.get_num_threads()} torch threads)")

    with cli.Timer() as timer:
        final = train_loop(config)

    print(f"Held-out accuracy {final['val_accuracy']:.4f}, training loss {final['first_train_loss']:.4f} -> "
          f"{final['train_loss']:.4f}; {final['train_seconds_per_epoch']:.2f} s of training per epoch")
    print(f"Work time: {final['loop_seconds']:.2f} s for the epochs (whole loop {timer.seconds:.2f} s)")
    path = cli.write_result(
        args, seconds=final["loop_seconds"],
        answer={k: final[k] for k in ("epochs", "train_losses", "val_losses", "val_accuracy")},
        **final, workers=1, torch_threads=torch.get_num_threads(), batch_size=args.batch_size, lr=args.lr,
        resumed_from=config["resume_from"], checkpoint=str(Path(config["checkpoint_dir"]) / f"epoch_{final['epochs']:03d}"),
    )
    print(f"Checkpoints: {config['checkpoint_dir']}")
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
