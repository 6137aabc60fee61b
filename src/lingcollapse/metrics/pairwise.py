"""Pairwise NC metrics from one fused, tiled, symmetric pass over the Gram matrix.

CDNV (Eq. 4), interference (Eq. 6) and the logarithmic kernel (Eq. 7) are functions of
the C×C Gram matrix ``G = Z Zᵀ`` of the centred means. At the paper's scale (C = 29,233)
that matrix is 6.8 GB in float64, so it is never formed: tiles ``G[I, J]`` with
``J ≥ I`` are made one at a time, and every metric, its mean and std over the unordered
pairs, and the per-class row sums are read off each tile while it is in cache.
Memory is O(C·d + tile²); the same code runs on CPU and CUDA.

Precision. Distances come from the expansion ``‖z_i − z_j‖² = ‖z_i‖² + ‖z_j‖² − 2⟨z_i,z_j⟩``,
which cancels digits when two means nearly coincide. Every pair whose unit vectors are
closer than ``sqrt(NEAR)`` (which includes every pair of nearly coinciding means) is
recomputed from the difference of the vectors themselves, so all pairs keep float64
accuracy. Pairs whose means coincide exactly make Eq. 4 and 7 infinite: they are left
out of those means and counted; pairs whose *directions* coincide leave Eq. 7 only.
Means and variances over pairs are merged tile by tile with Chan's formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Pairs with ‖ẑ_i − ẑ_j‖² below this are recomputed from vector differences. With
# float64's unit roundoff u ≈ 1.1e-16 the expansion's error is ≲ d·u relative to the
# norms, so above NEAR the relative error stays ≲ d·u/NEAR ≈ 1e-10 even for d = 1024.
NEAR = 1e-3
DEFAULT_TILE = 1024


@dataclass
class Moments:
    """Count, mean and M2 of a stream of numbers, merged with Chan's formula."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def add_values(self, x: Tensor) -> None:
        if x.numel():
            var, mean = torch.var_mean(x, correction=0)  # one stable (Welford) reduction
            self.add(x.numel(), float(mean), float(var) * x.numel())

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    @property
    def value(self) -> float:
        return self.mean if self.n else math.nan


@dataclass
class PairwiseResult:
    """Means/stds over unordered pairs and per-class row means (over c' ≠ c)."""

    cdnv: Moments  # Eq. 4, degenerate pairs left out
    interference: Moments  # Eq. 6
    logkernel: Moments  # Eq. 7, pairs with coinciding directions left out
    n_degenerate_pairs: int  # means coincide
    n_degenerate_directions: int  # unit vectors coincide (includes the above)
    row_cdnv: Tensor  # (C,)
    row_interference: Tensor  # (C,)
    row_logkernel: Tensor  # (C,)


class _Rows:
    """Per-class row sums and counts of one pairwise quantity."""

    def __init__(self, c: int, device: torch.device) -> None:
        self.sum = torch.zeros(c, dtype=torch.float64, device=device)
        self.count = torch.zeros(c, dtype=torch.float64, device=device)

    def add(self, i: slice, j: slice, x: Tensor, counts_i: Tensor, counts_j: Tensor) -> None:
        self.sum[i] += x.sum(1)
        self.sum[j] += x.sum(0)
        self.count[i] += counts_i
        self.count[j] += counts_j

    def means(self) -> Tensor:
        return self.sum / self.count


def pairwise_metrics(
    z: Tensor, sigma2: Tensor, cdnv_power: float = 2.0, tile: int = DEFAULT_TILE
) -> PairwiseResult:
    """CDNV (Eq. 4), interference (Eq. 6) and log kernel (Eq. 7) over all pairs c < c'.

    ``z`` (C, d) float64 centred class means, ``sigma2`` (C,) within-class variances (Eq. 3).
    The CDNV of a pair is ``(σ_c² + σ_c'²) / (2 ‖μ_c − μ_c'‖^(2+k))`` with k = ``cdnv_power``.
    """
    c = z.shape[0]
    norm2 = z.square().sum(1)  # (C,)
    norm = norm2.sqrt()
    inv = 1.0 / norm
    acc = _Accumulators(c, z.device)
    for i0 in range(0, c, tile):
        i = slice(i0, min(i0 + tile, c))
        for j0 in range(i0, c, tile):
            j = slice(j0, min(j0 + tile, c))
            gram = z[i] @ z[j].T  # (a, b)
            _tile(acc, i, j, gram, z, norm2, inv, sigma2, cdnv_power)
    return acc.result()


class _Accumulators:
    def __init__(self, c: int, device: torch.device) -> None:
        self.cdnv, self.interference, self.logkernel = Moments(), Moments(), Moments()
        self.rows = {name: _Rows(c, device) for name in ("cdnv", "interference", "logkernel")}
        self.n_degenerate = 0
        self.n_degenerate_dir = 0

    def result(self) -> PairwiseResult:
        return PairwiseResult(
            self.cdnv,
            self.interference,
            self.logkernel,
            self.n_degenerate,
            self.n_degenerate_dir,
            self.rows["cdnv"].means(),
            self.rows["interference"].means(),
            self.rows["logkernel"].means(),
        )


def _tile(acc, i, j, gram, z, norm2, inv, sigma2, power) -> None:
    """All pairwise quantities of one tile; ``gram`` is overwritten (it becomes cos)."""
    # ‖z_i − z_j‖² by expansion: D = ‖z_i‖² + ‖z_j‖² − 2⟨z_i, z_j⟩   (a, b)
    dist2 = torch.add(norm2[j].unsqueeze(0), gram, alpha=-2.0).add_(norm2[i].unsqueeze(1))
    cos = gram.mul_(inv[i].unsqueeze(1)).mul_(inv[j].unsqueeze(0))  # Eq. 6
    kern2 = torch.rsub(cos, 2.0, alpha=2.0)  # ‖ẑ_i − ẑ_j‖² = 2 − 2 cos
    diagonal = i.start == j.start
    if diagonal:  # the self-pairs are not pairs: keep them away from the near test
        kern2.diagonal().fill_(math.inf)
    near = None
    if float(kern2.min()) < NEAR:
        near = _recompute_near(i, j, z, inv, dist2, kern2, cos)

    cdnv = torch.add(sigma2[i].unsqueeze(1), sigma2[j].unsqueeze(0))  # (a, b)
    if power == 2.0:
        cdnv.div_(dist2.square_()).mul_(0.5)
    else:
        cdnv.div_(dist2.pow_(1.0 + power / 2.0)).mul_(0.5)
    logk = kern2.log_().mul_(-0.5)  # Eq. 7: log(1/‖ẑ_i − ẑ_j‖)

    if diagonal or near is not None:
        _add_masked(acc, i, j, cdnv, cos, logk, diagonal)
        return
    a, b = cos.shape
    ones_i = torch.full((a,), float(b), dtype=torch.float64, device=cos.device)
    ones_j = torch.full((b,), float(a), dtype=torch.float64, device=cos.device)
    for name, x in (("cdnv", cdnv), ("interference", cos), ("logkernel", logk)):
        getattr(acc, name).add_values(x)
        acc.rows[name].add(i, j, x, ones_i, ones_j)


def _recompute_near(i, j, z, inv, dist2, kern2, cos) -> Tensor:
    """Exact distances for nearly coinciding pairs, from the vector differences."""
    rows, cols = (kern2 < NEAR).nonzero(as_tuple=True)
    gi, gj = rows + i.start, cols + j.start
    dist2[rows, cols] = (z[gi] - z[gj]).square().sum(1)
    k2 = (z[gi] * inv[gi].unsqueeze(1) - z[gj] * inv[gj].unsqueeze(1)).square().sum(1)
    kern2[rows, cols] = k2
    cos[rows, cols] = 1.0 - 0.5 * k2
    return rows


def _add_masked(acc, i, j, cdnv, cos, logk, diagonal: bool) -> None:
    """Slow path for diagonal tiles (upper triangle only) and tiles with degenerate pairs."""
    valid = torch.ones_like(cos, dtype=torch.bool)
    if diagonal:
        valid = torch.triu(valid, diagonal=1)
    ok_cdnv = valid & torch.isfinite(cdnv)
    ok_logk = valid & torch.isfinite(logk)
    acc.n_degenerate += int((valid & ~ok_cdnv).sum())
    acc.n_degenerate_dir += int((valid & ~ok_logk).sum())
    for name, x, ok in (
        ("cdnv", cdnv, ok_cdnv),
        ("interference", cos, valid),
        ("logkernel", logk, ok_logk),
    ):
        getattr(acc, name).add_values(x[ok])
        masked = torch.where(ok, x, 0.0)
        acc.rows[name].add(i, j, masked, ok.sum(1).double(), ok.sum(0).double())
