"""``lingcollapse report``: one self-contained HTML page for an analysis dir."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write DIR/report.html from an analyze/sweep/demo output dir",
        description="Write one static, self-contained HTML page (figures embedded) from "
        "DIR/results.csv and DIR/correlations.json; draws DIR/figures if missing.",
    )
    p.add_argument("dir", type=Path, help="output dir of analyze --out, sweep or demo")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lingcollapse.analysis.report import write_report
    from lingcollapse.errors import UserError

    if not args.dir.is_dir():
        raise UserError(f"{args.dir} is not a directory (give the --out dir of analyze)")
    print(write_report(args.dir))
    return 0
