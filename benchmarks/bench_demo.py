"""Wall time of `lingcollapse demo` (goal ≤ 10 min) and `demo --quick` (≤ 90 s) on this CPU,
and the paper's headline in miniature: CDNV (NC1) falls and NC4 agreement rises as
validation loss falls across the demo's models.

    python benchmarks/bench_demo.py [--quick-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr


def run(out: Path, quick: bool) -> float:
    cmd = [str(Path(sys.executable).parent / "lingcollapse"), "demo", "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(
        cmd + (["--quick"] if quick else []),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def headline(out: Path) -> dict:
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    corr = json.loads((out / "correlations.json").read_text())["metrics"]
    return {
        "models": len(table),
        "runs": int(table["run"].nunique()) if "run" in table else len(table),
        "spearman_cdnv": float(spearmanr(table.val_loss, table.nc1_cdnv).statistic),
        "spearman_nc4": float(spearmanr(table.val_loss, table.nc4_agreement).statistic),
        "r2_cdnv": corr["nc1_cdnv"]["r2"],
        "r2_nc4": corr["nc4_agreement"]["r2"],
    }


def said(h: dict) -> str:
    return (
        f"{h['models']} models; Spearman with val_loss: CDNV {h['spearman_cdnv']:+.2f} "
        f"(want > 0), NC4 {h['spearman_nc4']:+.2f} (want < 0); R²: CDNV {h['r2_cdnv']:.2f}, "
        f"NC4 {h['r2_nc4']:.2f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick-only", action="store_true")
    args = p.parse_args()
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quick, goal in ((True, 90), (False, 600)):
            if not quick and args.quick_only:
                continue
            out = Path(tmp) / ("quick" if quick else "full")
            seconds = run(out, quick)
            label = "demo --quick" if quick else "demo"
            found[label] = {"seconds": seconds, **headline(out)}
            print(f"{label:<13} {seconds:7.1f} s (goal ≤ {goal} s)   {said(found[label])}")
    if not args.quick_only:
        _record(found)


def _record(found: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results import record

    full, quick = found["demo"], found["demo --quick"]
    row = {
        "what": f"the demo, {full['models']} models of {full['runs']} runs / "
        f"{quick['models']} of {quick['runs']}, from corpus to report",
        "result": f"**{full['seconds']:.0f} s** / **{quick['seconds']:.0f} s**; across the "
        f"{full['models']} models Spearman with val_loss: CDNV "
        f"**{full['spearman_cdnv']:+.2f}** (R² {full['r2_cdnv']:.2f}), NC4 "
        f"**{full['spearman_nc4']:+.2f}** (R² {full['r2_nc4']:.2f})",
        "goal": "≤ 10 min / ≤ 90 s",
    }
    record("demo", row, found)


if __name__ == "__main__":
    main()
