"""``lingcollapse stats merge``: join the stats of disjoint shards of one collection."""

from __future__ import annotations

import argparse
from pathlib import Path

from lingcollapse.errors import UserError
from lingcollapse.stats.files import merge_stats_files, save_stats


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="work with stats files (merge)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    m = verbs.add_parser(
        "merge",
        help="merge the stats of disjoint shards into one file",
        description="Merge train (or validation) stats of disjoint shards of one "
        "collection, e.g. the files of `collect --shard 0/N` … `N−1/N` run as separate "
        "jobs (or a merge of some of them with the rest). The result equals one pass "
        "over the union (Chan's parallel formula), and records the shards it covers "
        "(all N: shard 0/1, as one pass). Refused, with the check that failed: files "
        "of another model (weights), layer, split, data, dtype, --covariance, train "
        "means or --min-count; a shard twice; overlapping shards; files without "
        "provenance (not made by `collect`). Batch size and device may differ.",
    )
    m.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        help="stats files of one kind (a run dir: its stats/train.safetensors)",
    )
    m.add_argument("--out", type=Path, required=True, help="merged stats file")
    m.set_defaults(func=merge)


def merge(args: argparse.Namespace) -> int:
    if args.out.is_dir():  # before reading gigabytes of inputs
        raise UserError(
            f"--out {args.out} is a directory: give the stats file to write, "
            f"e.g. {args.out / 'train.safetensors'}"
        )
    merged = merge_stats_files(args.inputs)
    save_stats(args.out, merged)
    shard = merged.metadata["shard"]
    print(f"merged {len(args.inputs)} file(s) into {args.out} (shard {shard})")
    return 0
