"""Every NC metric from train stats, a classifier and validation stats (their definitions:
:class:`~lingcollapse.metrics.result.Measurement`).

``measure`` is the one-shot function: statistics in, the canonical metric names and
the per-class table out. Each property lives in a small function named after it, with
the paper's equation in its docstring.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lingcollapse import memory
from lingcollapse.errors import UserError
from lingcollapse.metrics.conventions import Convention
from lingcollapse.metrics.pairwise import DEFAULT_TILE, GPU_TILE, pairwise_metrics
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import ValidationStats, means_sha256

if TYPE_CHECKING:  # pandas costs a quarter second to import: only when a table is made
    import pandas as pd

log = logging.getLogger(__name__)
MIN_TILE = 64


@dataclass
class Measured:
    metrics: dict  # canonical §3 names → values (plus counts and conventions)
    classes: pd.DataFrame  # one row per kept class


@dataclass
class Geometry:
    """The kept classes and their centred means: what every metric starts from."""

    kept: Tensor  # (C,) class ids
    counts: Tensor  # (C,) int64
    sigma2: Tensor  # (C,) Eq. 3
    centre: Tensor  # (d,) μ̄ (Eq. 2) or the weighted global mean, per the convention
    z: Tensor  # (C, d) μ_c − μ̄
    norm: Tensor  # (C,) ‖z_c‖

    @functools.cached_property
    def zz(self) -> Tensor:
        """ZᵀZ (d, d), made once: the ETF error, Σ_B and Zhu's NC3 all read it, and each
        product costs C·d² multiply-adds, 7% of the pairwise pass's at C = 29k, d = 1,024."""
        return self.z.T @ self.z


def cov(std: float, mean: float) -> float:
    """The signed coefficient of variation std / mean (§3.3); NaN for a zero mean."""
    return std / mean if mean != 0 else math.nan


def _std_mean_cov(x: Tensor) -> tuple[float, float, float]:
    """Population std, mean and CoV of a tensor."""
    var, mean = torch.var_mean(x, correction=0)
    std, mean = math.sqrt(float(var)), float(mean)
    return std, mean, cov(std, mean)


def geometry(train: ClassStats, conv: Convention, device: torch.device) -> Geometry:
    """Kept classes S = {c : N_c ≥ min_count}, σ_c² (Eq. 3) and z_c = μ_c − μ̄ (Eq. 2)."""
    kept = (train.counts >= conv.min_count).nonzero().squeeze(1)
    if kept.numel() < 2:
        raise UserError(
            f"only {kept.numel()} class(es) have at least {conv.min_count} train samples; "
            "at least 2 are needed: lower --min-count or collect more data"
        )
    means = rows_to(train.means, kept, device)  # (C, d)
    m2 = train.m2[kept].to(device)
    _check_finite(kept, means, m2)
    counts = train.counts[kept].to(device)
    n = counts.to(torch.float64)
    denom = (n - 1).clamp_min(1) if conv.variance == "unbiased" else n
    sigma2 = m2 / denom
    if conv.centre == "weighted":
        centre = (n @ means) / n.sum()
    else:
        centre = means.mean(0)
    z = means.sub_(centre)  # in place: at C = 29k, d = 1024 every (C, d) copy is 240 MB
    norm = z.square().sum(1).sqrt()
    if (norm == 0).any():
        bad = int(kept[(norm == 0).nonzero()[0, 0]])
        raise UserError(
            f"the mean of class {bad} equals the centre μ̄, so its direction "
            "(Eq. 5–8) is undefined; raise --min-count to leave such classes out"
        )
    return Geometry(kept.to(device), counts, sigma2, centre, z, norm)


def rows_to(x: Tensor, rows: Tensor, device: torch.device, dtype=None) -> Tensor:
    """``x[rows]`` as a new tensor of ``dtype`` on ``device``, gathered and moved in chunks
    of :data:`memory.MOVE_CHUNK_BYTES`: the host never holds a second (C, d) copy on the
    way to a GPU (4.3 GB at C = 131,072, d = 4,096 in float64), and a float32 classifier
    crosses the bus as float32, to be widened there."""
    rows = rows.to(x.device)
    out = torch.empty((rows.numel(), *x.shape[1:]), dtype=dtype or x.dtype, device=device)
    per = max(1, memory.MOVE_CHUNK_BYTES // max(1, x[0].numel() * x.element_size()))
    for lo in range(0, rows.numel(), per):
        out[lo : lo + per] = x.index_select(0, rows[lo : lo + per]).to(device)
    return out


def _check_finite(kept: Tensor, means: Tensor, m2: Tensor) -> None:
    bad = ~(torch.isfinite(means).all(1) & torch.isfinite(m2))
    if bad.any():
        ids = kept[bad.nonzero().squeeze(1).cpu()][:5].tolist()
        raise UserError(
            f"NaN or Inf in the stats of kept class(es) {ids}: the embeddings "
            "overflowed or the file is corrupt; re-collect (e.g. with --dtype "
            "float32) or raise --min-count to leave them out"
        )


def norm_metrics(g: Geometry) -> dict:
    """Equinormness (Eq. 5): mean, std and CoV of log ‖μ_c − μ̄‖."""
    std, mean, cov = _std_mean_cov(g.norm.log())
    return {"nc2_norm_mean": mean, "nc2_norm_std": std, "nc2_equinorm_cov": cov}


def etf_error(g: Geometry) -> float:
    """Kothapalli's ‖ZZᵀ/‖ZZᵀ‖_F − (I − 11ᵀ/C)/√(C−1)‖_F, by its d×d closed form.

    Both matrices have unit norm, so the error is √(2 − 2⟨A, B⟩) with
    ‖ZZᵀ‖_F = ‖ZᵀZ‖_F and ⟨ZZᵀ, I − 11ᵀ/C⟩ = ‖Z‖_F² − ‖Σ_c z_c‖²/C. Near an exact ETF
    the square root amplifies rounding to ~1e-8 (float64's √u).
    """
    c = g.z.shape[0]
    gram_norm = torch.linalg.matrix_norm(g.zz)  # ‖ZZᵀ‖_F via the d×d Gram
    inner = (g.zz.trace() - g.z.sum(0).square().sum() / c) / math.sqrt(c - 1)  # ‖Z‖_F² = tr ZᵀZ
    return math.sqrt(max(0.0, 2.0 - 2.0 * float(inner / gram_norm)))


def covariance_metrics(train: ClassStats, g: Geometry) -> dict:
    """Papyan's NC1 tr(Σ_W Σ_B⁺)/C and Tirer's tr(Σ_W)/tr(Σ_B) (needs ``cov_m2``)."""
    if train.cov_m2 is None:
        return {}
    c = g.z.shape[0]
    sigma_w = train.cov_m2.to(g.z.device) / train.n_samples  # (d, d)
    sigma_b = g.zz / c  # (d, d)
    eigval, eigvec = torch.linalg.eigh(sigma_b)
    cutoff = eigval.max() * eigval.numel() * torch.finfo(torch.float64).eps
    keep = eigval > cutoff
    q = eigvec[:, keep]  # (d, r)
    # tr(Σ_W Σ_B⁺) = Σ_i q_iᵀ Σ_W q_i / λ_i over the nonzero eigenpairs of Σ_B
    ratio = ((q.T @ sigma_w * q.T).sum(1) / eigval[keep]).sum()
    return {
        "nc1_covariance_ratio": float(ratio) / c,
        "nc1_quotient": float(torch.trace(sigma_w) / torch.trace(sigma_b)),
    }


def duality_metrics(weight: Tensor, g: Geometry) -> tuple[dict, Tensor, Tensor]:
    """Self-duality (Eq. 8, 11), uniform duality (UNC3) and Papyan/Zhu's NC3 errors.

    Returns the metrics and the per-class cosine and dot product.
    """
    if weight.shape[1] != g.z.shape[1]:
        raise UserError(
            f"the classifier has width {weight.shape[1]} but the embeddings have "
            f"{g.z.shape[1]}: use the classifier of the model the stats came from"
        )
    if weight.shape[0] <= int(g.kept.max()):
        raise UserError(
            f"the classifier has {weight.shape[0]} classes but the stats count "
            f"class {int(g.kept.max())}: use the matching model"
        )
    w = rows_to(weight, g.kept, g.z.device, torch.float64)  # (C, d)
    cos, dot, distance, papyan = _duality_rows(w, g)
    cos_std, cos_mean, cos_cov = _std_mean_cov(cos)
    dot_std, dot_mean, _ = _std_mean_cov(dot)
    metrics = {
        "nc3_duality_mean": cos_mean,
        "nc3_duality_std": cos_std,
        "unc3_duality_cov": cos_cov,
        "nc3_distance_mean": float(distance.mean()),  # Eq. 11
        "nc3_dot_mean": dot_mean,
        "nc3_dot_std": dot_std,
        "nc3_papyan_error": papyan,
        "nc3_zhu_error": _zhu_error(w, g, dot),
    }
    return metrics, cos, dot


def _duality_rows(w: Tensor, g: Geometry, rows: int = 4096):
    """Per class cos(w_c, z_c), ⟨w_c, z_c⟩ and ‖ŵ_c − ẑ_c‖ (from the difference, not
    √(2 − 2cos), which loses half the digits near self-duality), and Papyan's
    ‖W/‖W‖_F − Z/‖Z‖_F‖_F; row chunks keep temporaries small."""
    c = w.shape[0]
    w_norm = torch.linalg.vector_norm(w, dim=1)  # (C,)
    w_total, z_total = torch.linalg.matrix_norm(w), torch.linalg.matrix_norm(g.z)
    cos, dot, distance = (torch.empty(c, dtype=torch.float64, device=w.device) for _ in "cdd")
    papyan = 0.0
    for lo in range(0, c, rows):
        r = slice(lo, lo + rows)
        wc, zc = w[r], g.z[r]  # (r, d)
        dot[r] = (wc * zc).sum(1)
        w_unit, z_unit = wc / w_norm[r].unsqueeze(1), zc / g.norm[r].unsqueeze(1)
        cos[r] = (w_unit * z_unit).sum(1)  # Eq. 8, same class c
        distance[r] = torch.linalg.vector_norm(w_unit - z_unit, dim=1)
        papyan += float((wc / w_total - zc / z_total).square().sum())
    return cos, dot, distance, math.sqrt(papyan)


def _zhu_error(w: Tensor, g: Geometry, dot: Tensor) -> float:
    """‖W Zᵀ/‖W Zᵀ‖_F − (I − 11ᵀ/C)/√(C−1)‖_F by its d×d closed form (cf. :func:`etf_error`):
    ‖WZᵀ‖_F² = ⟨WᵀW, ZᵀZ⟩ and ⟨WZᵀ, I − 11ᵀ/C⟩ = Σ_c⟨w_c, z_c⟩ − ⟨Σw, Σz⟩/C, with
    ``dot`` (C,) = ⟨w_c, z_c⟩."""
    c = g.z.shape[0]
    norm = ((w.T @ w) * g.zz).sum().sqrt()
    inner = (dot.sum() - w.sum(0) @ g.z.sum(0) / c) / math.sqrt(c - 1)
    return math.sqrt(max(0.0, 2.0 - 2.0 * float(inner / norm)))


def ood_deviation(ood: ClassStats, g: Geometry) -> float:
    """Ammar et al.'s NC5: ``mean_c |cos(μ_c − μ̄, μ_G^ood − μ̄)|`` with μ_G^ood the sample
    mean of the out-of-distribution embeddings (both centred by the in-distribution μ̄)."""
    if ood.dim != g.z.shape[1]:
        raise UserError(f"the OOD stats have width {ood.dim}, the train stats {g.z.shape[1]}")
    n = ood.counts.to(torch.float64)
    if n.sum() == 0:
        raise UserError("the OOD stats hold no samples")
    ood_mean = (ood.means * n.unsqueeze(1)).sum(0) / n.sum()
    direction = ood_mean.to(g.z.device) - g.centre
    cos = (g.z @ direction) / (g.norm * direction.norm())
    return float(cos.abs().mean())


def validation_metrics(val: ValidationStats, train: ClassStats, conv: Convention) -> dict:
    """val_loss, val_ppl, val_acc and NC4 agreement (Eq. 10), after checking that the
    validation stats were made with these train means and the same kept classes."""
    if val.vocab_size != train.vocab_size:
        raise UserError(
            f"the validation stats have V={val.vocab_size} classes, the train "
            f"stats V={train.vocab_size}: they come from different models"
        )
    expected = means_sha256(train)
    found = val.metadata.get("train_means_sha256")
    if found != expected:
        raise UserError(
            "the validation stats were made from other train means (SHA-256 "
            f"{(found or 'missing')[:12]}… ≠ {expected[:12]}…): re-collect them "
            "with `collect --split validation --train-stats` on these train stats"
        )
    made_with = val.metadata.get("min_count")
    if made_with is not None and int(made_with) != conv.min_count:
        raise UserError(
            f"the validation decisions were made over classes with ≥ {made_with} "
            f"train samples, not {conv.min_count}: pass --min-count {made_with}"
        )
    return val.totals()


def class_table(
    g: Geometry,
    pair,
    cos: Tensor | None,
    dot: Tensor | None,
    val: ValidationStats | None,
    tokens: list[str] | None,
) -> pd.DataFrame:
    """The per-class table, one row per kept class c (what the paper's Tables 4–5 read
    from): ``token_id``, ``token``, ``count`` N_c, ``sigma2`` σ_c² (Eq. 3), ``log_norm``
    log ‖μ_c − μ̄‖, the row means over c' ≠ c of Eq. 4, 6 and 7 (``cdnv_mean``,
    ``interference_mean``, ``logkernel_mean``), ``duality_cos`` (Eq. 8), ``dot``
    ⟨w_c, μ_c − μ̄⟩, ``val_count`` and ``agreement_rate`` (Eq. 10 within the class)."""
    import pandas as pd

    ids = g.kept.cpu()
    nan = torch.full((ids.numel(),), math.nan, dtype=torch.float64)
    table = {
        "token_id": ids.numpy(),
        "token": tokens if tokens is not None else [str(int(i)) for i in ids],
        "count": g.counts.cpu().numpy(),
        "sigma2": g.sigma2.cpu().numpy(),
        "log_norm": g.norm.log().cpu().numpy(),
        "cdnv_mean": pair.row_cdnv.cpu().numpy(),
        "interference_mean": pair.row_interference.cpu().numpy(),
        "logkernel_mean": pair.row_logkernel.cpu().numpy(),
        "duality_cos": (nan if cos is None else cos.cpu()).numpy(),
        "dot": (nan if dot is None else dot.cpu()).numpy(),
    }
    if val is not None:
        n = val.val_counts[ids]
        table["val_count"] = n.numpy()
        table["agreement_rate"] = (val.agree[ids] / n.clamp_min(1)).where(n > 0, nan).numpy()
    else:
        table["val_count"] = torch.zeros_like(ids).numpy()
        table["agreement_rate"] = nan.numpy()
    return pd.DataFrame(table)


def measure(
    train: ClassStats,
    conv: Convention | None = None,
    classifier: tuple[Tensor, Tensor | None] | None = None,
    validation: ValidationStats | None = None,
    ood: ClassStats | None = None,
    tokens: dict[int, str] | None = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    cdnv_control: bool = False,
) -> Measured:
    """All metrics (Eq. 2–11; each defined in
    :class:`~lingcollapse.metrics.result.Measurement`) and the per-class table. ``tile`` of the
    pairwise pass: None for the default, made smaller when free memory asks for it.
    ``cdnv_control`` adds ``nc1_cdnv_k0``, Eq. 4 with k = 0: the scale-invariant control
    of a k = 2 CDNV, which scales as 1/α² when every embedding is scaled by α."""
    conv = conv or Convention()
    device = torch.device(device)
    _check_memory(train, conv, classifier is not None, device)
    g = geometry(train, conv, device)
    control = cdnv_control and conv.cdnv_power != 0.0
    tile = fit_tile(tile, g.z.shape[0], device, control)
    pair = pairwise_metrics(g.z, g.sigma2, conv.cdnv_power, tile, control)
    kept_counts = train.counts[g.kept].double()
    metrics = {
        "n_classes": g.z.shape[0],
        "n_samples": train.n_samples,
        "dim": train.dim,
        "vocab_size": train.vocab_size,
        # Appendix A: samples per kept class (TinyStories: 16K on average, std over 32K)
        "samples_per_class_mean": float(kept_counts.mean()),
        "samples_per_class_std": float(kept_counts.std(correction=0)),
        "nc1_cdnv": pair.cdnv.value,
        **({} if pair.cdnv_control is None else {"nc1_cdnv_k0": pair.cdnv_control.value}),
        **covariance_metrics(train, g),
        **norm_metrics(g),
        "nc2_interference_mean": pair.interference.value,
        "nc2_interference_std": pair.interference.std,
        "nc2_equiangular_cov": cov(pair.interference.std, pair.interference.value),
        "nc2_etf_error": etf_error(g),
        "gnc2_logkernel_mean": pair.logkernel.value,
        "gnc2_logkernel_std": pair.logkernel.std,
        "gnc2_uniformity_cov": cov(pair.logkernel.std, pair.logkernel.value),
        "n_degenerate_pairs": pair.n_degenerate_pairs,
    }
    cos = dot = None
    if classifier is not None:
        nc3, cos, dot = duality_metrics(classifier[0], g)
        metrics.update(nc3)
    if ood is not None:
        metrics["nc5_ood_deviation"] = ood_deviation(ood, g)
    if validation is not None:
        metrics.update(validation_metrics(validation, train, conv))
    names = None if tokens is None else [tokens.get(int(i), str(int(i))) for i in g.kept.cpu()]
    return Measured(metrics, class_table(g, pair, cos, dot, validation, names))


def _check_memory(train: ClassStats, conv: Convention, classifier: bool, device) -> None:
    """Everything but the tiles must fit: Z (C, d) and the largest phase beside it."""
    classes = int((train.counts >= conv.min_count).sum())
    need = memory.measure_device_bytes(classes, train.dim, 0, classifier, train.cov_m2 is not None)
    fix = "raise --min-count to keep fewer classes"
    memory.check_fits(
        need,
        device,
        f"measuring {classes:,} classes of width {train.dim}",
        fix + (", or use --device cpu" if device.type == "cuda" else ""),
    )


def default_tile(device: torch.device, classes: int, free: int, control: bool = False) -> int:
    """The pairwise pass's tile when none is given: the device's own tile, halved (down to
    :data:`MIN_TILE`) until its buffers (:func:`memory.tile_bytes`) fit in ``free`` bytes
    on the CPU, in half of them on a GPU.

    A tile of t × t pairs costs 2·t²·d flops of product (compute-bound) and some twenty
    streaming passes over 8·t² bytes (memory-bound): per pair the same at any t. What t
    changes is the fixed cost of a tile (a few dozen kernel launches, a host sync,
    Python) and where its passes run from. On the CPU 1,024 (:data:`DEFAULT_TILE`) was
    the fastest measured: its buffers sit in cache. On a GPU (CUDA) it is 8,192
    (:data:`GPU_TILE`): no tile worth launching fits in a GPU's L2 (50 MB on an
    H100/H200) anyway, while a tile of 8,192 at d = 4,096 is a 0.55 TFLOP product (8 ms
    at an H100's float64 peak of 67 TFLOP/s), which hides the fixed cost. Its buffers
    take 2 GiB; half the free memory leaves the rest to the caching allocator, cuBLAS's
    workspace and whatever else shares the GPU. A smaller tile leaves every metric the
    same to rounding (the tiles only order the sums)."""
    gpu = device.type == "cuda"
    tile, budget = (GPU_TILE, free // 2) if gpu else (DEFAULT_TILE, free)
    while tile > MIN_TILE and memory.tile_bytes(tile, classes, control) > budget:
        tile //= 2
    return tile


def fit_tile(tile: int | None, classes: int, device: torch.device, control: bool = False) -> int:
    """The pairwise pass's tile: ``tile`` if its buffers fit in free memory (else a
    :class:`UserError`); None: :func:`default_tile`, for the device and its free memory."""
    free = memory.available_bytes(device)
    if tile is None:
        tile = default_tile(device, classes, free, control)
        if tile < default_tile(device, classes, 2**62, control):
            log.info("tile of %d classes, to fit the %s free on %s", tile, memory.gib(free), device)
    need = memory.tile_bytes(tile, classes, control)
    if need > free:
        unit = memory.tile_bytes(1, control=control)
        fits = 2 ** int(math.log2(math.sqrt(free / unit))) if free >= unit else 0
        fix = f"lower --tile (e.g. {fits})" if MIN_TILE <= fits < tile else "free some memory"
        memory.check_fits(need, device, f"a tile of {tile:,} classes", fix, free)
    return tile
