"""Clean, enrich and score product reviews from Parquet shards with Ray Data, streaming.

A typical ML preprocessing and batch-inference job: read every shard, drop bad rows (and count why),
add features with per-batch functions, score each review with a small PyTorch sentiment model in
batches, and write the enriched rows to Parquet partitioned by star rating. Ray Data streams blocks
through the steps on all CPUs of the cluster, so the driver's memory stays flat however large the input.

Twin: ray_data/baseline/preprocess_reviews.py (diff the two files to see the Ray changes; the numbered
comments [1]..[9] are explained in ray_data/README.md).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch
from ray.data.aggregate import Count, Sum, ValueCounter
from ray.data.expressions import col
from tqdm import tqdm

from workshop import cli, reviews

MODULE, PAIR, SIDE = "ray_data", "preprocess_reviews", "ray_version"
REASONS = ("missing_text", "missing_rating", "rating_out_of_range", "too_short")  # checked in this order
MIN_WORDS = 3


def find_shards(folder: Path) -> list[Path]:
    """Every Parquet shard in `folder`, each checked for the expected columns and types (footers only)."""
    if not folder.is_dir():
        cli.fail(f"input folder {folder} does not exist; make one with: python ray_data/generate_reviews.py")
    shards = sorted(folder.glob("*.parquet"))
    if not shards:
        cli.fail(f"input folder {folder} holds no *.parquet shards")
    for shard in shards:
        try:
            schema = pq.read_schema(shard)
        except (OSError, pa.ArrowException) as exc:
            cli.fail(f"shard {shard}: not a readable Parquet file ({str(exc).splitlines()[0]})")
        for name, kind in reviews.COLUMNS.items():
            if name not in schema.names:
                cli.fail(f"shard {shard}: missing column '{name}'")
            found = schema.field(name).type
            if not (pa.types.is_integer(found) if kind == "integer" else pa.types.is_string(found)):
                cli.fail(f"shard {shard}: column '{name}' has type {found}, expected {kind}")
    return shards


def clean_reviews(batch: pd.DataFrame) -> pd.DataFrame:
    """Normalise the text and tag every row with the reason it must be dropped (null: keep it)."""
    # One set of dtypes whoever read the batch: pandas gives NumPy columns, Ray Data Arrow-backed ones.
    batch = batch.astype({"review_id": "int64", "product_id": "int64", "helpful_votes": "int64",
                          "rating": "float64", "text": "str"})
    text = (
        batch["text"].str.lower()
        .str.replace(r"<[^>]+>", " ", regex=True)  # HTML line breaks
        .str.replace(r"[^a-z0-9 ]+", "", regex=True)  # punctuation
        .str.replace(r" {2,}", " ", regex=True)
        .str.strip()
    )
    rating = batch["rating"]
    reason = np.select(
        [batch["text"].isna(), rating.isna(), ~rating.between(1, 5), text.str.count(" ") + 1 < MIN_WORDS],
        REASONS,
        default=None,
    )
    return batch.assign(text=text, drop_reason=pd.Series(reason, index=batch.index, dtype="str"))


def add_features(batch: pd.DataFrame) -> pd.DataFrame:
    """Per-row features of the cleaned text (the batch holds only rows that passed validation)."""
    n_words = batch["text"].str.count(" ") + 1
    n_chars = batch["text"].str.len()
    return batch.assign(
        rating=batch["rating"].astype("int64"),
        n_words=n_words.astype("int64"),
        n_chars=n_chars.astype("int64"),
        avg_word_len=(n_chars - n_words + 1) / n_words,
        helpful_log=np.log1p(batch["helpful_votes"].astype("float64")),
    )


class ReviewClassifier:
    """Scores a batch of reviews with the sentiment model. The model is built (loaded) once, in __init__."""

    def __init__(self, seed: int):
        self.model = reviews.build_model(seed)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        ids, offsets = reviews.encode(batch["text"])
        numeric = np.stack([batch["n_words"] / 50.0, batch["helpful_log"]], axis=1)
        numeric = torch.tensor(numeric, dtype=torch.float32)
        with torch.inference_mode():
            p_positive = self.model(ids, offsets, numeric).numpy()
        return batch.assign(p_positive=p_positive, predicted_positive=p_positive >= 0.5)


def read_shards(shards: list[Path]) -> ray.data.Dataset:
    """The whole dataset as a lazy Ray Dataset: a plan over blocks, nothing is read yet."""
    # Ray 2.60's default (V2) Parquet reader planned a single read task for a few hundred MB of shards here and
    # ignored override_num_blocks: one block, no parallelism, no streaming. The V1 reader honours it.
    ray.data.DataContext.get_current().use_datasource_v2 = False
    paths = [str(s.resolve()) for s in shards]  # absolute: Ray workers do not run in your working directory
    return ray.data.read_parquet(paths, override_num_blocks=len(paths))  # [2] one read task and block per shard


def run_pipeline(shards: list[Path], seed: int, batch_size: int, workers: int, out: Path) -> dict[str, int]:
    """Read -> clean -> drop -> features -> inference -> write. Returns the dropped-row counts by reason."""
    tagged = read_shards(shards).map_batches(clean_reviews, batch_format="pandas", batch_size=None)  # [3]
    kept = tagged.filter(expr=col("drop_reason").is_null()).drop_columns(["drop_reason"])  # [4] Arrow filter
    features = kept.map_batches(add_features, batch_format="pandas", batch_size=None)
    scored = features.map_batches(
        ReviewClassifier,  # [5] a class: each actor of the pool builds the model once, scores many batches
        fn_constructor_kwargs={"seed": seed},
        batch_size=batch_size,  # [6] rows per model call; blocks are re-batched to this size
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,  # one CPU (and one torch thread) per actor; the other CPUs stay free for reading
    )
    scored.write_parquet(  # [7] the write runs the whole plan, streaming
        str(out.resolve()), partition_cols=["rating"], mode=ray.data.SaveMode.OVERWRITE
    )
    dropped = tagged.select_columns(["drop_reason"]).aggregate(ValueCounter(on="drop_reason"))  # [8] 2nd pass
    dropped = dict(zip(*dropped["value_counter(drop_reason)"].values()))
    return {reason: int(dropped.get(reason, 0)) for reason in REASONS}


def summarize(out: Path) -> dict[str, float | int]:
    """A compact digest of the written rows, read back from disk: what both sides must agree on."""
    names = ["n_words", "n_chars", "avg_word_len", "p_positive", "predicted_positive"]
    written = ray.data.read_parquet(str(out.resolve())).select_columns(names)
    sums = written.aggregate(Count(), *(Sum(name, alias_name=name) for name in names))  # [9] sums, not rows
    return {
        "rows": int(sums["count()"]),
        "sum_n_words": int(sums["n_words"]),
        "sum_n_chars": int(sums["n_chars"]),
        "sum_avg_word_len": float(sums["avg_word_len"]),
        "sum_p_positive": float(sums["p_positive"]),
        "predicted_positive": int(sums["predicted_positive"]),
    }


def first_error_line(exc: BaseException) -> str:
    """`KeyError: 'text'` out of an exception, also one re-raised from a Ray worker with its traceback."""
    for line in str(exc).splitlines():
        name = line.split(":")[0]
        if name.endswith(("Error", "Exception")) and not name.startswith("ray."):
            return line.strip()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--input", type=Path, default=None,
                        help="folder of Parquet shards (default: generate --rows reviews, once)")
    parser.add_argument("--rows", type=cli.positive_int, default=4_000_000,
                        help="reviews to generate when --input is not given (generation is not timed)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=4096, help="rows per inference batch")
    parser.add_argument("--workers", type=cli.positive_int, default=None,
                        help="inference actors (default: half the cluster's CPUs, at least 1)")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows = 5_000
    output = cli.prepare_output(args.output)
    if args.input is None:
        args.input = reviews.cached_dataset(args.rows, args.seed, progress=lambda s: tqdm(s, desc="generate"))
    shards = find_shards(args.input)

    started = time.perf_counter()
    with cli.ray_errors():  # one clear line, not a traceback or a long wait, if the cluster is unreachable
        ray.init()  # [1] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    startup = time.perf_counter() - started
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = args.workers or max(1, cpus // 2)
    if workers >= cpus:  # the actors would hold every CPU and the reading tasks could never run: a hang
        cli.fail(f"--workers {workers} would take all {cpus} Ray CPUs and leave none for reading; "
                 f"use at most {cpus - 1}", code=2)
    print(f"Input: {len(shards)} shards in {args.input}, batch size {args.batch_size}, "
          f"{workers} inference actor(s) on {cpus} Ray CPUs")
    final, tmp = output / "reviews", output / f"reviews.tmp-{os.getpid()}"
    try:
        with cli.Timer() as timer:
            dropped = run_pipeline(shards, args.seed, args.batch_size, workers, tmp)
        answer = {**summarize(tmp), "dropped": dropped}
    except (OSError, ValueError, pa.ArrowException, MemoryError, ray.exceptions.RayError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        cli.fail(f"pipeline failed: {first_error_line(exc)}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)  # the folder appears complete, or not at all

    rows = answer["rows"] + sum(dropped.values())
    print(f"Kept {answer['rows']:,} of {rows:,} rows; dropped: "
          + ", ".join(f"{reason} {count:,}" for reason, count in dropped.items()))
    print(f"{answer['predicted_positive']:,} reviews scored positive; output: {final}")
    print(f"Work time: {timer.seconds:.2f} s ({rows / timer.seconds:,.0f} rows/s; "
          f"Ray start-up {startup:.1f} s, not included)")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer=answer, input=str(args.input), shards=len(shards), input_rows=rows,
        rows_per_second=rows / timer.seconds, batch_size=args.batch_size,
        workers=workers, startup_seconds=startup,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
