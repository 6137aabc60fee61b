"""Adapter for the paper authors' two published per-model tables (230 models each).

Their columns are not ours. Each is mapped to one of our metric names only where the authors'
code at the table's date says what it holds (``rhubarbwu/linguistic-collapse``, with
``rhubarbwu/neural-collapse`` for the later one); a column whose meaning differs from §3
gets a name that says so, and one whose meaning is unclear is left out, never the file.

**lc-2024_05_18.csv** — ``analyze.py`` and ``lib/collapse.py`` of 2024-05-17 (93a42a0),
the numbers of the paper's Table 1 and Figures 1–3:

==========================================  ==============================================
theirs                                      ours
==========================================  ==============================================
``cdnv_mean``                               ``nc1_cdnv`` (Eq. 4, k = 2)
``norms_log_mean`` / 2, ``norms_log_std``   ``nc2_norm_mean``, ``nc2_norm_std``: their
/ 2                                         "norms" are *squared* norms ‖μ_c − μ̄‖², so
                                            their log is 2 log ‖μ_c − μ̄‖ (Eq. 5)
std / mean of ``norms_log``                 ``nc2_equinorm_cov`` (the factor 2 cancels)
``interfere_mean``, ``interfere_std``       ``nc2_interference_mean/std`` (cosines, Eq. 6)
std / mean of ``interfere``                 ``nc2_equiangular_cov``
``log_dist_mean``, ``log_dist_std``         ``gnc2_logkernel_uncentred_mean/std``: the log
                                            kernel of the normalised *uncentred* means
                                            (Eq. 7 centres them first)
std / mean of ``log_dist``                  ``gnc2_uniformity_uncentred_cov`` (Table 1's
                                            and Figure 1's "GNC2")
``sims_mean``, ``sims_std``                 ``nc3_duality_mean/std`` (Eq. 8)
std / mean of ``sims``                      ``unc3_duality_cov``
``matches / (matches + misses)``            ``nc4_agreement`` (Eq. 10)
==========================================  ==============================================

Left out: ``dists_*`` (the sum of the components of the unit vector along ŵ_c − ẑ_c, not
Eq. 11's distance), ``norms_*`` and ``norms_scl_*`` (‖μ_c − μ̄‖² and ‖μ_c − μ̄‖²/√d:
the latter is Table 4's "scaled norm", shown per token by ``inspect``),
``norms_logscl_*``, ``cdnv_std``, ``matches_*``.

**lc-2024_10_24.csv** — ``analyze.py`` of 2024-10-25 (ae21675) on ``neural_collapse``:

==========================================  ==============================================
``cdnv``                                    ``nc1_cdnv``
``norms_log_mean``, √``norms_log_var``      ``nc2_norm_mean``, ``nc2_norm_std`` (log of
                                            unsquared norms) and their CoV
``interfere_mean``, √``interfere_var``      ``nc2_interference_dot_mean/std``: raw dot
                                            products ⟨μ_c − μ̄, μ_c' − μ̄⟩, not Eq. 6's
                                            cosines
``etf_error``                               ``nc2_etf_error`` (Kothapalli)
``log_kern_mean``, √``log_kern_var``        ``gnc2_logkernel_mean/std`` (Eq. 7, centred)
                                            and ``gnc2_uniformity_cov``
``dual_error``                              ``nc3_zhu_error`` (‖WZᵀ/‖WZᵀ‖ − ETF‖_F)
``simdot_mean``, √``simdot_var``            ``nc3_dot_mean/std`` (⟨w_c, μ_c − μ̄⟩)
``simcos_mean``, √``simcos_var``            ``nc3_duality_mean/std`` (Eq. 8), ``unc3_…``
``dists_mean``                              ``nc3_distance_mean`` (Eq. 11)
``hits / (hits + misses)``                  ``nc4_agreement``
==========================================  ==============================================

Left out: ``norms_mean/var`` (unlogged), ``dists_var``. Both tables: ``val_loss``,
``val_acc``, ``perplex`` → ``val_ppl``, ``n_params``.

Conventions, checked in both versions of the code: class means are centred on their
unweighted mean (as §3); pairwise stds are population stds (as §3), per-class ones
torch's unbiased (n − 1) std, which differs from §3's by a factor 1.00002 at C ≈ 29K.

Identity comes from the model name ``LLxDDDD_EEw[SS]@k``: depth ``LL``, width ``DDDD``,
a training schedule of ``EE`` epochs, weight decay ``w`` (``d`` = 0.0005, ``L`` = 0.1),
optional seed digits ``SS`` (none → seed 42, the Trainer's default, which the authors'
base runs used), and checkpoint index ``k`` (0-based epoch); :mod:`lingcollapse.models.ids`
reads and writes these ids for our own models too.
``epochs`` is the number of epochs trained, ``k + 1`` (``10L@5`` is epoch 6 of a
10-epoch schedule, which the paper plots as 6 epochs: "up to 6 epochs", §4); the
schedule and checkpoint are kept as ``schedule_epochs`` and ``checkpoint``, and ``run``
is the name without ``@k``, shared by the models measured from one training run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lingcollapse.errors import UserError
from lingcollapse.io import read_csv
from lingcollapse.models import ids

# Model-level columns both tables share, with our names.
COMMON = {"val_loss": "val_loss", "val_acc": "val_acc", "perplex": "val_ppl"}


@dataclass(frozen=True)
class Layout:
    """How one published table's columns become ours."""

    name: str  # the table's file stem
    required: tuple[str, ...]  # the columns that identify the layout
    # ours ← (their mean column, their spread column or None, scale, spread is a variance)
    pairs: dict[str, tuple[str, str | None, float, bool]]
    singles: dict[str, str]  # ours ← theirs, as they are
    covs: dict[str, str]  # CoV name ← the name of our mean whose std / mean it is
    agreement: tuple[str, str]  # (hits, misses) columns


MAY_2024 = Layout(
    "lc-2024_05_18",
    ("model", "cdnv_mean", "norms_log_mean", "interfere_mean", "sims_mean", "matches"),
    pairs={
        "nc2_norm": ("norms_log_mean", "norms_log_std", 0.5, False),  # log ‖z‖² = 2 log ‖z‖
        "nc2_interference": ("interfere_mean", "interfere_std", 1.0, False),
        "gnc2_logkernel_uncentred": ("log_dist_mean", "log_dist_std", 1.0, False),
        "nc3_duality": ("sims_mean", "sims_std", 1.0, False),
    },
    singles={"nc1_cdnv": "cdnv_mean"},
    covs={
        "nc2_equinorm_cov": "nc2_norm",
        "nc2_equiangular_cov": "nc2_interference",
        "gnc2_uniformity_uncentred_cov": "gnc2_logkernel_uncentred",
        "unc3_duality_cov": "nc3_duality",
    },
    agreement=("matches", "misses"),
)
OCTOBER_2024 = Layout(
    "lc-2024_10_24",
    ("model", "cdnv", "norms_log_mean", "interfere_mean", "log_kern_mean", "simcos_mean", "hits"),
    pairs={
        "nc2_norm": ("norms_log_mean", "norms_log_var", 1.0, True),
        "nc2_interference_dot": ("interfere_mean", "interfere_var", 1.0, True),
        "gnc2_logkernel": ("log_kern_mean", "log_kern_var", 1.0, True),
        "nc3_duality": ("simcos_mean", "simcos_var", 1.0, True),
        "nc3_dot": ("simdot_mean", "simdot_var", 1.0, True),
        "nc3_distance": ("dists_mean", None, 1.0, False),
    },
    singles={"nc1_cdnv": "cdnv", "nc2_etf_error": "etf_error", "nc3_zhu_error": "dual_error"},
    covs={
        "nc2_equinorm_cov": "nc2_norm",
        "gnc2_uniformity_cov": "gnc2_logkernel",
        "unc3_duality_cov": "nc3_duality",
    },
    agreement=("hits", "misses"),
)
LAYOUTS = (MAY_2024, OCTOBER_2024)


def layout_of(columns) -> Layout | None:
    """The published layout a table's columns have, if any."""
    present = set(map(str, columns))
    return next((lay for lay in LAYOUTS if set(lay.required) <= present), None)


def is_published(columns) -> bool:
    """Whether a table has the layout of one of the authors' tables."""
    return layout_of(columns) is not None


def parse_name(name: str) -> dict:
    """Identity of a model from its name ``LLxDDDD_EEw[SS]@k`` (see the module doc)."""
    found = ids.parse_model_id(name)
    if found is None:
        raise UserError(
            f"model name {name!r} is not of the form LLxDDDD_EEw@k (e.g. 02x0768_01d@0, "
            "w = d for β = 0.0005 or L for β = 0.1)"
        )
    return {
        "depth": found.depth,
        "width": found.width,
        "epochs": found.epochs,
        "weight_decay": found.weight_decay,
        "seed": found.seed,
        "schedule_epochs": found.schedule_epochs,
        "checkpoint": found.checkpoint,
    }


def convert(df: pd.DataFrame) -> pd.DataFrame:
    """An authors' table in our names: identity columns first, then §3 metrics (and the
    differently defined ones under names of their own, see the module doc)."""
    layout = layout_of(df.columns)
    if layout is None:
        missing = [c for c in MAY_2024.required if c not in df.columns]
        raise UserError(
            f"not a published layout (lc-2024_05_18 or lc-2024_10_24): no column(s) "
            f"{', '.join(missing)}"
        )
    ident = pd.DataFrame([parse_name(n) for n in df["model"]])
    out = pd.DataFrame({"model": df["model"].astype(str).to_numpy()})
    out["width"], out["depth"] = ident["width"], ident["depth"]
    out["n_params"] = df["n_params"].to_numpy() if "n_params" in df else np.nan
    for col in ("epochs", "weight_decay", "seed", "schedule_epochs", "checkpoint"):
        out[col] = ident[col]
    out["run"] = [ids.parse_model_id(n).run for n in out["model"]]  # Figure 5's runs
    out["source"] = layout.name
    for theirs, ours in COMMON.items():
        if theirs in df:
            out[ours] = _column(df, theirs)
    for ours, theirs in layout.singles.items():
        if theirs in df:
            out[ours] = _column(df, theirs)
    for stem, (mean, spread, scale, is_var) in layout.pairs.items():
        if mean not in df:
            continue
        out[f"{stem}_mean"] = scale * _column(df, mean)
        if spread is not None and spread in df:
            values = _column(df, spread)
            out[f"{stem}_std"] = scale * (np.sqrt(values) if is_var else values)
    for ours, stem in layout.covs.items():
        if f"{stem}_mean" in out and f"{stem}_std" in out:
            out[ours] = out[f"{stem}_std"] / out[f"{stem}_mean"]  # signed, §3.3
    hits, misses = layout.agreement
    if hits in df and misses in df:
        out["nc4_agreement"] = _column(df, hits) / (_column(df, hits) + _column(df, misses))
    return out


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A column as floats; a cell that is no number is NaN (that model lacks the value)."""
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def load_published(path: str | Path) -> pd.DataFrame:
    """Read and convert one of the authors' CSVs (its unnamed first column is a row index)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"published table {path} not found")
    try:
        df = read_csv(path)
    except Exception as err:  # parser errors name the file, not the fix
        raise UserError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed")])
    return convert(df)


# The 21 models of the paper's Table 1 (§3.8): one 2x768 architecture, 21 seeds.
TABLE1_MODELS = ("02x0768_01d@0", *(f"02x0768_01d{i:02d}@0" for i in range(20)))
