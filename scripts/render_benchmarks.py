"""Render the README's benchmark table from ``benchmarks/results/*.json``.

    python scripts/render_benchmarks.py           # rewrite the table in README.md
    python scripts/render_benchmarks.py --check   # exit 1 if README.md differs (a test runs this)

The table sits between ``<!-- benchmarks:begin -->`` and ``<!-- benchmarks:end -->``.
Each row is what one benchmark wrote (``benchmarks/results.py``): its claim, result and
goal, the command that measured it, and the commit, date and machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
# The order of the pipeline; a benchmark not listed comes after, by name.
ORDER = [
    "data_prepare", "train", "accumulate", "collect", "measure", "sample_pairs", "memory", "demo"
]  # fmt: skip


def _where(r: dict) -> str:
    m = r["machine"]
    device = m["gpu"] or f"{m['cores']} CPU cores"
    dirty = "+" if r.get("dirty") else ""
    return f"`{r['commit']}`{dirty}, {r['date']}, {device}"


def table(records: list[dict]) -> str:
    def rank(r: dict) -> tuple[int, str]:
        name = r["benchmark"]  # e.g. train_2x768 ranks as train
        return next((i for i, p in enumerate(ORDER) if name.startswith(p)), len(ORDER)), name

    records = sorted(records, key=rank)
    lines = [
        "| benchmark | result | goal | command | measured at |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        row = r["row"]
        lines.append(
            f"| {row['what']} | {row['result']} | {row['goal']} | `{r['command']}` | {_where(r)} |"
        )
    return "\n".join(lines)


def render(text: str, records: list[dict]) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{table(records)}\n{text[end:]}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare, do not write")
    args = p.parse_args()
    records = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    text = README.read_text()
    new = render(text, records)
    if args.check:
        if new != text:
            print("README.md's benchmark table is not the one the results files give: "
                  "run python scripts/render_benchmarks.py", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
