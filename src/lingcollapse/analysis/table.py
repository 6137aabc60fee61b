"""One results table from run dirs and tables.

A row per model: identity columns ``model, width, depth, n_params, epochs,
weight_decay, seed``, then the §3 metric names. Inputs may be

- a CSV or Parquet table with those column names (made here or elsewhere; the
  authors' published layout is recognised and converted, see :mod:`.published`);
- a run dir holding ``metrics.json`` (identity read from it first, then from the
  run's ``config.json``);
- an analyze/sweep output dir holding ``results.csv``;
- any other dir: every run dir below it (a sweep root).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd

from lingcollapse.analysis import published
from lingcollapse.analysis.directions import CI_SUFFIX, IDENTITY
from lingcollapse.errors import UserError
from lingcollapse.io import CHECKSUM, read_csv, read_json

log = logging.getLogger(__name__)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# Training settings a run's config.json records that may differ between runs of a sweep.
SETTINGS = ("lr", "batch_size")
# What tells apart two models of one name, in this order (a data dir, a setting, a table).
DISTINGUISH = ("corpus", "data_sha256", "tokenizer", "seq_len", *SETTINGS, "source")


@dataclass
class Gathered:
    table: pd.DataFrame  # a row per model: its last layer (what Table 1 correlates)
    configs: dict[str, dict] = field(default_factory=dict)  # model → its config.json
    notes: list[str] = field(default_factory=list)
    layers: pd.DataFrame | None = None  # a row per (model, layer), models with inner layers
    layer_rows: list[dict] = field(default_factory=list, repr=False)


def gather(paths: list[Path], published_paths: tuple[Path, ...] = ()) -> Gathered:
    """Read every input into one table (identity columns first)."""
    out = Gathered(pd.DataFrame())
    frames = [published.load_published(p) for p in published_paths]
    for path in paths:
        frames.extend(_read_input(Path(path), out))
    if not frames:
        raise UserError("no inputs: give result tables, run dirs, or --published CSV")
    table = pd.concat(frames, ignore_index=True, sort=False)
    out.table = _tidy(table, out.notes)
    if out.layer_rows:
        out.layers = pd.DataFrame(out.layer_rows)
    return out


def _read_input(path: Path, out: Gathered) -> list[pd.DataFrame]:
    if path.is_file():
        return [read_table(path, out.notes)]
    if not path.is_dir():
        raise UserError(f"{path} does not exist (give a results table or a run dir)")
    if (path / "metrics.json").is_file():
        return [_read_run(path, out)]
    if (path / "results.csv").is_file():
        return [read_table(path / "results.csv", out.notes)]
    runs = sorted(p.parent for p in path.rglob("metrics.json"))
    if not runs:
        raise UserError(f"{path} holds no metrics.json or results.csv; run `measure` first")
    return [_read_run(run, out) for run in runs]


def read_table(path: Path, notes: list[str]) -> pd.DataFrame:
    """A CSV or Parquet results table; the published layout is converted."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UserError(f"{path}: unknown table format {suffix!r} (use .csv or .parquet)")
    try:
        df = read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as err:  # parser errors name the file, not the fix
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed")])
    if published.is_published(df.columns):
        notes.append(f"{path.name}: the authors' published layout, converted to §3 names")
        return published.convert(df)
    if "model" not in df.columns:
        df.insert(0, "model", [f"{path.stem}[{i}]" for i in range(len(df))])
        notes.append(f"{path.name} has no 'model' column; rows are named by their index")
    return df


def _read_run(run: Path, out: Gathered) -> pd.DataFrame:
    """One row from ``run/metrics.json``; identity missing there comes from config.json.
    Inner layers' ``metrics.layerNN.json`` go to ``out.layer_rows``."""
    config = _run_config(run)
    row = _metrics_row(run / "metrics.json", config, run)
    if config:
        out.configs[str(row["model"])] = config
    inner = sorted(run.glob("metrics.layer*.json"))
    if inner:
        depth = pd.to_numeric(row.get("depth"), errors="coerce")
        rows = [_metrics_row(p, config, run) for p in inner]
        for r, path in zip(rows, inner, strict=True):
            r["layer_index"] = int(path.stem.removeprefix("metrics.layer"))
        last = max(r["layer_index"] for r in rows) + 1
        # "last" is the output layer's input: after block L and the final norm
        rows.append({**row, "layer": "last", "layer_index": int(depth) if depth == depth else last})
        out.layer_rows.extend(rows)
    return pd.DataFrame([row])


def _run_config(run: Path) -> dict:
    """The training config of a run dir. An epoch model ``RUN/epoch-E/`` is measured in
    place: its ``config.json`` is the Hugging Face model's, its training config the run's."""
    path = run / "config.json"
    if re.fullmatch(r"epoch-\d+", run.name) and (run.parent / "config.json").is_file():
        path = run.parent / "config.json"
    return _load_json(path) if path.is_file() else {}


def _metrics_row(path: Path, config: dict, run: Path) -> dict:
    metrics = _load_json(path, "delete it and run `lingcollapse measure` again")
    row = {k: v for k, v in metrics.items() if not isinstance(v, dict | list) and k != CHECKSUM}
    row.update(estimate_columns(metrics))
    flat = _flatten(config)
    for key in (*IDENTITY, *SETTINGS):
        if row.get(key) is None and flat.get(key) is not None:
            row[key] = flat[key]
    row.setdefault("model", run.name)
    return row


def estimate_columns(metrics: dict) -> dict:
    """What ``measure --sample-pairs`` adds to metrics.json, as numbers a table can hold:
    ``NAME_ci95`` = [low, high] as ``NAME_ci95_low`` and ``NAME_ci95_high``, and the
    pairs drawn as ``sample_pairs``."""
    out = {}
    for key, value in metrics.items():
        if key.endswith(CI_SUFFIX) and isinstance(value, list) and len(value) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = value
    sampling = metrics.get("sampling")
    if isinstance(sampling, dict) and isinstance(sampling.get("pairs"), int):
        out["sample_pairs"] = sampling["pairs"]
    return out


def _load_json(path: Path, remedy: str = "fix or delete it") -> dict:
    data = read_json(path, remedy)
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold one JSON object")
    return data


def _flatten(config: dict) -> dict:
    """Top-level keys, then scalars one level down (configs nest model/training)."""
    flat = {k: v for k, v in config.items() if not isinstance(v, dict | list)}
    for value in config.values():
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(v, dict | list):
                    flat.setdefault(k, v)
    return flat


def _tidy(table: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Identity columns first, exact duplicate rows dropped, numeric columns as numbers."""
    for col in IDENTITY:
        if col not in table.columns:
            table[col] = np.nan if col != "model" else ""
    table["model"] = table["model"].astype(str)
    before = len(table)
    table = table.drop_duplicates(ignore_index=True)
    if len(table) < before:
        notes.append(f"dropped {before - len(table)} duplicate row(s)")
    _tell_apart(table, notes)
    rest = [c for c in table.columns if c not in IDENTITY]
    return table[list(IDENTITY) + rest]


def _tell_apart(table: pd.DataFrame, notes: list[str]) -> None:
    """Models of one name from different data, settings or tables keep apart: each gets
    the value that differs, ``name [lr=0.002]``; same-named rows that nothing tells apart
    are named in a note (in place)."""
    renamed, alike = 0, []
    for name, rows in table.groupby("model", sort=False):
        if len(rows) < 2:
            continue
        column = next(
            (c for c in DISTINGUISH if c in rows and rows[c].astype(str).nunique() > 1), None
        )
        if column is None:
            alike.append(str(name))
            continue
        for i in rows.index:
            table.loc[i, "model"] = f"{name} [{column}={_short(table.loc[i, column])}]"
        renamed += len(rows)
    if renamed:
        notes.append(f"{renamed} models share a name with another: named apart by what differs")
    if alike:
        notes.append(f"model name(s) seen more than once: {', '.join(alike[:5])}")


def _short(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value}"


def numeric_column(table: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64; a cell that is not a number is a user error naming it."""
    values = table[column]
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float)
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"column {column!r}, row {i + 1} (model {table['model'].iloc[i]!r}): "
            f"{values.iloc[i]!r} is not a number"
        )
    return converted.to_numpy(dtype=float)


def write_results(table: pd.DataFrame, out: Path, layers: pd.DataFrame | None = None) -> None:
    """results.csv and results.parquet (and layers.csv, a row per model and layer, where
    inner layers were measured), each written atomically."""
    from lingcollapse.io import atomic_path

    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / "results.parquet") as tmp:
        _parquet_safe(table).to_parquet(tmp, index=False)
    if layers is not None:
        with atomic_path(out / "layers.csv") as tmp:
            layers.to_csv(tmp, index=False)


def _parquet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Mixed-type columns (``layer`` = 6 in one run, "last" in another) as text, since
    Parquet columns have one type; the CSV keeps them as they are."""
    table = table.copy()
    for col in [c for c in table.columns if table[c].dtype == "object"]:
        kinds = {type(v) for v in table[col] if v is not None and v == v}
        if len(kinds) > 1:
            table[col] = [None if v is None or v != v else str(v) for v in table[col]]
    return table


def select(gathered: Gathered, patterns: list[str]) -> None:
    """Keep the models whose id or run name matches any glob of ``patterns`` (in place).

    ``fnmatch`` globs, matched case-sensitively against the ``model`` and ``run``
    columns: ``'02x0768_01d*'`` picks the 21 seeds of the paper's Table 1 from the
    published table. Matching no model is an error that shows some of the ids.
    """
    if not patterns:
        return
    table = gathered.table
    names = [table[c].astype(str) for c in ("model", "run") if c in table.columns]
    keep = np.zeros(len(table), dtype=bool)
    for pattern in patterns:
        for column in names:
            keep |= column.map(lambda name, p=pattern: fnmatchcase(name, p)).to_numpy(bool)
    if not keep.any():
        some = ", ".join(table["model"].astype(str).head(5)) if "model" in table else ""
        raise UserError(
            f"--select {' '.join(patterns)} matches none of the {len(table)} models "
            f"(ids such as {some}); give a glob on model ids or run names, e.g. '02x0768_*'"
        )
    gathered.table = table[keep].reset_index(drop=True)
    if gathered.layers is not None:
        chosen = set(gathered.table["model"].astype(str))
        layers = gathered.layers[gathered.layers["model"].astype(str).isin(chosen)]
        gathered.layers = layers.reset_index(drop=True) if len(layers) else None
    gathered.notes.append(
        f"--select {' '.join(patterns)}: {len(gathered.table)} of {len(table)} models"
    )
