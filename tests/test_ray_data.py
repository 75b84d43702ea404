"""ray_data specifics: both Parquet outputs hold the same rows with the same values (MiniLM embeddings within
a float tolerance), the rejected rows and their counts are right, a re-run replaces the output, and bad input
is one clear line with nothing half-written left."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from helpers import base_env, last_line, read_result, run
from tools.tour import SIDES
from workshop import reviews

SCRIPT = "ray_data/{side}/preprocess_reviews.py"
SMOKE_ROWS = 256  # as --smoke-test: MiniLM costs milliseconds per review
SHARDS = 8
# MiniLM runs on differently composed batches on the two sides (other padding lengths, other thread counts), so
# float32 results differ in the last bits: measured up to about 1e-6; 1e-4 leaves room and still catches a
# wrong model, text or pooling (those move embeddings by 1e-2 and more).
EMBEDDING_TOL = 1e-4


def read_output(folder):
    """Every written row (the rating comes back from the hive partition folders), sorted by review_id."""
    table = pads.dataset(folder, format="parquet", partitioning="hive").to_table()
    rating = table.schema.get_field_index("rating")
    table = table.set_column(rating, "rating", table["rating"].cast(pa.int64()))
    return table.sort_by("review_id").to_pandas()


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "reviews"
    return reviews.write_dataset(folder, SMOKE_ROWS, seed=0, rows_per_shard=SMOKE_ROWS // SHARDS)


@pytest.fixture(scope="module")
def outputs(ray_cluster, smoke_data, tmp_path_factory):
    """Both sides run once on the same shards, the Ray side with two MiniLM actors (so batches are made up
    differently from the baseline's). Each output folder starts with a stale partition from an 'earlier
    run', which a re-run must remove."""
    folders = {}
    for side in SIDES:
        out = tmp_path_factory.mktemp(side)
        stale = out / "reviews" / "rating=9"
        stale.mkdir(parents=True)
        pq.write_table(pa.table({"review_id": [-1]}), stale / "old.parquet")
        env, extra = (ray_cluster.env(base_env()), ["--workers", "2"]) if side == "ray_version" else (base_env(), [])
        proc = run(SCRIPT.format(side=side), "--input", smoke_data, "--output", out, *extra, env=env, timeout=240)
        assert proc.returncode == 0, f"{side}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        folders[side] = out
    return folders


@pytest.mark.ray_cluster
@pytest.mark.timeout(300)
def test_outputs_hold_the_same_rows_with_the_same_values(outputs):
    base, ray = (read_output(outputs[side] / "reviews") for side in SIDES)
    assert len(base) > 0.9 * SMOKE_ROWS
    assert list(base.columns) == list(ray.columns)
    assert base["review_id"].tolist() == ray["review_id"].tolist()
    assert base["review_id"].is_unique
    assert pq.read_schema(next((outputs["ray_version"] / "reviews").rglob("*.parquet"))).field(
        "embedding").type == pa.list_(pa.float32(), 384), "the embedding is not a fixed-size list<float32>[384]"
    for name in base.columns:
        if name == "embedding":
            np.testing.assert_allclose(np.stack(ray[name]), np.stack(base[name]), rtol=0, atol=EMBEDDING_TOL)
            np.testing.assert_allclose(np.linalg.norm(np.stack(ray[name]), axis=1), 1.0, atol=1e-5)
        elif name == "sentiment_score":  # a difference of two cosines of those embeddings
            np.testing.assert_allclose(ray[name], base[name], rtol=0, atol=2 * EMBEDDING_TOL)
        elif base[name].dtype.kind == "f":
            np.testing.assert_allclose(ray[name], base[name], rtol=1e-12, atol=0)
        else:
            assert base[name].tolist() == ray[name].tolist(), f"column {name} differs"
    assert -1 not in ray["review_id"].tolist(), "the stale partition of an earlier run is still there"
    for side in SIDES:
        partitions = sorted(p.name for p in (outputs[side] / "reviews").iterdir())
        assert partitions == [f"rating={r}" for r in range(1, 6)]
        assert sorted(p.name for p in outputs[side].iterdir()) == ["rejected", "result.json", "reviews"]


@pytest.mark.ray_cluster
@pytest.mark.timeout(300)
def test_dropped_counts_match_the_raw_data(outputs, smoke_data):
    raw = pq.read_table(smoke_data).to_pandas()
    missing_text = raw["text"].isna()
    missing_rating = ~missing_text & raw["rating"].isna()
    out_of_range = ~missing_text & ~missing_rating & ~raw["rating"].between(1, 5)
    results = {side: read_result(outputs[side]) for side in SIDES}
    for side, result in results.items():
        rejected = pq.read_table(outputs[side] / "rejected").to_pandas().sort_values("review_id")
        kept = set(read_output(outputs[side] / "reviews")["review_id"])
        assert set(rejected["review_id"]) == set(raw["review_id"]) - kept, side  # every input row once
        assert rejected["review_id"].is_unique, side
        assert rejected["drop_reason"].value_counts().to_dict() == {k: v for k, v in
                                                                    result["answer"]["dropped"].items() if v}
        dropped = result["answer"]["dropped"]
        assert dropped["missing_text"] == missing_text.sum() > 0, side
        assert dropped["missing_rating"] == missing_rating.sum() > 0, side
        assert dropped["rating_out_of_range"] == out_of_range.sum() > 0, side
        assert dropped["too_short"] > 0, side
        assert result["answer"]["rows"] + sum(dropped.values()) == SMOKE_ROWS, side
        assert result["details"]["model"] == "all-MiniLM-L6-v2", side
    assert results["baseline"]["answer"]["dropped"] == results["ray_version"]["answer"]["dropped"]


@pytest.mark.ray_cluster
@pytest.mark.timeout(300)
def test_kept_rows_are_clean_and_the_zero_shot_sentiment_follows_the_rating(outputs):
    rows = read_output(outputs["ray_version"] / "reviews")
    assert (rows["n_words"] >= 3).all()
    assert rows["rating"].between(1, 5).all()
    assert not rows["text"].str.contains(r"[A-Z<>!]").any(), "text was not normalised"
    assert set(rows["sentiment"]) == {"positive", "negative"}
    assert ((rows["sentiment"] == "positive") == (rows["sentiment_score"] > 0)).all()
    # Rough, as zero-shot is: measured on this data 13% positive at 1 star, 92% at 5 stars.
    positive_rate = (rows["sentiment"] == "positive").groupby(rows["rating"]).mean()
    assert positive_rate[5] > 0.75 and positive_rate[1] < 0.35, positive_rate.to_dict()
    clear = rows[rows["rating"] != 3]  # 1-2 stars should read negative, 4-5 positive
    agree = ((clear["sentiment"] == "positive") == (clear["rating"] >= 4)).mean()
    assert agree > 0.65, f"zero-shot sentiment agrees with the stars on only {agree:.0%} of the reviews"
    result = read_result(outputs["ray_version"])["answer"]
    assert result["positive_by_rating"] == {str(r): int(n) for r, n in
                                            (rows["sentiment"] == "positive").groupby(rows["rating"]).sum().items()}


def write_bad_shard(folder, kind):
    """A folder of good shards plus one bad one; returns the bad file."""
    good = reviews.generate_shard(200, seed=0, shard=0)
    pq.write_table(good, folder / "part-00000.parquet")
    bad = folder / "part-00001.parquet"
    if kind == "missing column":
        pq.write_table(good.drop_columns(["rating"]), bad)
    elif kind == "wrong type":
        pq.write_table(good.set_column(2, "rating", good["rating"].cast(pa.string())), bad)
    elif kind == "not parquet":
        bad.write_text("review_id,text\n1,hello\n")
    return bad


BAD_INPUT = [(side, case) for side in SIDES for case in ("missing folder", "empty folder", "missing column",
                                                         "wrong type", "not parquet")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side,case", BAD_INPUT)
def test_bad_input_is_one_clear_line(side, case, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    expected = {"missing folder": "does not exist", "empty folder": "holds no *.parquet shards",
                "missing column": "missing column 'rating'", "wrong type": "column 'rating' has type string",
                "not parquet": "not a readable Parquet file"}[case]
    if case != "missing folder":
        data.mkdir()
    if case not in ("missing folder", "empty folder"):
        bad = write_bad_shard(data, case)
        expected = f"shard {bad}: {expected}"
    proc = run(SCRIPT.format(side=side), "--input", data, "--output", out, timeout=100)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert last_line(proc.stderr).startswith("error: ")
    assert expected in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (out / "reviews").exists() and not (out / "result.json").exists()


@pytest.mark.ray_cluster
@pytest.mark.timeout(240)
@pytest.mark.parametrize("side", SIDES)
def test_a_shard_that_breaks_mid_run_leaves_no_output_that_looks_complete(side, ray_cluster, smoke_data,
                                                                          tmp_path):
    """The footer is fine (so the up-front check passes) but the data pages are garbage: the read fails
    while the pipeline runs. The earlier output must survive and no temporary folder may be left."""
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(smoke_data, data)
    shard = data / "part-00003.parquet"
    corrupt = bytearray(shard.read_bytes())
    corrupt[200:len(corrupt) // 2] = b"\x55" * (len(corrupt) // 2 - 200)
    shard.write_bytes(bytes(corrupt))
    earlier = out / "reviews" / "rating=5"
    earlier.mkdir(parents=True)
    (earlier / "earlier.parquet").write_bytes(b"from an earlier, complete run")
    env = ray_cluster.env(base_env()) if side == "ray_version" else base_env()
    proc = run(SCRIPT.format(side=side), "--input", data, "--output", out, env=env, timeout=200)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert last_line(proc.stderr).startswith("error: pipeline failed: ")
    # what Arrow says about garbage pages: a snappy or thrift decoding error, or "corrupt"
    assert any(word in last_line(proc.stderr).lower() for word in ("snappy", "thrift", "corrupt"))
    assert sorted(p.name for p in out.iterdir()) == ["reviews"]  # no result.json, no reviews.tmp-*
    assert (earlier / "earlier.parquet").exists()


@pytest.mark.ray_cluster
@pytest.mark.timeout(120)
def test_an_actor_pool_that_would_take_every_cpu_is_refused(ray_cluster, smoke_data, tmp_path):
    proc = run(SCRIPT.format(side="ray_version"), "--input", smoke_data, "--workers", "64",
               "--output", tmp_path, env=ray_cluster.env(base_env()), timeout=100)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "leave none for reading" in last_line(proc.stderr)
