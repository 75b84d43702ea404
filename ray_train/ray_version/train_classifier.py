"""Train an MLP classifier with Ray Train: N workers, held-out validation, a checkpoint per epoch, --resume, recovery.

The data is a generated multi-class tabular problem (workshop/data.py). Every epoch trains on
shuffled mini-batches, measures loss and accuracy on the held-out split, and writes a checkpoint folder;
`--resume FOLDER` continues from such a folder.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_train/README.md):

    diff -u ray_train/baseline/train_classifier.py ray_train/ray_version/train_classifier.py
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from workshop import cli, data, ray_connect

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
    model = model.module if hasattr(model, "module") else model  # unwrap DDP: the same file as the baseline's
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


def train_loop(config: dict) -> None:
    """Runs in every Ray Train worker: train for config["epochs"] epochs, validating and checkpointing each."""
    log = logging.getLogger("train_classifier")  # in a worker, Ray Train sends log lines to the console once
    context = ray.train.get_context()  # [1] which worker this is (rank) and how many there are (world size)
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config["seed"])
    X_train, y_train, X_val, y_val = data.make_classification_split(
        config["rows"], config["features"], config["classes"], config["seed"])
    train_set = TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train))
    # [2] each worker takes every N-th example of the epoch's order, batch_size / N per step, so one step still
    # sees the baseline's batch; the order depends only on (seed, epoch), the same on every worker
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=config["seed"] * 1000)
    train_loader = DataLoader(train_set, batch_size=config["batch_size"] // world, sampler=sampler)
    train_loader = ray.train.torch.prepare_data_loader(train_loader)  # [2] batches on the worker's device
    val_loader = DataLoader(TensorDataset(torch.from_numpy(X_val[rank::world]), torch.from_numpy(y_val[rank::world])),
                            batch_size=1024)  # [3] each worker validates its own slice; the sums are added below
    val_loader = ray.train.torch.prepare_data_loader(val_loader, add_dist_sampler=False)

    model = build_model(config["features"], config["hidden"], config["classes"])
    checkpoint = ray.train.get_checkpoint()  # [4] set when Ray Train restarted the workers after a failure
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:  # a local copy, wherever the storage is
            state = load_checkpoint(folder)
    else:
        state = load_checkpoint(config["resume_from"]) if config["resume_from"] else None
    if state is not None:
        model.load_state_dict(state["model"])
    model = ray.train.torch.prepare_model(model)  # [5] DistributedDataParallel: gradients averaged every step
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])

    start_epoch, history = 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        if rank == 0:
            source = "the latest checkpoint after a worker failure" if checkpoint else config["resume_from"]
            log.info(f"Resumed from {source}: continuing after epoch {start_epoch}")

    for epoch in range(start_epoch, config["epochs"]):
        started = time.perf_counter()
        sampler.set_epoch(epoch)  # [2] the epoch's order: seed * 1000 + epoch, as the baseline's
        train_loss = train_epoch(model, train_loader, optimizer)
        train_seconds = time.perf_counter() - started
        sums = torch.cat([evaluate(model, val_loader), torch.tensor([train_loss], dtype=torch.float64)]).to(
            ray.train.torch.get_device())  # the collective runs where the worker runs (NCCL: on the GPU)
        torch.distributed.all_reduce(sums)  # [3] add up the workers' held-out sums (and training losses)
        val_loss_sum, correct, count, train_loss_sum = sums.tolist()
        train_loss = train_loss_sum / world  # the shards are equally long: the mean of the workers' means
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss_sum / count,
                   "val_accuracy": correct / count, "train_seconds": train_seconds}
        # only rank 0 writes a checkpoint: the models of all workers are identical
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_checkpoint(Path(tmp), model, optimizer, epoch + 1,
                                history + [{**metrics, "epoch_seconds": time.perf_counter() - started}])
            metrics["epoch_seconds"] = time.perf_counter() - started
            history.append(metrics)
            ray.train.report(summarize(history),  # [6] from every worker: metrics, and rank 0's checkpoint
                             checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
        if rank == 0:
            log.info(f"epoch {epoch + 1}/{config['epochs']}  train loss {train_loss:.4f}  val loss {metrics['val_loss']:.4f}"
                  f"  val accuracy {metrics['val_accuracy']:.4f}  ({metrics['epoch_seconds']:.1f} s)")


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
    parser.add_argument("--workers", type=cli.positive_int, default=2, help="Ray Train workers (1 CPU or GPU each)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL instead of gloo)")
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts Ray Train may make")
    parser.add_argument("--verbose", action="store_true", help="Ray Train's log lines on the console")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.epochs, args.hidden = 16_000, 6, 64
    if args.classes < 2:
        parser.error("--classes must be at least 2")
    if args.batch_size % args.workers:
        parser.error(f"--batch-size {args.batch_size} must be divisible by --workers {args.workers}")
    resume_from = check_checkpoint_folder(args.resume) if args.resume else None
    output = cli.prepare_output(args.output)
    storage = output.resolve() / "ray_results"  # absolute; on a cluster, a path every node can reach
    shutil.rmtree(storage / "train_classifier", ignore_errors=True)  # a re-run starts afresh (same name would auto-resume)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()  # [7] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    device = "GPU" if args.use_gpu else "CPU"
    have = ray.cluster_resources().get(device, 0)
    if have < args.workers:  # Ray Train 2.60 would wait for them: a start timeout per try, then a retry
        cli.fail(f"--workers {args.workers} needs {args.workers} {device}s and the Ray cluster has {have:g}; "
                 "pass fewer --workers, or add a node (`ray status` shows what there is)")

    config = {
        "rows": args.rows, "features": args.features, "classes": args.classes, "hidden": args.hidden,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "resume_from": str(resume_from) if resume_from else None,
    }
    print(f"Training an MLP on {args.rows:,} examples x {args.features} features, {args.classes} classes, "
          f"{args.epochs} epochs, batch {args.batch_size}, with {args.workers} Ray Train workers")

    trainer = ray.train.torch.TorchTrainer(  # [8] the same loop in N workers, with storage and fault tolerance
        train_loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=args.workers, use_gpu=args.use_gpu),
        run_config=ray.train.RunConfig(
            name="train_classifier",
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),  # the latest two epochs
            failure_config=ray.train.FailureConfig(max_failures=args.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="INFO" if args.verbose else "WARNING"),  # --verbose
        ),
    )
    with cli.Timer() as timer:
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:  # more worker failures than FailureConfig allows
            cli.fail(f"training failed after {args.max_failures} restart(s): {str(exc).splitlines()[-1][:300]}")
    final = result.metrics

    print(f"Held-out accuracy {final['val_accuracy']:.4f}, training loss {final['first_train_loss']:.4f} -> "
          f"{final['train_loss']:.4f}; {final['train_seconds_per_epoch']:.2f} s of training per epoch")
    print(f"Work time: {final['loop_seconds']:.2f} s for the epochs (whole trainer.fit {timer.seconds:.2f} s)")
    path = cli.write_result(
        args, seconds=final["loop_seconds"],
        answer={k: final[k] for k in ("epochs", "train_losses", "val_losses", "val_accuracy")},
        **final, workers=args.workers, batch_size=args.batch_size, lr=args.lr, resumed_from=config["resume_from"],
        fit_seconds=timer.seconds, checkpoint=result.checkpoint.path,
    )
    print(f"Checkpoints: {result.path}")
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
