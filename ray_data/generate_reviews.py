"""Generate synthetic product reviews as Parquet shards, from a seed (same seed, same bytes).

    python ray_data/generate_reviews.py --rows 20000 --output outputs/data/reviews

About 4% of the rows are bad on purpose (missing text or rating, a rating outside 1..5, text that is
empty once cleaned) so that the pipelines in ray_data/ have something to drop. The scripts in
ray_data/baseline/ and ray_data/ray_version/ call the same generator themselves when no --input is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from workshop import cli, reviews


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rows", type=cli.positive_int, default=20_000, help="reviews to generate")
    parser.add_argument("--rows-per-shard", type=cli.positive_int, default=100_000, help="rows per file")
    parser.add_argument("--smoke-test", action="store_true", help="256 rows in 8 shards (the pipelines' smoke size)")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same data")
    parser.add_argument("--output", type=Path, default=Path("outputs/data/reviews"), help="folder (replaced)")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.rows_per_shard = 256, 32
    with cli.Timer() as timer:
        folder = reviews.write_dataset(args.output, args.rows, args.seed, args.rows_per_shard,
                                       progress=lambda shards: tqdm(shards, desc="shards"))
    files = list(folder.glob("*.parquet"))
    size = sum(p.stat().st_size for p in files)
    print(f"Wrote {args.rows:,} reviews in {len(files)} shards ({size / 1e6:,.0f} MB) to {folder} "
          f"in {timer.seconds:.1f} s")


if __name__ == "__main__":
    main()
