"""Adapter for the paper authors' published per-model table (``lc-2024_05_18.csv``).

Their columns are not ours; this maps them to DESIGN §3's names:

==========================================  =====================================
theirs                                      ours
==========================================  =====================================
``cdnv_mean``                               ``nc1_cdnv`` (Eq. 4, k = 2)
``norms_log_mean``, ``norms_log_std``       ``nc2_norm_mean``, ``nc2_norm_std``
std / mean of ``norms_log``                 ``nc2_equinorm_cov`` (Eq. 5)
``interfere_mean``, ``interfere_std``       ``nc2_interference_mean/std`` (Eq. 6)
std / mean of ``interfere``                 ``nc2_equiangular_cov``
``log_dist_mean``, ``log_dist_std``         ``gnc2_logkernel_mean/std`` (Eq. 7)
std / mean of ``log_dist``                  ``gnc2_uniformity_cov``
``sims_mean``, ``sims_std``                 ``nc3_duality_mean/std`` (Eq. 8)
std / mean of ``sims``                      ``unc3_duality_cov``
``matches / (matches + misses)``            ``nc4_agreement`` (Eq. 10)
``val_loss``, ``val_acc``, ``perplex``      ``val_loss``, ``val_acc``, ``val_ppl``
``n_params``                                ``n_params``
==========================================  =====================================

Identity comes from the model name ``LLxDDDD_EEw[SS]@k``: depth ``LL``, width ``DDDD``,
a training schedule of ``EE`` epochs, weight decay ``w`` (``d`` = 0.0005, ``L`` = 0.1),
optional seed digits ``SS`` (none → seed 42, the Trainer's default, which the authors'
base runs used), and checkpoint index ``k`` (0-based epoch); :mod:`lingcollapse.models.ids`
reads and writes these ids for our own models too.
``epochs`` is the number of epochs trained, ``k + 1`` (``10L@5`` is epoch 6 of a
10-epoch schedule, which the paper plots as 6 epochs: "up to 6 epochs", §4); the
schedule and checkpoint are kept as ``schedule_epochs`` and ``checkpoint``, and ``run``
is the name without ``@k``, shared by the models measured from one training run.

Doubts, checked where we could:

- Table 1's R² values are reproduced to 6 digits by exactly this mapping (see the
  tests): equinormness is the CoV of ``norms_log`` (not of ``norms_logscl``, which is
  shifted by log √d, nor of the raw ``norms``); NC3 is ``sims_mean``; NC4 is
  ``matches / (matches + misses)``.
- ``norms_log`` is taken to be log ‖μ_c − μ̄‖ (Eq. 5). A revision of the authors' code
  that we could read computes norms of *uncentred* means and a count-*weighted* global
  mean, and uses the unbiased (n − 1) std; our §3 definitions centre on the unweighted
  mean and use the population std. With C ≈ 29K classes the std convention changes a
  CoV by a factor 1.00002; the centring may change values, not the R² reproduction.
- ``dists_mean`` (≈ 0.3) cannot be Eq. 11's ‖ŵ − ẑ‖ (≈ 1.3 when cosines are ≈ 0.13), so
  it is not mapped; neither are ``cdnv_std``, ``norms_*`` (unlogged) and ``matches_*``.
- The later table ``lc-2024_10_24.csv`` stores raw dot products as ``interfere_*``; it
  is refused rather than mapped wrongly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lingcollapse.errors import UserError
from lingcollapse.models import ids

REQUIRED = ("model", "cdnv_mean", "norms_log_mean", "interfere_mean", "sims_mean", "matches")
RENAME = {
    "cdnv_mean": "nc1_cdnv",
    "norms_log_mean": "nc2_norm_mean",
    "norms_log_std": "nc2_norm_std",
    "interfere_mean": "nc2_interference_mean",
    "interfere_std": "nc2_interference_std",
    "log_dist_mean": "gnc2_logkernel_mean",
    "log_dist_std": "gnc2_logkernel_std",
    "sims_mean": "nc3_duality_mean",
    "sims_std": "nc3_duality_std",
    "val_loss": "val_loss",
    "val_acc": "val_acc",
    "perplex": "val_ppl",
    "n_params": "n_params",
}
# (CoV name, their std column, their mean column): CoV = std / mean, signed (§3.3).
COVS = (
    ("nc2_equinorm_cov", "norms_log_std", "norms_log_mean"),
    ("nc2_equiangular_cov", "interfere_std", "interfere_mean"),
    ("gnc2_uniformity_cov", "log_dist_std", "log_dist_mean"),
    ("unc3_duality_cov", "sims_std", "sims_mean"),
)


def is_published(columns) -> bool:
    """Whether a table has the layout of the authors' 2024-05-18 table."""
    return all(c in columns for c in REQUIRED)


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
    """The authors' table in our names: identity columns first, then §3 metrics."""
    if not is_published(df.columns):
        if "log_kern_mean" in df.columns:
            raise UserError(
                "this is the 2024-10-24 table, whose interfere_* columns are dot products, "
                "not cosines; use lc-2024_05_18.csv"
            )
        missing = [c for c in REQUIRED if c not in df.columns]
        raise UserError(f"not the published 2024-05-18 layout: no column(s) {', '.join(missing)}")
    ident = pd.DataFrame([parse_name(n) for n in df["model"]])
    out = pd.DataFrame({"model": df["model"].astype(str).to_numpy()})
    out["width"], out["depth"] = ident["width"], ident["depth"]
    out["n_params"] = df["n_params"].to_numpy() if "n_params" in df else np.nan
    for col in ("epochs", "weight_decay", "seed", "schedule_epochs", "checkpoint"):
        out[col] = ident[col]
    out["run"] = [ids.parse_model_id(n).run for n in out["model"]]  # Figure 5's runs
    for theirs, ours in RENAME.items():
        if theirs in df and ours != "n_params":
            out[ours] = df[theirs].to_numpy(dtype=float)
    for ours, std, mean in COVS:
        if std in df and mean in df:
            out[ours] = df[std].to_numpy(dtype=float) / df[mean].to_numpy(dtype=float)
    hits, misses = df["matches"].to_numpy(dtype=float), df["misses"].to_numpy(dtype=float)
    out["nc4_agreement"] = hits / (hits + misses)
    return out


def load_published(path: str | Path) -> pd.DataFrame:
    """Read and convert the authors' CSV (its unnamed first column is a row index)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"published table {path} not found")
    df = pd.read_csv(path)
    df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])
    return convert(df)


# The 21 models of the paper's Table 1 (§3.8): one 2x768 architecture, 21 seeds.
TABLE1_MODELS = ("02x0768_01d@0", *(f"02x0768_01d{i:02d}@0" for i in range(20)))
