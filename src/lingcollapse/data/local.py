"""Local text corpora: ``.txt`` files or a directory of them, ``.jsonl``, ``.parquet``.

- a ``.txt`` file: documents separated by blank lines;
- a directory: every ``*.txt`` in it (recursively, sorted by path), one document each;
- ``.jsonl`` / ``.parquet``: one document per row, from the column ``text_column``.

Whitespace-only documents are dropped; an input with none left is an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lingcollapse.errors import UserError

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
SUFFIXES = (".txt", ".jsonl", ".parquet")


def read_documents(path: str | Path, text_column: str = "text") -> list[str]:
    """The documents of a local corpus (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise UserError(
            f"corpus {path} not found; pass `embedded`, `tinystories`, a .txt/.jsonl/.parquet "
            "file or a directory of .txt files"
        )
    if path.is_dir():
        docs = _read_txt_dir(path)
    elif path.suffix == ".txt":
        docs = _BLANK_LINE.split(path.read_text(encoding="utf-8", errors="replace"))
    elif path.suffix == ".jsonl":
        docs = _read_jsonl(path, text_column)
    elif path.suffix == ".parquet":
        docs = _read_parquet(path, text_column)
    else:
        raise UserError(f"corpus {path}: unknown file type {path.suffix!r}; use one of {SUFFIXES}")
    docs = [d.strip() for d in docs if isinstance(d, str) and d.strip()]
    if not docs:
        raise UserError(f"corpus {path} is empty: it holds no non-blank document")
    return docs


def _read_txt_dir(path: Path) -> list[str]:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise UserError(f"corpus directory {path} holds no .txt files")
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def _read_jsonl(path: Path, column: str) -> list[str]:
    try:
        return _jsonl_documents(path, column)
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); a .jsonl corpus "
            "holds one JSON object per line"
        ) from None


def _jsonl_documents(path: Path, column: str) -> list[str]:
    docs, columns = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}, line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}, line {number}: expected a JSON object per line")
            columns |= row.keys()
            if column in row:
                docs.append(row[column])
    if columns and not docs:
        _missing_column(path, column, columns)
    return docs


def _read_parquet(path: Path, column: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as err:  # pyarrow raises several types for a bad file
        raise UserError(f"cannot read {path} as Parquet: {err}") from None
    if column not in names:
        _missing_column(path, column, names)
    return pq.read_table(path, columns=[column]).column(column).to_pylist()


def _missing_column(path: Path, column: str, columns) -> None:
    raise UserError(
        f"{path} has no column {column!r} (columns: {', '.join(sorted(columns))}); "
        "pick one with --text-column"
    )
