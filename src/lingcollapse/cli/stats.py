"""``lingcollapse stats merge``: join stats files made over disjoint data."""

from __future__ import annotations

import argparse
from pathlib import Path

from lingcollapse.stats.files import merge_stats_files, save_stats


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="work with stats files (merge)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    m = verbs.add_parser(
        "merge",
        help="merge stats over disjoint data into one file",
        description="Merge train (or validation) stats made over disjoint "
        "data, e.g. shards run as separate jobs. The result equals one pass "
        "over the union (Chan's parallel formula).",
    )
    m.add_argument("inputs", nargs="+", type=Path, help="stats files of one kind")
    m.add_argument("--out", type=Path, required=True, help="merged stats file")
    m.set_defaults(func=merge)


def merge(args: argparse.Namespace) -> int:
    merged = merge_stats_files(args.inputs)
    save_stats(args.out, merged)
    print(f"merged {len(args.inputs)} file(s) into {args.out}")
    return 0
