"""Synthetic product reviews in Parquet shards, and the tiny sentiment model that scores them.

Both sides of the ray_data pair use these identically: the data comes from a seed (same seed, same bytes),
the model is built from a seed (same seed, same weights in every process), so the baseline and the
Ray version can be compared row for row. Nothing here knows about Ray or about the pipeline steps.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

# The columns every shard must have, and the Arrow type family each must be.
COLUMNS = {"review_id": "integer", "product_id": "integer", "rating": "integer",
           "helpful_votes": "integer", "text": "string"}
COMPLETE_MARKER = "_COMPLETE"  # written last by write_dataset: a folder without it is a half-written cache

POSITIVE = ("great love excellent perfect amazing happy recommend works sturdy fast comfortable "
            "beautiful reliable easy solid fantastic").split()
NEGATIVE = ("broken terrible poor refund disappointed waste cheap slow flimsy useless awful "
            "returned stopped leaking worst annoying").split()
_SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gu pi zo".split()


def _neutral_words(count: int = 600) -> list[str]:
    """Made-up neutral filler words ("kalomi", "nerusa", ...), the same list on every machine."""
    rng = np.random.default_rng(12345)
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))
        if word not in words:
            words.append(word)
    return words


NEUTRAL = _neutral_words()
VOCAB = ["<unk>", *POSITIVE, *NEGATIVE, *NEUTRAL]  # the model's word-level vocabulary; id 0 = unknown
# Surface forms in raw reviews: lower case, Capitalised, SHOUTED, with a trailing "!", plus HTML line breaks.
_SURFACE = np.array(
    [w for base in VOCAB[1:] for w in (base, base.capitalize(), base.upper(), base + "!")]
    + ["<br/>", "<br />"],
    dtype=object,
)
_N_BASE = len(VOCAB) - 1


def _word_ids(rng: np.random.Generator, rating: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Base-word ids for all words of all reviews: the rating sets how many are positive or negative."""
    total = int(count.sum())
    row_rating = np.repeat(np.nan_to_num(rating, nan=3.0), count)
    p_pos = np.clip((row_rating - 1) / 4 * 0.5, 0.02, 0.5)  # 1 star: 2% positive words, 5 stars: 50%
    p_neg = np.clip((5 - row_rating) / 4 * 0.5, 0.02, 0.5)
    u = rng.random(total)
    ids = 1 + len(POSITIVE) + len(NEGATIVE) + rng.integers(0, len(NEUTRAL), total)
    pos, neg = u < p_pos, (u >= p_pos) & (u < p_pos + p_neg)
    ids[pos] = 1 + rng.integers(0, len(POSITIVE), int(pos.sum()))
    ids[neg] = 1 + len(POSITIVE) + rng.integers(0, len(NEGATIVE), int(neg.sum()))
    return ids


def generate_shard(rows: int, seed: int, shard: int) -> pa.Table:
    """One shard of raw reviews. About 3% of rows are bad on purpose (missing text or rating, a rating
    outside 1..5, text that is empty once cleaned), so the pipeline has something to drop.

    Vectorised: text is assembled by Arrow (list of words -> joined string), a million rows in a few seconds.
    """
    rng = np.random.default_rng([seed, shard])
    review_id = shard * 10_000_000 + np.arange(rows, dtype=np.int64)
    rating = rng.integers(1, 6, rows).astype(np.float64)
    count = rng.integers(4, 60, rows)
    ids = _word_ids(rng, rating, count)
    surface = (ids - 1) * 4 + rng.choice(4, size=ids.size, p=[0.8, 0.1, 0.05, 0.05])
    surface[rng.random(ids.size) < 0.02] = len(_SURFACE) - 1 - rng.integers(0, 2)  # sprinkle <br/>
    kind = rng.random(rows)
    bad_text, no_text, no_rating, out_of_range = kind < 0.005, kind > 0.99, (kind > 0.98) & (kind <= 0.99), (
        (kind > 0.975) & (kind <= 0.98))
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


class SentimentModel(torch.nn.Module):
    """Bag-of-words sentiment classifier: mean word embedding -> hidden layer -> P(positive review)."""

    def __init__(self, vocab_size: int, dim: int = 32, hidden: int = 32):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab_size, dim, mode="mean")
        self.hidden = torch.nn.Linear(dim + 2, hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, ids, offsets, numeric):
        h = torch.cat([self.embed(ids, offsets), numeric], dim=1)
        return torch.sigmoid(self.out(torch.relu(self.hidden(h)))).squeeze(1)


def build_model(seed: int) -> SentimentModel:
    """The model with weights fixed by `seed` (no download, no training): in a real job this would be
    torch.load of a checkpoint. Sentiment words get embeddings along one direction that the head reads,
    so predictions follow the star rating."""
    generator = torch.Generator().manual_seed(seed)
    model = SentimentModel(len(VOCAB))
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        direction = torch.zeros(model.embed.embedding_dim)
        direction[0] = 1.0
        model.embed.weight[1:1 + len(POSITIVE)] += 3 * direction
        model.embed.weight[1 + len(POSITIVE):1 + len(POSITIVE) + len(NEGATIVE)] -= 3 * direction
        model.hidden.weight[:, 0] = torch.linspace(0.5, 1.5, model.hidden.out_features)
        model.hidden.bias.zero_()
        model.out.weight.copy_(model.out.weight.abs() + 0.5)  # every hidden unit votes for "positive"
        model.out.bias.fill_(-float(model.out.weight.sum() * 0.35))
    return model.eval()


_VOCAB_ARRAY = pa.array(VOCAB)


def encode(texts: pa.Array | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cleaned texts -> (word ids, offsets) for nn.EmbeddingBag; words outside the vocabulary map to 0.

    Vectorised with Arrow: split on spaces, look every word up in the vocabulary, keep the list offsets.
    """
    words = pc.split_pattern(pa.array(texts, type=pa.string()), " ")
    ids = pc.fill_null(pc.index_in(words.flatten(), value_set=_VOCAB_ARRAY), 0)
    offsets = words.offsets.to_numpy()[:-1]
    return torch.from_numpy(ids.to_numpy().astype(np.int64)), torch.from_numpy(offsets.astype(np.int64))
