"""The canonical metric names: which way is collapse, and the paper's equation of each
(defined in full in :class:`lingcollapse.metrics.result.Measurement`).

``DIRECTION[name]`` is ``-1`` where smaller values mean more collapse (↓), ``+1`` where
larger ones do (↑), and ``0`` where the value is descriptive. The coefficients of
variation are signed (std / mean, §3.3) and their mean can be negative (interference,
log kernel, log norms below 1), so for them collapse is a value *towards zero* (→0).
"""

from __future__ import annotations

# name: (direction, short description with the paper's equation)
METRICS: dict[str, tuple[int, str]] = {
    "nc1_cdnv": (-1, "NC1 class-distance normalized variance (Eq. 4)"),
    "nc1_cdnv_k0": (-1, "NC1 CDNV with k = 0, scale-invariant (Eq. 4, --cdnv-control)"),
    "nc1_covariance_ratio": (-1, "NC1 tr(Σ_W Σ_B⁺)/C (Papyan)"),
    "nc1_quotient": (-1, "NC1 tr(Σ_W)/tr(Σ_B) (Tirer)"),
    "nc2_norm_mean": (0, "mean log ‖μ_c − μ̄‖ (Eq. 5)"),
    "nc2_norm_std": (-1, "std log ‖μ_c − μ̄‖ (Eq. 5)"),
    "nc2_equinorm_cov": (-1, "NC2 equinormness: CoV of log norms (Eq. 5)"),
    "nc2_interference_mean": (-1, "mean interference ⟨ẑ_c, ẑ_c'⟩ (Eq. 6)"),
    "nc2_interference_std": (-1, "std of interference (Eq. 6)"),
    "nc2_equiangular_cov": (-1, "NC2 equiangularity: CoV of interference (Eq. 6)"),
    "nc2_etf_error": (-1, "NC2 distance to a simplex ETF (Kothapalli)"),
    "gnc2_logkernel_mean": (-1, "mean log inverse distance kernel (Eq. 7)"),
    "gnc2_logkernel_std": (-1, "std of the log kernel (Eq. 7)"),
    "gnc2_uniformity_cov": (-1, "GNC2 hyperspherical uniformity: CoV of Eq. 7"),
    "nc3_duality_mean": (1, "NC3 self-duality: mean cos(w_c, μ_c − μ̄) (Eq. 8)"),
    "nc3_duality_std": (-1, "std of the duality cosines (Eq. 8)"),
    "unc3_duality_cov": (-1, "UNC3 uniform duality: CoV of Eq. 8"),
    "nc3_distance_mean": (-1, "NC3 mean ‖ŵ_c − ẑ_c‖ (Eq. 11)"),
    "nc3_dot_mean": (0, "mean ⟨w_c, μ_c − μ̄⟩"),
    "nc3_dot_std": (0, "std ⟨w_c, μ_c − μ̄⟩"),
    "nc3_papyan_error": (-1, "NC3 ‖W/‖W‖ − Z/‖Z‖‖_F (Papyan)"),
    "nc3_zhu_error": (-1, "NC3 ‖WZᵀ/‖WZᵀ‖ − ETF‖_F (Zhu)"),
    "nc4_agreement": (1, "NC4 linear–NCC classifier agreement (Eq. 10)"),
    "nc5_ood_deviation": (-1, "NC5 mean |cos(μ_c − μ̄, μ_G^ood − μ̄)| (Ammar)"),
    "val_loss": (-1, "validation cross-entropy (token-weighted)"),
    "val_ppl": (-1, "validation perplexity"),
    "val_acc": (1, "validation top-1 accuracy"),
    "ncc_acc": (1, "nearest-class-centre accuracy on validation"),
}

DIRECTION = {name: direction for name, (direction, _) in METRICS.items()}
TOWARD_ZERO = frozenset(
    {"nc2_equinorm_cov", "nc2_equiangular_cov", "gnc2_uniformity_cov", "unc3_duality_cov"}
)
ARROW = {-1: "↓", 1: "↑", 0: " "}


def arrow(name: str) -> str:
    """↓, ↑ or →0 for the direction of collapse (or of better generalization)."""
    return "→0" if name in TOWARD_ZERO else ARROW[DIRECTION.get(name, 0)]
