"""``lingcollapse measure``: stats → metrics.json + classes.parquet.

The options become a :class:`MeasureConfig` and the work is :func:`measure_files`; this
module only says its notes and prints the metrics.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import fields
from pathlib import Path

from lingcollapse.io import to_json
from lingcollapse.metrics import conventions
from lingcollapse.metrics.job import MeasureConfig, measure_files
from lingcollapse.metrics.report import metrics_table
from lingcollapse.progress import add_log_every

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="compute every NC metric from stats files",
        description="Compute every NC metric (CDNV, equinormness, interference, log kernel, "
        "duality, agreement: Eq. 4–11 of the paper) from train stats "
        "(and optionally a classifier and validation stats).",
    )
    p.add_argument(
        "train_stats",
        type=Path,
        help="train stats (.safetensors) from collect, or a run dir or its epoch-E/ (for "
        "DIR/stats/train.safetensors)",
    )
    p.add_argument(
        "--validation",
        type=Path,
        help="validation stats for NC4 and val_loss "
        "(default: validation.safetensors beside TRAIN_STATS, if present)",
    )
    p.add_argument(
        "--classifier",
        help="model dir, run dir, hub id or safetensors file "
        "with 'weight' (and 'bias') for NC3 (default: the run's model/, if present)",
    )
    p.add_argument("--ood", type=Path, help="train stats of an out-of-distribution corpus (NC5)")
    p.add_argument(
        "--preset",
        help=f"conventions: {', '.join(conventions.PRESETS)} (default wu-papyan, the paper's)",
    )
    p.add_argument(
        "--min-count", type=int, help="leave out classes with fewer train samples (default 1)"
    )
    p.add_argument("--cdnv-power", type=float, help="k of Eq. 4 (default 2; 0 = Galanti's)")
    p.add_argument(
        "--cdnv-control",
        action="store_true",
        help="also nc1_cdnv_k0, the CDNV with k = 0: unlike k = 2 it does not change when "
        "every embedding is scaled (one more pass over each pairwise tile)",
    )
    p.add_argument(
        "--sample-pairs",
        type=pair_count,
        metavar="N",
        help="estimate the pairwise metrics (CDNV, interference, log kernel; the ETF and Zhu "
        "errors when ZᵀZ would cost too much) from N uniformly drawn pairs of classes, each "
        "with its 95%% interval (NAME_ci95 in metrics.json), in O(N·d) instead of O(C²·d); "
        "e.g. 1e6 (default: exact)",
    )
    p.add_argument(
        "--sample-seed",
        type=int,
        metavar="S",
        help="seed of the pairs drawn by --sample-pairs (default 0)",
    )
    p.add_argument("--tokenizer", help="tokenizer to decode token ids (default: the run's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument(
        "--tile",
        type=int,
        help="classes per tile of the pairwise pass (default 1024 on the CPU, 8192 on a GPU; "
        "less to fit free memory)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output dir (default: the run dir, i.e. the "
        "parent of stats/, else the stats file's dir)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=run)
    add_log_every(p)


def pair_count(text: str) -> int:
    """A count of pairs as typed: ``1000000``, ``1_000_000`` or ``1e6``."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not a whole number of pairs: {text!r}")
    return int(value)


def run(args: argparse.Namespace) -> int:
    cfg = MeasureConfig(**{f.name: getattr(args, f.name) for f in fields(MeasureConfig)})
    done = measure_files(cfg)
    # said after success, so a failure prints exactly one line
    for note in done.notes:
        log.info("%s", note)
    for warning in done.warnings:
        log.warning("warning: %s", warning)
    print(to_json(done.metrics, indent=2) if args.json else metrics_table(done.metrics))
    return 0
