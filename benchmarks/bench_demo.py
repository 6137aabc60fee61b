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


def headline(out: Path) -> str:
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    cdnv = spearmanr(table.val_loss, table.nc1_cdnv).statistic
    nc4 = spearmanr(table.val_loss, table.nc4_agreement).statistic
    corr = json.loads((out / "correlations.json").read_text())["metrics"]
    return (
        f"{len(table)} models; Spearman with val_loss: CDNV {cdnv:+.2f} (want > 0), "
        f"NC4 {nc4:+.2f} (want < 0); R²: CDNV {corr['nc1_cdnv']['r2']:.2f}, "
        f"NC4 {corr['nc4_agreement']['r2']:.2f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick-only", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for quick, goal in ((True, 90), (False, 600)):
            if not quick and args.quick_only:
                continue
            out = Path(tmp) / ("quick" if quick else "full")
            seconds = run(out, quick)
            label = "demo --quick" if quick else "demo"
            print(f"{label:<13} {seconds:7.1f} s (goal ≤ {goal} s)   {headline(out)}")


if __name__ == "__main__":
    main()
