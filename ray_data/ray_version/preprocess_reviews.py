"""Clean, enrich and embed product reviews from Parquet shards with Ray Data, streaming.

A typical ML preprocessing and batch-inference job: read every shard, drop bad rows (and keep them, with
the reason, in a small rejected/ output), add features with per-batch functions, embed each review with a
real sentence encoder (MiniLM) in batches, label it positive or negative by zero-shot sentiment, and write
the enriched rows to Parquet partitioned by star rating. Ray Data streams blocks through the steps on all
CPUs of the cluster, in one pass over the input, so the driver's memory stays flat however large the input.

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_data/README.md):

    diff -u ray_data/baseline/preprocess_reviews.py ray_data/ray_version/preprocess_reviews.py
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data.expressions import col
from tqdm import tqdm

from workshop import cli, models, ray_connect, reviews

REASONS = ("missing_text", "missing_rating", "rating_out_of_range", "too_short")  # checked in this order
MIN_WORDS = 3
SMOKE_ROWS = 256  # MiniLM costs milliseconds per review: 8 shards of 32, done in seconds
# Zero-shot sentiment: a review is "positive" when its embedding is closer (cosine) to the second description.
LABELS = {"negative": "a bad product, I am disappointed", "positive": "a good product, I am happy with it"}


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


def clean_reviews(batch: pd.DataFrame, rejected: Path) -> pd.DataFrame:
    """Normalise the text and tag every row with the reason it must be dropped (null: keep it).

    The rows to drop are also written, raw and with their reason, to one file in `rejected`, named after
    the batch's first rejected review: the same batch always gives the same file.
    """
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
    reason = pd.Series(reason, index=batch.index, dtype="str")
    bad = batch.assign(drop_reason=reason)[reason.notna()]
    if len(bad):
        rejected.mkdir(parents=True, exist_ok=True)
        bad.to_parquet(rejected / f"rejected-{bad['review_id'].iloc[0]:012d}.parquet", index=False)
    return batch.assign(text=text, drop_reason=reason)


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


class ReviewEncoder:
    """Embeds a batch of reviews with MiniLM and labels each by zero-shot sentiment. Loads the model once."""

    def __init__(self, model: str):
        self.encoder = models.SentenceEncoder(model)
        self.labels = self.encoder.embed(list(LABELS.values()))  # (2, dim) unit vectors

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = self.encoder.embed(batch["text"].to_pylist())  # (rows, dim) float32 unit vectors
        similarity = vectors @ self.labels.T  # cosine similarity to each label description
        score = similarity[:, 1] - similarity[:, 0]  # > 0: closer to "positive"
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.encoder.dim)
        return (batch.append_column("embedding", embedding)
                .append_column("sentiment", pa.array(np.where(score > 0, "positive", "negative")))
                .append_column("sentiment_score", pa.array(score)))


def read_shards(shards: list[Path]) -> ray.data.Dataset:
    """The whole dataset as a lazy Ray Dataset: a plan over blocks, nothing is read yet."""
    # Workaround (Ray 2.60, ray_data/README.md): the default (V2) Parquet reader merges small shards into one read
    # task and ignores override_num_blocks: one block, so one busy MiniLM actor. The V1 reader honours it.
    ray.data.DataContext.get_current().use_datasource_v2 = False
    paths = [str(s.resolve()) for s in shards]  # absolute: Ray workers do not run in your working directory
    return ray.data.read_parquet(paths, override_num_blocks=len(paths))  # [1] one read task and block per shard


def run_pipeline(shards: list[Path], model: str, batch_size: int, workers: int, out: Path,
                 rejected: Path) -> None:
    """Read -> clean (rejected rows to `rejected`) -> drop -> features -> embed and label -> write."""
    tagged = read_shards(shards).map_batches(  # [2] the baseline's function on each block, in tasks; each
        clean_reviews, fn_kwargs={"rejected": rejected.resolve()},  # writes its block's bad rows (side output)
        batch_format="pandas", batch_size=None)
    kept = tagged.filter(expr=col("drop_reason").is_null()).drop_columns(["drop_reason"])  # [3] Arrow filter
    features = kept.map_batches(add_features, batch_format="pandas", batch_size=None)
    embedded = features.map_batches(
        ReviewEncoder,  # [4] a class: each actor of the pool loads MiniLM once, embeds many batches
        fn_constructor_kwargs={"model": model},
        batch_size=batch_size,  # [4] reviews per MiniLM call; blocks are re-batched to this size
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,  # one CPU (and one torch thread) per actor; the other CPUs stay free for reading
    )
    embedded.write_parquet(  # [5] the write runs the whole plan, streaming, once
        str(out.resolve()), partition_cols=["rating"], mode=ray.data.SaveMode.OVERWRITE
    )


def count_rejected(rejected: Path) -> dict[str, int]:
    """Dropped rows by reason, from the small rejected/ output (one column of its files)."""
    found = pq.read_table(rejected, columns=["drop_reason"]) if rejected.is_dir() else None
    counts = found["drop_reason"].value_counts().to_pylist() if found else []
    dropped = {item["values"]: item["counts"] for item in counts}
    return {reason: int(dropped.get(reason, 0)) for reason in REASONS}


def partial_sums(batch: pd.DataFrame) -> pd.DataFrame:
    """Per-rating counts and sums of a batch of written rows: at most five rows, whatever the batch size."""
    batch = batch.assign(rating=batch["rating"].astype("int64"), positive=batch["sentiment"] == "positive",
                         sentiment_score=batch["sentiment_score"].astype("float64"))
    return batch.groupby("rating", as_index=False).agg(
        rows=("positive", "size"), positive=("positive", "sum"), n_words=("n_words", "sum"),
        n_chars=("n_chars", "sum"), avg_word_len=("avg_word_len", "sum"), sentiment_score=("sentiment_score", "sum"))


def summarize(out: Path) -> dict[str, float | int | dict]:
    """A compact digest of the written rows, read back from disk: what both sides must agree on."""
    names = ["rating", "n_words", "n_chars", "avg_word_len", "sentiment_score", "sentiment"]
    sums = partial_sums(pq.read_table(out, columns=names, partitioning="hive").to_pandas())
    by_rating = sums.groupby("rating").sum().sort_index()  # the sums of all batches, one row per rating
    return {
        "rows": int(by_rating["rows"].sum()),
        "sum_n_words": int(by_rating["n_words"].sum()),
        "sum_n_chars": int(by_rating["n_chars"].sum()),
        "sum_avg_word_len": float(by_rating["avg_word_len"].sum()),
        "mean_sentiment_score": float(by_rating["sentiment_score"].sum() / by_rating["rows"].sum()),
        "positive": int(by_rating["positive"].sum()),
        "rows_by_rating": {str(r): int(n) for r, n in by_rating["rows"].items()},
        "positive_by_rating": {str(r): int(n) for r, n in by_rating["positive"].items()},
    }


def first_error_line(exc: BaseException) -> str:
    """`KeyError: 'text'` out of an exception, also one re-raised from a Ray worker with its traceback."""
    for line in str(exc).splitlines():
        name = line.split(":")[0]
        if name.endswith(("Error", "Exception")) and not name.startswith("ray."):
            return line.strip()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def print_summary(answer: dict, dropped: dict[str, int], final: Path) -> tuple[int, dict]:
    """What a person wants to see: kept and dropped rows, and how the zero-shot sentiment tracks the stars."""
    rows = answer["rows"] + sum(dropped.values())
    print(f"Kept {answer['rows']:,} of {rows:,} rows; dropped: "
          + ", ".join(f"{reason} {count:,}" for reason, count in dropped.items()))
    share = {r: answer["positive_by_rating"][r] / n for r, n in answer["rows_by_rating"].items() if n}
    print("Zero-shot sentiment (cosine to two label descriptions), share labelled positive by stars: "
          + ", ".join(f"{r}: {s:.0%}" for r, s in share.items()))
    clear = [r for r in answer["rows_by_rating"] if r != "3"]  # 3 stars: neither positive nor negative
    agree = sum(answer["positive_by_rating"][r] if int(r) >= 4 else
                answer["rows_by_rating"][r] - answer["positive_by_rating"][r] for r in clear)
    total = sum(answer["rows_by_rating"][r] for r in clear)
    print(f"It agrees with the stars (1-2 negative, 4-5 positive) on {agree:,} of {total:,} reviews "
          f"({agree / max(total, 1):.0%}); output: {final}")
    return rows, {"input": "MiniLM zero-shot sentiment of the reviews vs their 1-2 and 4-5 star ratings",
                  "output": f"agrees on {agree:,} of {total:,} ({agree / max(total, 1):.0%})"}


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--input", type=Path, default=None,
                        help="folder of Parquet shards (default: generate --rows reviews, once)")
    parser.add_argument("--rows", type=cli.positive_int, default=20_000,
                        help="reviews to generate when --input is not given (generation is not timed)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32, help="reviews per MiniLM call")
    parser.add_argument("--model", default=None,
                        help="sentence encoder: a local model folder or a hub id (default: the packaged MiniLM)")
    parser.add_argument("--workers", type=cli.positive_int, default=None,
                        help="MiniLM actors (default: half the cluster's CPUs, at least 1)")
    parser.add_argument("--verbose", action="store_true", help="Ray Data's log lines on the console")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows = SMOKE_ROWS
    output = cli.prepare_output(args.output)
    model = models.resolve_encoder(args.model)
    model_name = models.display_name(model) if args.model else models.ENCODER_NAME
    if args.input is None:
        args.input = reviews.cached_dataset(args.rows, args.seed, progress=lambda s: tqdm(s, desc="generate"))
    shards = find_shards(args.input)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()  # [6] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    logging.getLogger("ray.data").setLevel(logging.INFO if args.verbose else logging.WARNING)  # its plans, timings
    cpus = int(ray.cluster_resources().get("CPU", 1))  # [7] an actor pool that holds every CPU would hang:
    workers = args.workers or max(1, cpus // 2)  # no read task could ever run
    if workers >= cpus:
        cli.fail(f"--workers {workers} would take all {cpus} Ray CPUs and leave none for reading; "
                 f"use at most {cpus - 1}", code=2)
    print(f"Input: {len(shards)} shards in {args.input}, model {model_name}, "
          f"batch size {args.batch_size}, {workers} MiniLM actor(s) on {cpus} Ray CPUs")
    final = {name: output / name for name in ("reviews", "rejected")}
    tmp = {name: output / f"{name}.tmp-{os.getpid()}" for name in final}
    try:
        with cli.Timer() as timer:
            run_pipeline(shards, model, args.batch_size, workers, tmp["reviews"], tmp["rejected"])
        dropped = count_rejected(tmp["rejected"])  # from the side output: no second pass over the input
        answer = {**summarize(tmp["reviews"]), "dropped": dropped}
    except (OSError, ValueError, pa.ArrowException, MemoryError, ray.exceptions.RayError) as exc:
        for folder in tmp.values():  # nothing half-written is left behind
            shutil.rmtree(folder, ignore_errors=True)
        cli.fail(f"pipeline failed: {first_error_line(exc)}")
    for name in final:  # each folder appears complete, or not at all
        shutil.rmtree(final[name], ignore_errors=True)
        if tmp[name].is_dir():
            os.replace(tmp[name], final[name])

    rows, example = print_summary(answer, dropped, final["reviews"])
    print(f"Work time: {timer.seconds:.2f} s ({rows / timer.seconds:,.0f} rows/s)")
    path = cli.write_result(
        args, seconds=timer.seconds,
        answer=answer, input=str(args.input), shards=len(shards), input_rows=rows,
        rows_per_second=rows / timer.seconds, batch_size=args.batch_size, model=model_name,
        workers=workers,
        example=example,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
