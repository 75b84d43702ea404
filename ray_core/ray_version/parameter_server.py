"""Data-parallel training with a parameter server, on Ray actors.

A logistic-regression model is trained with synchronous SGD. Each data worker owns one shard of the
training data (its state) and computes gradients on minibatches of it; one parameter server owns the
weights and applies the averaged gradients. Both are long-lived objects with state, living in their own
processes: Ray actors, which Ray places on any node of the cluster and restarts when their process dies.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_core/README.md):

    diff -u ray_core/baseline/parameter_server.py ray_core/ray_version/parameter_server.py
"""

from __future__ import annotations

import numpy as np
import ray
from tqdm import tqdm

from workshop import cli, data, ray_connect


def logistic_gradient(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the mean log-loss. Explicit sums, not BLAS, so every process gets the same bits."""
    probabilities = 1.0 / (1.0 + np.exp(-(X * weights).sum(axis=1)))
    return ((probabilities - y)[:, None] * X).sum(axis=0) / len(y)


def evaluate(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and mean log-loss on held-out data."""
    probabilities = np.clip(1.0 / (1.0 + np.exp(-(X * weights).sum(axis=1))), 1e-12, 1 - 1e-12)
    log_loss = -np.mean(y * np.log(probabilities) + (1 - y) * np.log(1 - probabilities))
    return {"accuracy": float(np.mean((probabilities > 0.5) == y)), "log_loss": float(log_loss)}


class ParameterServer:
    """Holds the model weights; applies the average of the workers' gradients, in worker order."""

    def __init__(self, dim: int, learning_rate: float):
        self.weights = np.zeros(dim)
        self.learning_rate = learning_rate

    def apply_gradients(self, *gradients: np.ndarray) -> None:
        self.weights = self.weights - self.learning_rate * np.mean(gradients, axis=0)

    def get_weights(self) -> np.ndarray:
        return self.weights


class DataWorker:
    """Owns one shard of the training data and computes minibatch gradients on it.

    The shard is generated here, inside the worker process, so the data never travels. The minibatch
    of a step depends only on (seed, shard, step), so a restarted worker picks exactly the same one.
    """

    def __init__(self, shard: int, rows: int, dim: int, batch_size: int, seed: int):
        self.shard, self.batch_size, self.seed = shard, batch_size, seed
        self.X, self.y = data.make_classification_shard(rows, dim, seed, shard)

    def compute_gradient(self, weights: np.ndarray, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.shard, step])
        batch = rng.choice(len(self.y), size=self.batch_size, replace=False)
        return logistic_gradient(weights, self.X[batch], self.y[batch])


# [1] The same classes become actors. A restarted actor runs __init__ again (rebuilding its shard from the
# seed) and the call that was in flight when its process died is sent again, to the new process.
RemoteParameterServer = ray.remote(ParameterServer)
RemoteDataWorker = ray.remote(max_restarts=2, max_task_retries=2)(DataWorker)


def train(num_workers, rows_per_worker, dim, batch_size, steps, learning_rate, seed):
    """Run synchronous SGD; return the final weights."""
    server = RemoteParameterServer.remote(dim, learning_rate)  # [2] each actor gets a process of its own
    workers = [RemoteDataWorker.remote(shard, rows_per_worker, dim, batch_size, seed) for shard in range(num_workers)]
    for step in tqdm(range(steps), desc="steps", unit="step"):
        weights = server.get_weights.remote()  # [3] an ObjectRef: the weights go to the workers, not the driver
        gradients = [worker.compute_gradient.remote(weights, step) for worker in workers]  # all in parallel
        ray.get(server.apply_gradients.remote(*gradients))  # [4] Ray resolves the refs; wait for the step
    return ray.get(server.get_weights.remote())


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--workers", type=cli.positive_int, default=2, help="data workers (one shard each)")
    parser.add_argument("--rows-per-worker", type=cli.positive_int, default=200_000, help="rows in each shard")
    parser.add_argument("--dim", type=cli.positive_int, default=64, help="number of features")
    parser.add_argument("--batch-size", type=cli.positive_int, default=4096, help="minibatch rows per worker and step")
    parser.add_argument("--steps", type=cli.positive_int, default=200, help="synchronous SGD steps")
    parser.add_argument("--learning-rate", type=float, default=0.5, help="SGD learning rate")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows_per_worker, args.dim, args.batch_size, args.steps = 5_000, 16, 256, 30
    if args.batch_size > args.rows_per_worker:
        parser.error(f"--batch-size ({args.batch_size}) cannot exceed --rows-per-worker ({args.rows_per_worker})")
    cli.prepare_output(args.output)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()  # [5] start Ray on this machine, or join the cluster named by RAY_ADDRESS

    print(f"Training: {args.workers} workers x {args.rows_per_worker:,} rows, {args.dim} features, "
          f"{args.steps} steps of {args.batch_size} rows per worker")
    with cli.Timer() as timer:
        weights = train(
            args.workers, args.rows_per_worker, args.dim, args.batch_size, args.steps, args.learning_rate, args.seed
        )
    X_test, y_test = data.make_classification_shard(20_000, args.dim, args.seed, data.HELD_OUT_SHARD)
    metrics = evaluate(weights, X_test, y_test)

    print(f"Held-out accuracy {metrics['accuracy']:.4f}, log-loss {metrics['log_loss']:.4f}")
    print(f"Work time: {timer.seconds:.2f} s")
    path = cli.write_result(
        args, seconds=timer.seconds,
        answer={**metrics, "weights": weights.tolist()},
        workers=args.workers, steps=args.steps,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
