"""Which columns are metrics, which way is collapse, and how figures label them.

The ↑/↓ table itself lives in :mod:`lingcollapse.metrics.names` (``DIRECTION``), written
with the metrics; it is re-exported here so that analysis, figures and report read the
same single table. Note that a CoV is signed (std / mean, §3.3): for
``gnc2_uniformity_cov`` the mean log kernel is usually negative, so less variation (more
uniformity, ↓ in magnitude) reads as a *larger* signed value; in the published data it
correlates with val_loss at r = −0.85 for that reason.

This module adds what only the analysis needs: the identity columns of a results table,
which columns count as metrics, and axis labels with the paper's equation numbers.
"""

from __future__ import annotations

import re

import numpy as np

from lingcollapse.metrics.names import ARROW, DIRECTION, METRICS, TOWARD_ZERO, arrow

__all__ = [
    "ARROW",
    "CI_SUFFIX",
    "DIRECTION",
    "IDENTITY",
    "LABELS",
    "LOG_SCALE",
    "METRICS",
    "arrow",
    "collapse_score",
    "has_direction",
    "is_metric",
    "label",
    "plotted",
]

# Metrics that span decades: figures draw them on a log axis (Figures 1, 6: "average
# (logarithmic) CDNV"), and their R² is annotated in those coordinates.
LOG_SCALE = frozenset({"nc1_cdnv", "nc1_cdnv_k0", "nc1_covariance_ratio", "nc1_quotient"})

# One row per model in a results table.
IDENTITY = ("model", "width", "depth", "n_params", "epochs", "weight_decay", "seed")

# Columns that a metric-like name pattern would catch but that are not properties.
_NOT_METRICS = {"n_classes", "n_samples", "dim", "n_degenerate_pairs", "cdnv_power", "min_count"}
# What names a model's data (Appendix A), never correlated: S, T, V, samples per class.
DATA = (
    "corpus",
    "tokenizer",
    "data_sha256",
    "n_sequences",
    "seq_len",
    "n_samples",
    "vocab_size",
    "n_classes",
    "samples_per_class_mean",
    "samples_per_class_std",
)
# Future or user-added NC columns (nc1_…, gnc2_…, unc3_…) are analysed too.
_NC_PATTERN = re.compile(r"^(g|u)?nc\d+_")
# An estimate's 95% interval (measure --sample-pairs): NAME_ci95 in metrics.json, its
# ends NAME_ci95_low and NAME_ci95_high in a results table; never a metric of its own.
CI_SUFFIX = "_ci95"
_INTERVAL = re.compile(r"_ci95(_low|_high)?$")

# Axis labels: the paper's names and equation numbers (§3.4–3.7).
LABELS = {
    "nc1_cdnv": "NC1: CDNV (Eq. 4)",
    "nc1_cdnv_k0": "NC1: CDNV, k = 0 (scale-invariant)",
    "nc1_covariance_ratio": "NC1: tr(Σ_W Σ_B⁺)/C",
    "nc1_quotient": "NC1: tr(Σ_W)/tr(Σ_B)",
    "nc2_norm_mean": "mean log-norm of class means (Eq. 5)",
    "nc2_norm_std": "std of log-norms (Eq. 5)",
    "nc2_equinorm_cov": "NC2 equinorm: CoV log-norms (Eq. 5)",
    "nc2_interference_mean": "mean interference (Eq. 6)",
    "nc2_interference_std": "std of interference (Eq. 6)",
    "nc2_equiangular_cov": "NC2 equiangular: CoV interference (Eq. 6)",
    "nc2_etf_error": "NC2: distance to simplex ETF",
    "gnc2_logkernel_mean": "mean log-kernel distance (Eq. 7)",
    "gnc2_logkernel_std": "std of log-kernel (Eq. 7)",
    "gnc2_uniformity_cov": "GNC2 uniformity: CoV log-kernel (Eq. 7)",
    # the authors' 2024-05 table: Eq. 7's kernel on normalised *uncentred* means
    "gnc2_logkernel_uncentred_mean": "mean log-kernel, uncentred means",
    "gnc2_logkernel_uncentred_std": "std of log-kernel, uncentred means",
    "gnc2_uniformity_uncentred_cov": "GNC2 uniformity: CoV log-kernel, uncentred means",
    # the authors' 2024-10 table: dot products of centred means, not Eq. 6's cosines
    "nc2_interference_dot_mean": "mean ⟨μ_c − μ̄, μ_c' − μ̄⟩ (dot, not Eq. 6)",
    "nc2_interference_dot_std": "std ⟨μ_c − μ̄, μ_c' − μ̄⟩ (dot, not Eq. 6)",
    "nc3_duality_mean": "NC3 self-duality: mean cos (Eq. 8)",
    "nc3_duality_std": "std of duality cosines (Eq. 8)",
    "unc3_duality_cov": "UNC3 uniform duality: CoV (Eq. 8)",
    "nc3_distance_mean": "NC3: mean ‖ŵ − ẑ‖ (Eq. 11)",
    "nc3_dot_mean": "mean ⟨w_c, μ_c − μ̄⟩",
    "nc3_dot_std": "std ⟨w_c, μ_c − μ̄⟩",
    "nc3_zhu_error": "NC3: self-duality error ‖WZᵀ/‖WZᵀ‖ − ETF‖",
    "nc3_papyan_error": "NC3: ‖W/‖W‖ − Z/‖Z‖‖_F (Papyan)",
    "nc4_agreement": "NC4: classifier agreement (Eq. 10)",
    "ncc_acc": "nearest-class-centre accuracy (Eq. 9)",
    "val_loss": "validation loss (cross-entropy)",
    "val_ppl": "validation perplexity",
    "val_acc": "validation accuracy",
    "width": "width d",
    "depth": "depth L",
}


def is_metric(name: str) -> bool:
    """A column that ``analyze`` correlates: a §3 name, or an NC-style name."""
    if name in IDENTITY or name in _NOT_METRICS or _INTERVAL.search(name):
        return False
    return name in METRICS or bool(_NC_PATTERN.match(name))


def label(name: str) -> str:
    """Axis label with the paper's equation and the direction of collapse."""
    text = LABELS.get(name, name)
    mark = arrow(name).strip()
    return f"{text} {mark}" if mark and name in METRICS and not name.startswith("val_") else text


def plotted(name: str, values) -> tuple[np.ndarray, bool]:
    """The coordinates a figure draws ``name`` in, and whether that is a log axis.

    A :data:`LOG_SCALE` metric whose finite values are all positive is drawn on a log
    axis, where a straight trend is linear in log x: its R² as plotted is that of
    ``log10(x)``. Any other column is drawn as it is.
    """
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)]
    if name in LOG_SCALE and finite.size and (finite > 0).all():
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(x), True
    return x, False


def has_direction(name: str) -> bool:
    """Whether collapse moves ``name`` one known way: ↓, ↑, or →0 for a signed CoV."""
    return name in TOWARD_ZERO or name.endswith("_cov") or DIRECTION.get(name, 0) != 0


def collapse_score(name: str, values) -> np.ndarray:
    """``values`` of a metric oriented so that larger is more collapse, in the
    coordinates the figures plot: −x for ↓ (−log10 x for CDNV), x for ↑, −|x| for the
    signed CoVs that collapse drives to zero (→0)."""
    x, _ = plotted(name, values)
    if name in TOWARD_ZERO or name.endswith("_cov"):
        return -np.abs(x)
    return x if DIRECTION.get(name, -1) > 0 else -x
