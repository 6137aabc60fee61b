"""``lingcollapse analyze``: runs → results table, correlations, figures (DESIGN §5)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="correlate NC metrics with generalization across runs",
        description="Gather run dirs and results tables into one table and correlate every "
        "metric with the target (Pearson r, R², permutation-test p-value; paper §3.8).",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        help="results tables (.csv/.parquet), run dirs with metrics.json, or sweep dirs",
    )
    p.add_argument(
        "--published",
        type=Path,
        metavar="CSV",
        action="append",
        default=[],
        help="the paper authors' per-model table (lc-2024_05_18.csv), converted to §3 names",
    )
    p.add_argument(
        "--target",
        default="val_loss",
        metavar="COLUMN",
        help="generalization column (default val_loss)",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=10_000,
        metavar="N",
        help="permutation-test resamples (default 10⁴)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the permutations (default 0)"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write results.csv/.parquet and correlations.json here",
    )
    p.add_argument("--figures", action="store_true", help="also draw figures into OUT/figures")
    p.add_argument("--json", action="store_true", help="print the correlations as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lingcollapse.analysis.correlation import correlate
    from lingcollapse.analysis.summary import correlation_table
    from lingcollapse.analysis.table import gather, write_results
    from lingcollapse.errors import UserError
    from lingcollapse.io import write_json

    if args.figures and args.out is None:
        raise UserError("--figures needs --out DIR to draw into")
    gathered = gather(args.inputs, tuple(args.published))
    corr = correlate(gathered.table, args.target, args.permutations, args.seed)
    if args.out is not None:
        write_results(gathered.table, args.out)
        write_json(args.out / "correlations.json", corr.as_json())
        if gathered.configs:
            write_json(args.out / "configs.json", gathered.configs)
        if args.figures:
            from lingcollapse.analysis.figures import make_figures

            made = make_figures(gathered.table, args.out / "figures", args.target)
            gathered.notes.append(f"{len(made)} figure(s) in {args.out / 'figures'}")
    for note in gathered.notes + corr.notes:
        log.info("note: %s", note)
    print(json.dumps(corr.as_json(), indent=2) if args.json else correlation_table(corr))
    return 0
