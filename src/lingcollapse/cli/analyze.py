"""``lingcollapse analyze``: runs → results table, correlations, figures.

The options become an :class:`AnalyzeConfig` and the work is :func:`analyze`; this
module only says its notes and prints the correlations.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields
from pathlib import Path

from lingcollapse.analysis import DEFAULT_PERMUTATIONS
from lingcollapse.io import to_json

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
        "--select",
        action="append",
        default=[],
        metavar="GLOB",
        help="keep only models whose id or run name matches (repeatable; e.g. "
        "'02x0768_01d*', the 21 seeds of Table 1)",
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
        default=DEFAULT_PERMUTATIONS,
        metavar="N",
        help="permutation-test resamples (all n! pairings, exact, when n! ≤ N)",
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
    p.add_argument(
        "--class-counts",
        type=Path,
        metavar="DATA_OR_STATS",
        help="with --figures, also Figure 4 (the 500 most frequent classes) from a data dir, "
        "train stats or a run dir",
    )
    p.add_argument("--json", action="store_true", help="print the correlations as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lingcollapse.analysis.job import AnalyzeConfig, analyze
    from lingcollapse.analysis.summary import correlation_table

    cfg = AnalyzeConfig(**{f.name: getattr(args, f.name) for f in fields(AnalyzeConfig)})
    corr = analyze(cfg)
    for note in corr.notes:
        log.info("note: %s", note)
    print(to_json(corr.as_json(), indent=2) if args.json else correlation_table(corr))
    return 0
