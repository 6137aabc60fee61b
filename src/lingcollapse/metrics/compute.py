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
from lingcollapse.metrics import sampled
from lingcollapse.metrics.conventions import Convention
from lingcollapse.metrics.names import METRICS
from lingcollapse.metrics.pairwise import DEFAULT_TILE, GPU_TILE, pairwise_metrics
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import ValidationStats, means_sha256

if TYPE_CHECKING:  # pandas costs a quarter second to import: only when a table is made
    import pandas as pd

log = logging.getLogger(__name__)
MIN_TILE = 64
# A chunk of rows read at a time: 8 MiB of float64. Blocks of 32 MiB and more are each
# a fresh mmap of glibc's (its threshold stops there) whose pages fault in every time:
# at C = 131,072, d = 4,096 a pass over the means took 2.8 s so, 0.4 s in reused blocks.
BLOCK_ELEMENTS = 1 << 20


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
    z: Tensor | None  # (C, d) μ_c − μ̄; None when rows() centres rows of ``means`` on demand
    norm: Tensor  # (C,) ‖z_c‖
    means: Tensor | None = None  # the train means (V, d), read by rows() when z is None

    @property
    def shape(self) -> tuple[int, int]:
        """(C, d)."""
        return self.kept.numel(), self.centre.numel()

    @functools.cached_property
    def ids(self) -> Tensor:
        """The kept class ids on the CPU, where the train means and classifier live."""
        return self.kept.cpu()

    def rows(self, index: Tensor, out: Tensor | None = None) -> Tensor:
        """z_c of the classes at positions ``index`` (a CPU LongTensor) of S: (n, d)
        float64 on the device, into ``out`` (a reused buffer) when given."""
        if self.z is not None:
            return torch.index_select(self.z, 0, index.to(self.z.device), out=out)
        ids = self.ids[index]
        if out is not None and out.device == self.means.device:
            rows = torch.index_select(self.means, 0, ids, out=out)
        else:  # a GPU's rows cross the bus in chunks (rows_to), without a host copy
            rows = rows_to(self.means, ids, self.centre.device)
            rows = rows if out is None else out.copy_(rows)
        return rows.sub_(self.centre)

    def blocks(self, rows: int | None = None):
        """(slice, z rows (r, d)) over S in chunks of ``rows`` classes (default: 8 MiB of
        float64): views of Z when it is formed, else gathered and centred into one reused
        buffer, valid until the next block."""
        if self.z is not None:
            yield from ((r, self.z[r]) for r in self.slices(rows))
            return
        buf = None
        for r in self.slices(rows):
            n = r.stop - r.start
            if buf is None:
                buf = torch.empty(n, self.shape[1], dtype=torch.float64, device=self.centre.device)
            yield r, self.rows(torch.arange(r.start, r.stop), out=buf[:n])

    def slices(self, rows: int | None = None):
        """Slices of S in chunks of ``rows`` classes (default: 8 MiB of float64 rows)."""
        c, d = self.shape
        rows = rows or max(1, BLOCK_ELEMENTS // d)
        return (slice(lo, min(lo + rows, c)) for lo in range(0, c, rows))

    @functools.cached_property
    def total(self) -> Tensor:
        """Σ_c z_c (d,): zero for the unweighted centre, to rounding."""
        return sum(z.sum(0) for _, z in self.blocks())

    @functools.cached_property
    def unit_sum(self) -> Tensor:
        """Σ_c ẑ_c (d,): Σ_{c<c'} ⟨ẑ_c, ẑ_c'⟩ = (‖Σ_c ẑ_c‖² − C)/2 (Eq. 6)."""
        return sum(torch.mv(z.T, self.norm[r].reciprocal()) for r, z in self.blocks())

    @functools.cached_property
    def zz(self) -> Tensor:
        """ZᵀZ (d, d), made once: the ETF error, Σ_B and Zhu's NC3 all read it, and each
        product costs C·d² multiply-adds, 7% of the pairwise pass's at C = 29k, d = 1,024."""
        if self.z is not None:
            return self.z.T @ self.z
        d = self.shape[1]
        zz = torch.zeros(d, d, dtype=torch.float64, device=self.centre.device)
        for _, z in self.blocks():
            zz.addmm_(z.T, z)
        return zz


def cov(std: float, mean: float) -> float:
    """The signed coefficient of variation std / mean (§3.3); NaN for a zero mean."""
    return std / mean if mean != 0 else math.nan


def _std_mean_cov(x: Tensor) -> tuple[float, float, float]:
    """Population std, mean and CoV of a tensor."""
    var, mean = torch.var_mean(x, correction=0)
    std, mean = math.sqrt(float(var)), float(mean)
    return std, mean, cov(std, mean)


def kept_classes(train: ClassStats, conv: Convention) -> Tensor:
    """S = {c : N_c ≥ min_count} (C,), at least two classes (else a :class:`UserError`)."""
    kept = (train.counts >= conv.min_count).nonzero().squeeze(1)
    if kept.numel() < 2:
        raise UserError(
            f"only {kept.numel()} class(es) have at least {conv.min_count} train samples; "
            "at least 2 are needed: lower --min-count or collect more data"
        )
    return kept


def geometry(
    train: ClassStats, conv: Convention, device: torch.device, lazy: bool = False
) -> Geometry:
    """Kept classes S = {c : N_c ≥ min_count}, σ_c² (Eq. 3) and z_c = μ_c − μ̄ (Eq. 2).

    ``lazy``: Z is never formed, its rows are centred when read (:meth:`Geometry.rows`),
    as sampled pairs need: at C = 131,072, d = 4,096 it would be 4.3 GB more."""
    kept = kept_classes(train, conv)
    if lazy:
        return _lazy_geometry(train, conv, kept, device)
    means = rows_to(train.means, kept, device)  # (C, d)
    m2 = train.m2[kept].to(device)
    _check_finite(kept, means, m2)
    counts = train.counts[kept].to(device)
    n = counts.to(torch.float64)
    sigma2 = _sigma2(m2, n, conv)
    if conv.centre == "weighted":
        centre = (n @ means) / n.sum()
    else:
        centre = means.mean(0)
    z = means.sub_(centre)  # in place: at C = 29k, d = 1024 every (C, d) copy is 240 MB
    norm = z.square().sum(1).sqrt()
    _check_norms(kept, norm)
    return Geometry(kept.to(device), counts, sigma2, centre, z, norm)


def _lazy_geometry(train: ClassStats, conv: Convention, kept: Tensor, device) -> Geometry:
    """The :func:`geometry` of ``train`` without Z: two passes over its means in chunks,
    one for the centre (checking they are finite), one for the norms, Σ_c z_c and
    Σ_c ẑ_c (:attr:`Geometry.total`, :attr:`Geometry.unit_sum`)."""
    m2 = train.m2[kept].to(device)
    counts = train.counts[kept].to(device)
    n = counts.to(torch.float64)
    g = Geometry(kept.to(device), counts, _sigma2(m2, n, conv), None, None, None, train.means)
    g.centre = torch.zeros(train.dim, dtype=torch.float64, device=device)
    total = g.centre.clone()
    for r, mu in g.blocks():  # centre 0: the rows as they are
        part = n[r] @ mu if conv.centre == "weighted" else mu.sum(0)  # (d,)
        if not (torch.isfinite(part).all() and torch.isfinite(m2[r]).all()):
            _check_finite(kept[r], mu, m2[r])  # a NaN or Inf row makes its block's sum one
        total += part
    g.centre = total / (n.sum() if conv.centre == "weighted" else kept.numel())
    norms, total, unit_sum = [], torch.zeros_like(total), torch.zeros_like(total)
    for _, z in g.blocks():
        norms.append(torch.linalg.vector_norm(z, dim=1))  # (r,)
        total += z.sum(0)
        unit_sum += torch.mv(z.T, norms[-1].reciprocal())
    g.norm = torch.cat(norms)
    _check_norms(kept, g.norm)
    g.__dict__.update(total=total, unit_sum=unit_sum)  # the cached properties, made here
    return g


def _sigma2(m2: Tensor, n: Tensor, conv: Convention) -> Tensor:
    """σ_c² (Eq. 3): M2_c / N_c, or / (N_c − 1) for the unbiased convention."""
    return m2 / ((n - 1).clamp_min(1) if conv.variance == "unbiased" else n)


def _check_norms(kept: Tensor, norm: Tensor) -> None:
    if (norm == 0).any():
        bad = int(kept[(norm == 0).nonzero()[0, 0]])
        raise UserError(
            f"the mean of class {bad} equals the centre μ̄, so its direction "
            "(Eq. 5–8) is undefined; raise --min-count to leave such classes out"
        )


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
    return frobenius_distance(etf_inner(g), float(g.zz.square().sum()))


def etf_inner(g: Geometry) -> float:
    """⟨ZZᵀ, (I − 11ᵀ/C)/√(C − 1)⟩ = (‖Z‖_F² − ‖Σ_c z_c‖²/C)/√(C − 1), in O(C·d)."""
    c = g.shape[0]
    return float((g.norm.square().sum() - g.total.square().sum() / c) / math.sqrt(c - 1))


def frobenius_distance(inner: float, norm2: float) -> float:
    """‖A/‖A‖_F − B‖_F = √(2 − 2⟨A, B⟩/‖A‖_F) for a B of unit norm, from ⟨A, B⟩ and
    ‖A‖_F²; monotone in ‖A‖_F², so an interval of it maps to one of the distance."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * inner / math.sqrt(norm2)))


def covariance_metrics(train: ClassStats, g: Geometry, ratio: bool = True) -> dict:
    """Papyan's NC1 tr(Σ_W Σ_B⁺)/C (with ``ratio``: it needs Σ_B's eigendecomposition)
    and Tirer's tr(Σ_W)/tr(Σ_B), with tr Σ_B = ‖Z‖_F²/C (needs ``cov_m2``)."""
    if train.cov_m2 is None:
        return {}
    c = g.shape[0]
    sigma_w = train.cov_m2.to(g.centre.device) / train.n_samples  # (d, d)
    out = {}
    if ratio:
        sigma_b = g.zz / c  # (d, d)
        eigval, eigvec = torch.linalg.eigh(sigma_b)
        cutoff = eigval.max() * eigval.numel() * torch.finfo(torch.float64).eps
        keep = eigval > cutoff
        q = eigvec[:, keep]  # (d, r)
        # tr(Σ_W Σ_B⁺) = Σ_i q_iᵀ Σ_W q_i / λ_i over the nonzero eigenpairs of Σ_B
        out["nc1_covariance_ratio"] = float(((q.T @ sigma_w * q.T).sum(1) / eigval[keep]).sum()) / c
    out["nc1_quotient"] = float(torch.trace(sigma_w) / (g.norm.square().sum() / c))
    return out


@dataclass
class Duality:
    """NC3 of a classifier: its metrics, and the per-class values the table and Zhu's
    error read."""

    metrics: dict
    cos: Tensor  # (C,) cos(w_c, z_c), Eq. 8
    dot: Tensor  # (C,) ⟨w_c, z_c⟩
    w_sum: Tensor  # (d,) Σ_c w_c


def duality_metrics(weight: Tensor, g: Geometry, zhu: bool = True) -> Duality:
    """Self-duality (Eq. 8, 11), uniform duality (UNC3), Papyan's NC3 error and, with
    ``zhu``, Zhu's (its d×d closed form costs C·d² multiply-adds). W_S is read in chunks
    of rows, each widened to float64 alone: no (C, d) float64 copy of it is made."""
    d = g.shape[1]
    if weight.shape[1] != d:
        raise UserError(
            f"the classifier has width {weight.shape[1]} but the embeddings have "
            f"{d}: use the classifier of the model the stats came from"
        )
    if weight.shape[0] <= int(g.kept.max()):
        raise UserError(
            f"the classifier has {weight.shape[0]} classes but the stats count "
            f"class {int(g.kept.max())}: use the matching model"
        )
    cos, dot, distance, papyan, w_sum, wtw = _duality_rows(weight, g, gram=zhu)
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
    }
    if zhu:  # ‖WZᵀ‖_F² = ⟨WᵀW, ZᵀZ⟩
        metrics["nc3_zhu_error"] = frobenius_distance(
            zhu_inner(g, dot, w_sum), float((wtw * g.zz).sum())
        )
    return Duality(metrics, cos, dot, w_sum)


def _duality_rows(weight: Tensor, g: Geometry, gram: bool):
    """Per class cos(w_c, z_c), ⟨w_c, z_c⟩ and ‖ŵ_c − ẑ_c‖ (from the difference, not
    √(2 − 2cos), which loses half the digits near self-duality), Papyan's
    ‖W/‖W‖_F − Z/‖Z‖_F‖_F, Σ_c w_c and, with ``gram``, WᵀW (d, d). Two passes over W_S
    in chunks of rows: its norms first, as Papyan's error needs ‖W‖_F."""
    c, d = g.shape
    device = g.centre.device

    def w_rows(r: slice) -> Tensor:  # (r, d) float64
        return rows_to(weight, g.ids[r], device, torch.float64)

    w_norm = torch.cat([  # (C,) in float64, from the rows as stored
        torch.linalg.vector_norm(weight[g.ids[r]], dim=1, dtype=torch.float64).to(device)
        for r in g.slices()
    ])  # fmt: skip
    w_total, z_total = float(w_norm.square().sum().sqrt()), float(g.norm.square().sum().sqrt())
    cos, dot, distance = (torch.empty(c, dtype=torch.float64, device=device) for _ in "cdd")
    w_sum = torch.zeros(d, dtype=torch.float64, device=device)
    wtw = torch.zeros(d, d, dtype=torch.float64, device=device) if gram else None
    papyan = 0.0
    for r, zc in g.blocks():
        wc = w_rows(r)  # (r, d)
        dot[r] = torch.linalg.vecdot(wc, zc)
        cos[r] = dot[r] / (w_norm[r] * g.norm[r])  # Eq. 8, same class c
        # ŵ_c − ẑ_c and W/‖W‖_F − Z/‖Z‖_F in one (r, d) buffer: few passes over the block
        diff = torch.div(wc, w_norm[r].unsqueeze(1))
        diff.addcdiv_(zc, g.norm[r].unsqueeze(1).expand_as(zc), value=-1.0)
        distance[r] = torch.linalg.vector_norm(diff, dim=1)
        torch.div(wc, w_total, out=diff).add_(zc, alpha=-1.0 / z_total)
        papyan += float(torch.dot(diff.view(-1), diff.view(-1)))
        w_sum += wc.sum(0)
        if wtw is not None:
            wtw.addmm_(wc.T, wc)
    return cos, dot, distance, math.sqrt(papyan), w_sum, wtw


def zhu_inner(g: Geometry, dot: Tensor, w_sum: Tensor) -> float:
    """⟨WZᵀ, (I − 11ᵀ/C)/√(C − 1)⟩ = (Σ_c⟨w_c, z_c⟩ − ⟨Σw, Σz⟩/C)/√(C − 1), with ``dot``
    (C,) = ⟨w_c, z_c⟩ and ``w_sum`` = Σ_c w_c: Zhu's NC3 error is
    :func:`frobenius_distance` of it and ‖WZᵀ‖_F²."""
    c = g.shape[0]
    return float((dot.sum() - w_sum @ g.total / c) / math.sqrt(c - 1))


def ood_deviation(ood: ClassStats, g: Geometry) -> float:
    """Ammar et al.'s NC5: ``mean_c |cos(μ_c − μ̄, μ_G^ood − μ̄)|`` with μ_G^ood the sample
    mean of the out-of-distribution embeddings (both centred by the in-distribution μ̄)."""
    if ood.dim != g.shape[1]:
        raise UserError(f"the OOD stats have width {ood.dim}, the train stats {g.shape[1]}")
    n = ood.counts.to(torch.float64)
    if n.sum() == 0:
        raise UserError("the OOD stats hold no samples")
    ood_mean = (ood.means * n.unsqueeze(1)).sum(0) / n.sum()
    direction = ood_mean.to(g.centre.device) - g.centre
    along = torch.cat([z @ direction for _, z in g.blocks()])  # (C,)
    cos = along / (g.norm * direction.norm())
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
    sample_pairs: int | None = None,
    sample_seed: int | None = None,
) -> Measured:
    """All metrics (Eq. 2–11; each defined in
    :class:`~lingcollapse.metrics.result.Measurement`) and the per-class table. ``tile`` of the
    pairwise pass: None for the default, made smaller when free memory asks for it.
    ``cdnv_control`` adds ``nc1_cdnv_k0``, Eq. 4 with k = 0: the scale-invariant control
    of a k = 2 CDNV, which scales as 1/α² when every embedding is scaled by α.

    ``sample_pairs``: instead of the exact pass, estimate the pairwise metrics from that
    many uniformly drawn pairs of classes, seeded by ``sample_seed`` (default 0; see
    :mod:`~lingcollapse.metrics.sampled`): each estimate ``NAME`` gets ``NAME_ci95`` =
    [low, high], its 95% interval, and ``sampling`` says what was estimated, what is
    exact and what was skipped."""
    conv = conv or Convention()
    device = torch.device(device)
    control = cdnv_control and conv.cdnv_power != 0.0
    if sample_pairs is None:
        _check_memory(train, conv, classifier is not None, device)
    else:  # Z is never formed: the inputs and a few chunks of rows are all it holds
        sampled.check_count(sample_pairs, sample_seed)
        sampled.check_cheaper(sample_pairs, kept_classes(train, conv).numel())
    g = geometry(train, conv, device, lazy=sample_pairs is not None)
    c, d = g.shape
    dense = sample_pairs is None or sampled.dense_affordable(c, d)  # the d×d closed forms

    def duality():
        return None if classifier is None else duality_metrics(classifier[0], g, zhu=dense)

    kept_counts = train.counts[g.kept].double()
    metrics = {
        "n_classes": c,
        "n_samples": train.n_samples,
        "dim": train.dim,
        "vocab_size": train.vocab_size,
        # Appendix A: samples per kept class (TinyStories: 16K on average, std over 32K)
        "samples_per_class_mean": float(kept_counts.mean()),
        "samples_per_class_std": float(kept_counts.std(correction=0)),
    }
    found: dict = {}  # estimated metric → sampled.Estimate
    if sample_pairs is None:
        tile = fit_tile(tile, c, device, control)
        # first: a pass estimated over a minute says so before anything else takes time
        pair = pairwise_metrics(g.z, g.sigma2, conv.cdnv_power, tile, control)
        metrics.update(exact_pairwise(pair))
        nc3 = duality()
    else:
        nc3 = duality()  # its rows are exact; the sampled Zhu error needs its dots
        weight = None if dense or classifier is None else classifier[0]
        seed = sample_seed or 0
        sample = sampled.sample_pairs(g, sample_pairs, seed, conv.cdnv_power, control, weight)
        pair = sampled.estimate(sample, g)
        metrics.update(pair.values)
        found = {**pair.intervals, **({} if dense else dense_estimates(g, pair, nc3))}
        metrics.update({name: e.value for name, e in found.items()})
    if dense:
        metrics["nc2_etf_error"] = etf_error(g)
    ratio = sample_pairs is None or sampled.dense_affordable(c, d, eigen=True)
    metrics.update(covariance_metrics(train, g, ratio))
    metrics.update(norm_metrics(g))
    if nc3 is not None:
        metrics.update(nc3.metrics)
    if ood is not None:
        metrics["nc5_ood_deviation"] = ood_deviation(ood, g)
    if validation is not None:
        metrics.update(validation_metrics(validation, train, conv))
    if sample_pairs is not None:
        skipped = {} if ratio or train.cov_m2 is None else {"nc1_covariance_ratio": _SKIPPED}
        metrics = _sampling_record(metrics, found, skipped, sample_pairs, seed)
    names = None if tokens is None else [tokens.get(int(i), str(int(i))) for i in g.kept.cpu()]
    cos, dot = (None, None) if nc3 is None else (nc3.cos, nc3.dot)
    return Measured(metrics, class_table(g, pair, cos, dot, validation, names))


def exact_pairwise(pair) -> dict:
    """The metrics of the exact pairwise pass (:func:`pairwise_metrics`)."""
    return {
        "nc1_cdnv": pair.cdnv.value,
        **({} if pair.cdnv_control is None else {"nc1_cdnv_k0": pair.cdnv_control.value}),
        "nc2_interference_mean": pair.interference.value,
        "nc2_interference_std": pair.interference.std,
        "nc2_equiangular_cov": cov(pair.interference.std, pair.interference.value),
        "gnc2_logkernel_mean": pair.logkernel.value,
        "gnc2_logkernel_std": pair.logkernel.std,
        "gnc2_uniformity_cov": cov(pair.logkernel.std, pair.logkernel.value),
        "n_degenerate_pairs": pair.n_degenerate_pairs,
    }


_SKIPPED = (
    "Σ_B's d×d form and eigendecomposition exceed the sampled pass's budget "
    "(C·d² + 10·d³ > 2³⁴ multiply-adds); measure without --sample-pairs for it"
)


def dense_estimates(g: Geometry, pair, nc3: Duality | None) -> dict:
    """The ETF error and Zhu's NC3 from sampled pair sums, when their d×d closed forms
    cost too much: ‖ZZᵀ‖_F² = Σ_c ‖z_c‖⁴ + 2 Σ_{c<c'} ⟨z_c, z_c'⟩² and ‖WZᵀ‖_F² =
    Σ_c ⟨w_c, z_c⟩² + Σ_{c<c'} (⟨w_c, z_c'⟩² + ⟨w_c', z_c⟩²), each interval's ends mapped
    through the (monotone) :func:`frobenius_distance`."""
    inner, diagonal = etf_inner(g), float(g.norm.pow(4).sum())
    etf = pair.gram_sum.map(lambda s: frobenius_distance(inner, diagonal + 2.0 * s))
    if nc3 is None:
        return {"nc2_etf_error": etf}
    inner_w, diagonal_w = zhu_inner(g, nc3.dot, nc3.w_sum), float(nc3.dot.square().sum())
    zhu = pair.cross_sum.map(lambda s: frobenius_distance(inner_w, diagonal_w + s))
    return {"nc2_etf_error": etf, "nc3_zhu_error": zhu}


def _sampling_record(metrics: dict, found: dict, skipped: dict, count: int, seed: int) -> dict:
    """``metrics`` with each estimate's ``NAME_ci95`` = [low, high] after it, and the
    ``sampling`` block of metrics.json last."""
    c = metrics["n_classes"]
    record = {}
    for name, value in metrics.items():
        record[name] = value
        if name in found:
            record[f"{name}_ci95"] = [found[name].low, found[name].high]
    record["sampling"] = {
        "pairs": count,
        "seed": seed,
        "pairs_total": c * (c - 1) // 2,
        "confidence": sampled.CONFIDENCE,
        "estimated": list(found),
        "exact": [name for name in METRICS if name in metrics and name not in found],
        "skipped": skipped,
        "nan_columns": list(sampled.NAN_COLUMNS),
        "method": sampled.METHOD,
    }
    return record


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
