"""``lingcollapse report``: one self-contained interactive HTML page for an analysis dir."""

from __future__ import annotations

import argparse
from pathlib import Path

# Defaults of the explorer, without importing the analysis stack for `--help`.
MAX_TOKENS = 2000
NEIGHBOURS = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write DIR/report.html from an analyze/sweep/demo output dir",
        description="Write one self-contained HTML page (figures, data and script embedded; "
        "it opens offline) from DIR/results.csv and DIR/correlations.json; draws DIR/figures "
        "if missing. Tables sort and filter; hovering a point names its model. From the run "
        "dirs below DIR (or --runs) it adds a token explorer (classes.parquet and the train "
        "stats' class means), training curves (log.jsonl) and, with DIR/layers.csv, a layer view.",
    )
    p.add_argument("dir", type=Path, help="output dir of analyze --out, sweep or demo")
    p.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="dir holding the models' run dirs (default: DIR; give it when analyze --out "
        "is elsewhere)",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        help="classes per model embedded in the token explorer, the most frequent "
        "(0: no explorer) (default: %(default)s)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=NEIGHBOURS,
        help="nearest and most interfering classes listed per token (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lingcollapse.analysis.report import write_report
    from lingcollapse.errors import UserError

    if not args.dir.is_dir():
        raise UserError(f"{args.dir} is not a directory (give the --out dir of analyze)")
    print(write_report(args.dir, args.max_tokens, args.neighbours, args.runs))
    return 0
