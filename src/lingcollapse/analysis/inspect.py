"""Per-token inspection of a measured run (paper Appendix Q, Tables 4–5).

Reads ``RUN/classes.parquet`` (one row per class) and shows chosen tokens
next to the average token. For a single token it also lists the tokens that interfere
with it most (largest cosine of centred means, Eq. 6) and the most separated ones
(smallest cosine), from the class means in ``RUN/stats/train.safetensors``. That is one
row of the C×C interference matrix, computed as one (C, d)·(d,) product, never C×C.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lingcollapse.errors import UserError, first_line
from lingcollapse.io import read_json

COLUMNS = (
    "token_id",
    "token",
    "count",
    "sigma2",
    "log_norm",
    "cdnv_mean",
    "interference_mean",
    "logkernel_mean",
    "duality_cos",
    "dot",
    "val_count",
    "agreement_rate",
)
# What `inspect` shows: the table's columns, with Table 4's scaled norm by the log norm.
SHOWN = (*COLUMNS[:5], "norm_scaled", *COLUMNS[5:])
AVERAGE = "(avg)"


def load_classes(run: Path) -> pd.DataFrame:
    """The run's per-class table (``measure``'s columns, those it has)."""
    path = Path(run) / "classes.parquet"
    if not path.is_file():
        raise UserError(f"{path} not found; run `lingcollapse measure` on this run first")
    try:
        classes = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise UserError(
            f"cannot read {path} ({first_line(err)}): run `lingcollapse measure` on this run again"
        ) from None
    if "token_id" not in classes.columns:
        raise UserError(f"{path} has no token_id column; is it a classes table from measure?")
    if "token" not in classes.columns:
        classes["token"] = None
    return classes.reset_index(drop=True)


def _texts(classes: pd.DataFrame) -> pd.Series:
    return classes["token"].astype("string").fillna("")


def find_tokens(
    classes: pd.DataFrame, words: list[str], load_tokenizer: Callable[[], Any] | None = None
) -> pd.DataFrame:
    """Rows whose decoded text is a word: the exact text when a class has it (``' the'``
    is ``' the'``, not also ``'the'``), else the texts that equal it up to a leading
    space (BPE ``' bank'`` and ``'bank'``).

    A word that matches no text but is an integer is taken as a token id (``--ids``
    chooses ids without that doubt). Unknown words are one error listing close matches,
    and the pieces the tokenizer splits a word into (``load_tokenizer`` gives it, or
    None; called only when a word is unknown).
    """
    texts = _texts(classes)
    stripped = texts.str.lstrip(" Ġ▁")  # spaces as decoded, GPT-2 Ġ, SentencePiece ▁
    picked, unknown = [], []
    for word in words:
        hit = texts == word
        if not hit.any():
            hit = stripped == word.lstrip(" ")
        if not hit.any() and word.strip().lstrip("-").isdigit():
            hit = classes["token_id"] == int(word)
        if hit.any():
            picked.extend(np.flatnonzero(hit.to_numpy()).tolist())
        else:
            unknown.append(word)
    if unknown:
        tokenizer = load_tokenizer() if load_tokenizer is not None else None
        raise UserError(_unknown_message(unknown, stripped, tokenizer))
    return classes.iloc[list(dict.fromkeys(picked))]


def find_ids(classes: pd.DataFrame, token_ids: list[int]) -> pd.DataFrame:
    """Rows of the given token ids, in the order asked; an id that is not a measured
    class (never seen in training, or below ``--min-count``) is one error."""
    where = {int(t): i for i, t in enumerate(classes["token_id"])}
    missing = [t for t in token_ids if t not in where]
    if missing:
        ids = ", ".join(map(str, missing))
        raise UserError(
            f"token id(s) {ids} not among the {len(classes):,} measured classes (a class needs "
            "train samples, at least measure's --min-count); list some with --top K"
        )
    return classes.iloc[list(dict.fromkeys(where[t] for t in token_ids))]


def _unknown_message(unknown: list[str], stripped: pd.Series, tokenizer=None) -> str:
    choices = sorted(set(stripped.dropna().tolist()))
    parts = []
    for word in unknown:
        pieces = _pieces(tokenizer, word)
        if pieces:
            parts.append(
                f"{word!r} is not one token: the tokenizer splits it into "
                f"{' + '.join(repr(p) for p in pieces)} (inspect those pieces, or --ids)"
            )
            continue
        close = difflib.get_close_matches(word.strip(), choices, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{word!r}{hint}")
    return f"token(s) not among the measured classes: {'; '.join(parts)}"


def _pieces(tokenizer, word: str) -> list[str]:
    """The texts of the tokens ``word`` encodes to, if more than one (else [])."""
    if tokenizer is None:
        return []
    ids = tokenizer.encode(word, add_special_tokens=False)
    return [tokenizer.decode([i]) for i in ids] if len(ids) > 1 else []


def extremes(classes: pd.DataFrame, column: str, k: int, largest: bool) -> pd.DataFrame:
    """The k classes with the largest (or smallest) value of a column."""
    if column not in classes.columns:
        numeric = [c for c in classes.columns if pd.api.types.is_numeric_dtype(classes[c])]
        raise UserError(f"no column {column!r} in classes.parquet; use one of {', '.join(numeric)}")
    if not pd.api.types.is_numeric_dtype(classes[column]):
        raise UserError(f"column {column!r} is not numeric; it cannot rank tokens")
    if k < 1:
        raise UserError(f"--top/--bottom must be positive, not {k}")
    ranked = classes.dropna(subset=[column])
    return ranked.nlargest(k, column) if largest else ranked.nsmallest(k, column)


def with_scaled_norm(classes: pd.DataFrame, run: Path) -> pd.DataFrame:
    """Add Table 4's "scaled norm" ``norm_scaled`` = ‖μ_c − μ̄‖² / √d from ``log_norm`` and
    the width measure recorded in ``metrics.json`` (left out when it did not).

    The *squared* norm: the authors' code of the paper's date (``mean_norms`` with
    ``dim_norm``) squared the norms, and their published ``norms_scl_mean`` of
    12x1024_10L@9, Table 4's average row (106.8762), is the mean of ‖μ_c − μ̄‖² / √d
    (that table's ``norms_mean`` equals (mean ‖z‖)² + var ‖z‖ of the later table to 10⁻⁵).
    """
    path = Path(run) / "metrics.json"
    data = read_json(path, "run `lingcollapse measure` again") if path.is_file() else {}
    dim = data.get("dim") if isinstance(data, dict) else None
    if "log_norm" not in classes.columns or not isinstance(dim, int) or dim < 1:
        return classes
    at = classes.columns.get_loc("log_norm") + 1
    out = classes.copy()
    out.insert(at, "norm_scaled", np.exp(2.0 * out["log_norm"].to_numpy(float)) / math.sqrt(dim))
    return out


def average_row(classes: pd.DataFrame) -> pd.Series:
    """The average token: the unweighted mean over classes of every numeric column."""
    means = classes.select_dtypes("number").mean().drop("token_id", errors="ignore")
    return pd.Series({"token_id": AVERAGE, "token": AVERAGE, **means.to_dict()}, dtype=object)


@dataclass
class Neighbours:
    interfering: pd.DataFrame  # largest cosine first
    separated: pd.DataFrame  # smallest cosine first


def neighbours(run: Path, token_id: int, classes: pd.DataFrame, k: int = 10) -> Neighbours:
    """Most interfering and most separated classes of one token (Eq. 6; Eq. 4 beside).

    Classes are those with a train count ≥ ``min_count`` (from ``metrics.json``, else 1),
    centred on the unweighted mean of their means (Eq. 2). Raises FileNotFoundError when
    the stats file is missing.
    """
    counts, means = load_means(Path(run) / "stats" / "train.safetensors")
    setting = measure_setting(Path(run))
    kept = np.flatnonzero(counts >= max(1, setting.get("min_count", 1)))
    where = np.flatnonzero(kept == token_id)
    if where.size == 0:
        raise UserError(f"token id {token_id} has no train samples in the stats file")
    mu = means[kept]  # (C, d)
    z = mu - mu.mean(axis=0)  # (C, d), Eq. 2 centring
    norms = np.linalg.norm(z, axis=1)  # (C,)
    c = int(where[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (z @ z[c]) / (norms * norms[c])  # (C,): one row of Eq. 6
    dist = np.linalg.norm(mu - mu[c], axis=1)  # (C,) ‖μ_c − μ_c'‖
    table = pd.DataFrame({"token_id": kept, "interference": cos, "distance": dist})
    table = table.drop(index=c)
    table = _with_cdnv(table, classes, token_id, float(setting.get("cdnv_power", 2.0)))
    table = table.dropna(subset=["interference"])
    return Neighbours(
        table.nlargest(k, "interference").reset_index(drop=True),
        table.nsmallest(k, "interference").reset_index(drop=True),
    )


def _with_cdnv(table: pd.DataFrame, classes: pd.DataFrame, token_id: int, k: float):
    """Token text and the pair CDNV (σ_c² + σ_c'²) / (2‖μ_c − μ_c'‖^(2+k)) (Eq. 4)."""
    info = classes.set_index("token_id")
    table["token"] = table["token_id"].map(info["token"]) if "token" in info else None
    if "sigma2" in info:
        s2 = table["token_id"].map(info["sigma2"]).to_numpy(float)
        own = float(info["sigma2"].get(token_id, math.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            table["cdnv"] = (s2 + own) / (2 * table["distance"].to_numpy() ** (2 + k))
    return table[
        ["token_id", "token", *[c for c in table.columns if c not in ("token_id", "token")]]
    ]


def load_means(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``counts`` (V,) and float64 ``means`` (V, d) of a train stats file (ours checked
    whole; another tool's read by its tensor names); also the report's explorer's."""
    if not path.is_file():
        raise FileNotFoundError(path)
    from safetensors import safe_open

    from lingcollapse.stats.files import load_meta, load_stats

    if "sha256" in load_meta(path):  # a file of ours: read whole and checked
        stats = load_stats(path, kind="train")
        return stats.counts.numpy(), stats.means.numpy()
    with safe_open(str(path), framework="numpy") as f:
        names = set(f.keys())
        if not {"counts", "means"} <= names:
            raise UserError(f"{path} lacks 'counts' or 'means'; is it a train stats file?")
        return f.get_tensor("counts"), f.get_tensor("means").astype(np.float64)


def measure_setting(run: Path) -> dict:
    """min_count and cdnv_power used by measure (from metrics.json), if recorded."""
    path = run / "metrics.json"
    remedy = "delete it and run `lingcollapse measure` again"
    data = read_json(path, remedy) if path.is_file() else {}
    data = data if isinstance(data, dict) else {}
    return {k: data[k] for k in ("min_count", "cdnv_power") if isinstance(data.get(k), int | float)}


def format_table(rows: pd.DataFrame) -> str:
    """Fixed-width text; token texts quoted so leading spaces show."""
    shown = rows.copy()
    if "token" in shown.columns:
        shown["token"] = [
            t if t == AVERAGE or t is None or (isinstance(t, float) and math.isnan(t)) else repr(t)
            for t in shown["token"]
        ]
    fmt = {c: _fmt for c in shown.columns if c not in ("token", "token_id")}
    return shown.to_string(index=False, formatters=fmt, na_rep="-")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, int | np.integer):
        return f"{x:,}"
    return f"{x:.6g}" if 1e-3 <= abs(x) < 1e6 or x == 0 else f"{x:.4e}"
