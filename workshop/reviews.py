"""Synthetic product reviews in Parquet shards.

Both sides of the ray_data pair read these: the data comes from a seed (same seed, same bytes), so the
baseline and the Ray version can be compared row for row. Nothing here knows about Ray or about the
pipeline steps.

A review is a few short English phrases ("the strap feels flimsy", "bought it for my sister", "highly
recommend"): its star rating sets how many are positive, negative or neutral, so that a real sentence
encoder (MiniLM, in the pipeline) has real words to read. Raw text is messy on purpose (Capitalised, SHOUTED,
trailing "!", HTML line breaks), and about 4% of the rows are bad (missing text or rating, a rating outside
1..5, text that is empty once cleaned), so the pipeline has something to clean and to drop.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The columns every shard must have, and the Arrow type family each must be.
COLUMNS = {"review_id": "integer", "product_id": "integer", "rating": "integer",
           "helpful_votes": "integer", "text": "string"}
COMPLETE_MARKER = "_COMPLETE"  # written last by write_dataset: a folder without it is a half-written cache

_NOUNS = ("battery strap handle lid screen cable zipper charger case button fabric motor blade pump "
          "speaker hinge sole finish").split()
_GOOD = "great excellent sturdy comfortable reliable solid beautiful fast perfect fantastic".split()
_BAD = "broken flimsy cheap useless awful terrible poor slow noisy disappointing".split()
_GOOD_TEMPLATES = ("the {noun} is {adj}", "the {noun} feels {adj}", "{adj} {noun}")
_PHRASES_GOOD = ("i love it", "highly recommend", "works perfectly", "very happy with it", "worth every penny",
                 "easy to use", "exceeded my expectations", "would buy again")
_PHRASES_BAD = ("asked for a refund", "returned it", "stopped working after a week", "it is leaking",
                "waste of money", "very disappointed", "would not buy again", "fell apart")
_NEUTRAL = [
    *(f"arrived on {day}" for day in "monday tuesday wednesday thursday friday saturday".split()),
    *(f"bought it for my {who}" for who in "sister brother wife husband son daughter dad mom".split()),
    *(f"used it for {n} {unit}" for n in ("two", "three", "six") for unit in ("days", "weeks", "months")),
    *(f"the {noun} is {color}" for noun in _NOUNS[:6] for color in ("black", "blue", "grey", "white")),
    *(f"i use it in the {place}" for place in "kitchen garage office garden car bathroom".split()),
    *(f"it came with a {noun}" for noun in _NOUNS[:8]),
    "the box had a manual", "ordered the medium size", "this is my second one", "it is the newer model",
]


def _phrases(adjectives: list[str], phrases: tuple[str, ...]) -> list[str]:
    return [*(t.format(noun=n, adj=a) for t, n, a in itertools.product(_GOOD_TEMPLATES, _NOUNS, adjectives)),
            *phrases]


POSITIVE, NEGATIVE, NEUTRAL = _phrases(_GOOD, _PHRASES_GOOD), _phrases(_BAD, _PHRASES_BAD), _NEUTRAL
_BASE = [*POSITIVE, *NEGATIVE, *NEUTRAL]
# Surface forms in raw reviews: lower case, Capitalised, SHOUTED, with a trailing "!", plus HTML line breaks.
_SURFACE = np.array(
    [p for base in _BASE for p in (base, base.capitalize(), base.upper(), base + "!")] + ["<br/>", "<br />"],
    dtype=object,
)


def _phrase_ids(rng: np.random.Generator, rating: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Base-phrase ids for all phrases of all reviews: the rating sets how many are positive or negative."""
    total = int(count.sum())
    row_rating = np.repeat(np.nan_to_num(rating, nan=3.0), count)
    p_pos = np.clip((row_rating - 1) / 4 * 0.7, 0.02, 0.7)  # 1 star: 2% positive phrases, 5 stars: 70%
    p_neg = np.clip((5 - row_rating) / 4 * 0.7, 0.02, 0.7)
    u = rng.random(total)
    ids = len(POSITIVE) + len(NEGATIVE) + rng.integers(0, len(NEUTRAL), total)
    pos, neg = u < p_pos, (u >= p_pos) & (u < p_pos + p_neg)
    ids[pos] = rng.integers(0, len(POSITIVE), int(pos.sum()))
    ids[neg] = len(POSITIVE) + rng.integers(0, len(NEGATIVE), int(neg.sum()))
    return ids


def generate_shard(rows: int, seed: int, shard: int) -> pa.Table:
    """One shard of raw reviews. About 4% of rows are bad on purpose (missing text or rating, a rating
    outside 1..5, text that is empty once cleaned), so the pipeline has something to drop.

    Vectorised: text is assembled by Arrow (list of phrases -> joined string), a million rows in seconds.
    """
    rng = np.random.default_rng([seed, shard])
    review_id = shard * 10_000_000 + np.arange(rows, dtype=np.int64)
    rating = rng.integers(1, 6, rows).astype(np.float64)
    count = rng.integers(2, 9, rows)  # 2 to 8 phrases: about 5 to 40 words, 10 to 50 MiniLM tokens
    ids = _phrase_ids(rng, rating, count)
    surface = ids * 4 + rng.choice(4, size=ids.size, p=[0.8, 0.1, 0.05, 0.05])
    surface[rng.random(ids.size) < 0.03] = len(_SURFACE) - 1 - rng.integers(0, 2)  # sprinkle <br/>
    kind = rng.random(rows)
    bad_text, no_text, no_rating, out_of_range = kind < 0.01, kind > 0.99, (kind > 0.98) & (kind <= 0.99), (
        (kind > 0.97) & (kind <= 0.98))  # 1% of each kind
    rating[no_rating] = np.nan
    rating[out_of_range] = rng.choice([0, 6, 9, -1], int(out_of_range.sum()))
    offsets = np.r_[0, np.cumsum(count)].astype(np.int32)
    words = pa.ListArray.from_arrays(pa.array(offsets), pa.array(_SURFACE[surface], type=pa.string()))
    text = pc.binary_join(words, " ").to_numpy(zero_copy_only=False).astype(object)
    text[bad_text] = rng.choice(["", "   ", "<br/>", "<br /> <br/>", "ok"], int(bad_text.sum()))
    text[no_text] = None
    return pa.table({
        "review_id": pa.array(review_id),
        "product_id": pa.array(rng.integers(1, 50_000, rows)),
        "rating": pa.array(rating, mask=np.isnan(rating)).cast(pa.int64()),
        "helpful_votes": pa.array(rng.geometric(0.3, rows) - 1),
        "text": pa.array(text, type=pa.string()),
    })


def write_dataset(folder: Path, rows: int, seed: int, rows_per_shard: int = 100_000, progress=None) -> Path:
    """Write `rows` reviews as part-00000.parquet, part-00001.parquet, ... into `folder` (replaced).

    Written to a temporary sibling and renamed at the end, with a marker file, so an interrupted run never
    leaves a folder that looks complete.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards = range((rows + rows_per_shard - 1) // rows_per_shard)
    for shard in progress(shards) if progress else shards:
        n = min(rows_per_shard, rows - shard * rows_per_shard)
        table = generate_shard(n, seed, shard)
        pq.write_table(table, tmp / f"part-{shard:05d}.parquet", row_group_size=25_000)
    (tmp / COMPLETE_MARKER).write_text(f"rows={rows} seed={seed}\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def cached_dataset(rows: int, seed: int, root: Path = Path("outputs/data/ray_data"), progress=None) -> Path:
    """The generated dataset for (rows, seed), made once and reused: generation is never part of a timing."""
    folder = root / f"reviews_rows{rows}_seed{seed}"
    if not (folder / COMPLETE_MARKER).exists():  # at least 8 shards, at most 100,000 rows each
        write_dataset(folder, rows, seed, rows_per_shard=min(100_000, -(-rows // 8)), progress=progress)
    return folder
