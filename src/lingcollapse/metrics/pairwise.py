"""Pairwise NC metrics from one fused, tiled, symmetric pass over the Gram matrix.

CDNV (Eq. 4), interference (Eq. 6) and the logarithmic kernel (Eq. 7) are functions of
the C×C Gram matrix ``G = Z Zᵀ`` of the centred means. At the paper's scale (C = 29,233)
that matrix is 6.8 GB in float64, so it is never formed: tiles ``G[I, J]`` with
``J ≥ I`` are made one at a time, and every metric, its mean and std over the unordered
pairs, and the per-class row sums are read off each tile. Memory is O(C·d + tile²): three
float64 tiles, allocated once and reused; the same code runs on CPU and CUDA.

Speed. The product costs d multiply-adds per pair; what follows costs streaming passes
over the tile, each a memory-bound torch op, so they are kept few (twenty-one, one of
them a log) and in place: constant factors (the ½ of Eq. 4, the −½ and log 2 of Eq. 7,
the sign of Eq. 6) are applied once to the final sums instead of per pair, and masks,
finiteness checks and recomputations run only on the tiles that need them (the diagonal
ones, and those holding nearly coinciding pairs). Tiles of 1,024 classes were the
fastest measured at the paper's scale on a 2-core CPU: smaller ones keep more of the
passes in cache but pay torch's per-op overhead more often, larger ones spill further.
On a GPU the tile is 8,192 (:data:`GPU_TILE`): see
:func:`~lingcollapse.metrics.compute.default_tile`.

Time. The pass times its own first tiles and extrapolates (:func:`_calibrate`); one that
would take longer than :data:`NOTICE_SECONDS` says so, with its estimate, before going on.

Precision. Distances come from the expansion ``‖z_i − z_j‖² = ‖z_i‖² + ‖z_j‖² − 2⟨z_i,z_j⟩``,
which cancels digits when two means nearly coincide. Every pair whose unit vectors are
closer than ``sqrt(NEAR)`` (which includes every pair of nearly coinciding means) is
recomputed from the difference of the vectors themselves, so all pairs keep float64
accuracy. Pairs whose means coincide exactly make Eq. 4 and 7 infinite: they are left
out of those means and counted; pairs whose *directions* coincide leave Eq. 7 only. Only
such pairs can be infinite, so only tiles with near pairs are searched for them.
Variances over pairs never use Σx² − (Σx)²/n, which loses every digit when the values
share a large offset: each tile row is shifted by its own mean (the row sums are needed
anyway), so a tile's M2 = Σ (x − x̄_row)² + Σ n_row (x̄_row − x̄)², and tiles are merged
with Chan's formula.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from lingcollapse.progress import progress

log = logging.getLogger(__name__)

# Pairs with ‖ẑ_i − ẑ_j‖² below this are recomputed from vector differences. With
# float64's unit roundoff u ≈ 1.1e-16 the expansion's error is ≲ d·u relative to the
# norms, so above NEAR the relative error stays ≲ d·u/NEAR ≈ 1e-10 even for d = 1024.
NEAR = 1e-3
DEFAULT_TILE = 1024  # on the CPU (see above)
GPU_TILE = 8192  # on CUDA (see compute.default_tile)
# A pass estimated to take longer than this logs its estimate before going on.
NOTICE_SECONDS = 60.0
# The estimate times the tiles after the first until this long or this many have run:
# they are tiles of the pass itself, so a longer look costs nothing but a later notice.
CALIBRATE_SECONDS, CALIBRATE_TILES = 2.0, 32
# Said after the estimate: the exact pass has a quicker, sampled alternative.
SAMPLE_HINT = "; --sample-pairs 1000000 estimates them in seconds"
_clock = time.perf_counter  # the estimate's clock (a test steps it by hand)


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

    def affine(self, scale: float, offset: float = 0.0) -> Moments:
        """The moments of ``scale·x + offset``."""
        return Moments(self.n, scale * self.mean + offset, scale * scale * self.m2)

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
    cdnv_control: Moments | None = None  # Eq. 4 with k = 0 (scale-invariant), if asked
    seconds_estimate: float | None = None  # the pass's time, extrapolated (one tile: None)


class _Quantity:
    """One pairwise quantity: its moments over pairs and its per-class row sums."""

    def __init__(self, c: int, device: torch.device) -> None:
        self.row_sum = torch.zeros(c, dtype=torch.float64, device=device)
        self.left_out = torch.zeros(c, dtype=torch.float64, device=device)  # pairs per class
        self.tiles: list[tuple[int | Tensor, Tensor]] = []  # (n, (mean, M2)) per tile

    def add(self, i: slice, j: slice, x: Tensor, per_row, lower, search: bool) -> int:
        """Add the pairs of tile ``x`` (a, b) but those in ``lower`` (the self-pairs and
        repeats of a diagonal tile) and, if ``search``, those whose value is not finite,
        which are counted and returned. ``per_row``: the pairs in each row of the tile,
        (a,) or one number. ``x`` is destroyed."""
        if lower is not None:
            x.masked_fill_(lower, 0.0)
        bad = _not_finite(x) if search else None
        if bad is not None:
            x[bad] = 0.0
            per_row = self._leave_out(i, j, bad, _as_tensor(per_row, x.shape[0], x))
        rows = x.sum(1)  # (a,)
        self.row_sum[i] += rows
        self.row_sum[j] += x.sum(0)
        # Shift each row by its mean before squaring, so that a common offset cancels
        # before it can swamp the spread: M2 = Σ (x − x̄_row)² + Σ n_row (x̄_row − x̄)².
        if isinstance(per_row, Tensor):
            n, row_mean = per_row.sum(), rows / per_row.clamp_min(1.0)  # (a,)
        else:
            n, row_mean = x.numel(), rows / per_row
        x.sub_(row_mean.unsqueeze(1))
        if lower is not None:
            x.masked_fill_(lower, 0.0)
        if bad is not None:
            x[bad] = 0.0
        flat = x.view(-1)
        mean = rows.sum() / n
        m2 = torch.dot(flat, flat) + (per_row * (row_mean - mean).square()).sum()
        self.tiles.append((n, torch.stack((mean, m2))))  # read once, at the end: no sync
        return 0 if bad is None else bad[0].numel()

    def _leave_out(self, i: slice, j: slice, bad: tuple[Tensor, Tensor], per_row: Tensor):
        """Count the pairs ``bad`` (rows, cols of the tile) out; the pairs per row left."""
        ones = torch.ones(bad[0].numel(), dtype=per_row.dtype, device=per_row.device)
        self.left_out.index_add_(0, bad[0] + i.start, ones)
        self.left_out.index_add_(0, bad[1] + j.start, ones)
        return per_row.index_add(0, bad[0], -ones)

    def result(self, scale: float, offset: float = 0.0) -> tuple[Moments, Tensor]:
        """Moments and row means of ``scale·x + offset``, the tiles merged by Chan's formula."""
        moments = Moments()
        stats = torch.stack([s for _, s in self.tiles]).tolist()
        for (n, _), (mean, m2) in zip(self.tiles, stats, strict=True):
            moments.add(round(float(n)), mean, m2)
        pairs = (self.row_sum.numel() - 1) - self.left_out  # (C,) pairs c' ≠ c kept
        rows = self.row_sum / pairs
        return moments.affine(scale, offset), rows.mul_(scale).add_(offset)


def _not_finite(x: Tensor) -> tuple[Tensor, Tensor] | None:
    """(rows, cols) of the values of ``x`` that are not finite, or None."""
    bad = (~torch.isfinite(x)).nonzero(as_tuple=True)
    return bad if bad[0].numel() else None


def _as_tensor(count: float | Tensor, size: int, like: Tensor) -> Tensor:
    if isinstance(count, Tensor):
        return count
    return torch.full((size,), float(count), dtype=like.dtype, device=like.device)


class _Workspace:
    """The tiles, allocated once and reused: a fresh (t, t) float64 tensor per tile
    would page-fault its 8·t² bytes every time, which costs as much as several passes
    over it. Views of the flat buffers are contiguous (a, b)."""

    def __init__(self, tile: int, device: torch.device, control: bool = False) -> None:
        flat = [
            torch.empty(tile * tile, dtype=torch.float64, device=device)
            for _ in range(4 if control else 3)
        ]
        # the Gram tile (→ −cos), ‖z_i − z_j‖² (→ log kernel), the CDNV (and its control)
        self.tiles = flat
        # Diagonal tiles leave out their lower triangle and diagonal (not pairs c < c').
        self.lower = torch.ones(tile, tile, dtype=torch.bool, device=device).tril_()
        self.ramp = torch.arange(tile, dtype=torch.float64, device=device)  # (t,)

    def views(self, a: int, b: int) -> list[Tensor]:
        return [buf[: a * b].view(a, b) for buf in self.tiles]

    def diagonal(self, a: int) -> tuple[Tensor, Tensor]:
        """The left-out mask (a, a) and the pairs per row (a,) of a diagonal tile: row r
        pairs with the a − 1 − r classes after it."""
        return self.lower[:a, :a], self.ramp[:a].flip(0)


def pairwise_metrics(
    z: Tensor,
    sigma2: Tensor,
    cdnv_power: float = 2.0,
    tile: int = DEFAULT_TILE,
    control: bool = False,
) -> PairwiseResult:
    """CDNV (Eq. 4), interference (Eq. 6) and log kernel (Eq. 7) over all pairs c < c'.

    ``z`` (C, d) float64 centred class means, ``sigma2`` (C,) within-class variances (Eq. 3).
    The CDNV of a pair is ``(σ_c² + σ_c'²) / (2 ‖μ_c − μ_c'‖^(2+k))`` with k = ``cdnv_power``;
    with ``control`` also with k = 0, which, unlike k = 2, does not change when every
    embedding is scaled (one more pass over each tile and a fourth tile buffer).
    """
    c, d = z.shape
    tile = min(tile, c)
    control = control and cdnv_power != 0.0
    work = _Workspace(tile, z.device, control)
    norm = torch.linalg.vector_norm(z, dim=1)  # (C,), with no (C, d) temporary
    norm2, inv = norm.square(), 1.0 / norm
    acc = _Accumulators(c, z.device, cdnv_power, control)

    def step(i: slice, j: slice) -> None:
        tiles = work.views(i.stop - i.start, j.stop - j.start)
        torch.mm(z[i], z[j].T, out=tiles[0])  # (a, b) ⟨z_i, z_j⟩
        _tile(acc, work, i, j, tiles, z, norm2, inv, sigma2)

    sizes = [min(tile, c - s) for s in range(0, c, tile)]
    n_tiles = len(sizes) * (len(sizes) + 1) // 2
    pairs = (c * c + sum(a * a for a in sizes)) // 2  # Σ a·b over the tiles J ≥ I
    blocks = _blocks(c, tile)
    done, seconds = _calibrate(blocks, step, pairs, z.device)
    if seconds is not None and seconds > NOTICE_SECONDS and done < n_tiles:
        log.info(
            "measure: exact pairwise pass over %s tiles of %s classes (C = %s, d = %s): "
            "about %s on %s%s",
            *(f"{x:,}" for x in (n_tiles, tile, c, d)),
            duration(seconds),
            z.device,
            SAMPLE_HINT,
        )
    with progress(total=n_tiles, initial=done, desc="pairs", unit="tile", leave=False) as bar:
        for i, j in blocks:
            step(i, j)
            bar.update(1)
    result = acc.result()
    result.seconds_estimate = seconds
    return result


def _blocks(c: int, tile: int) -> Iterator[tuple[slice, slice]]:
    """The tiles (I, J) with J ≥ I, row by row: the first is a diagonal one."""
    for i0 in range(0, c, tile):
        i = slice(i0, min(i0 + tile, c))
        for j0 in range(i0, c, tile):
            yield i, slice(j0, min(j0 + tile, c))


def _calibrate(
    blocks: Iterator[tuple[slice, slice]],
    step: Callable[[slice, slice], None],
    pairs: int,
    device: torch.device,
) -> tuple[int, float | None]:
    """Run the pass's first tiles and extrapolate the time of the whole pass.

    A tile of a × b classes costs in proportion to its a·b pairs: d multiply-adds and a
    fixed number of streaming passes per pair. The first tile is not timed (it warms up
    the allocator, cuBLAS and the caches); the next are, until :data:`CALIBRATE_SECONDS`
    or :data:`CALIBRATE_TILES`, and their time per pair times the ``pairs`` of the whole
    pass is the estimate. CUDA runs asynchronously: the clock is read after a
    synchronize. Returns the tiles done and the estimate (None after a single tile).
    """
    done, timed, start, elapsed = 0, 0, 0.0, 0.0
    for i, j in blocks:
        step(i, j)
        done += 1
        _synchronize(device)
        if done == 1:
            start = _clock()
            continue
        timed += (i.stop - i.start) * (j.stop - j.start)
        elapsed = _clock() - start
        if elapsed >= CALIBRATE_SECONDS or done > CALIBRATE_TILES:
            break
    return done, (elapsed / timed * pairs if timed else None)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def duration(seconds: float) -> str:
    """``45 s``, ``31 min`` or ``2.5 h``: an estimate's precision, no more."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Accumulators:
    def __init__(self, c: int, device: torch.device, power: float, control: bool) -> None:
        self.power = power
        # Raw per-pair values; result() maps them to the metrics (see _tile).
        self.cdnv, self.cos, self.log = (_Quantity(c, device) for _ in range(3))
        self.control = _Quantity(c, device) if control else None
        self.n_degenerate = 0
        self.n_degenerate_dir = 0

    def result(self) -> PairwiseResult:
        cdnv, row_cdnv = self.cdnv.result(0.5)  # Eq. 4's ½
        interference, row_interference = self.cos.result(-1.0)  # cos = −(−cos)
        # Eq. 7: log(1/‖ẑ_i − ẑ_j‖) = −½ log(2 − 2cos) = −½ (log 2 + log(1 − cos))
        logkernel, row_logkernel = self.log.result(-0.5, -0.5 * math.log(2.0))
        return PairwiseResult(
            cdnv,
            interference,
            logkernel,
            self.n_degenerate,
            self.n_degenerate_dir,
            row_cdnv,
            row_interference,
            row_logkernel,
            None if self.control is None else self.control.result(0.5)[0],
        )


def _tile(acc, work, i, j, tiles, z, norm2, inv, sigma2) -> None:
    """All pairwise quantities of one tile, every (a, b) op in place in ``tiles``: the
    Gram tile (which becomes −cos) and two buffers."""
    gram, dist2, cdnv = tiles[:3]
    a, b = gram.shape
    # ‖z_i − z_j‖² = ‖z_i‖² + ‖z_j‖² − 2⟨z_i, z_j⟩   (a, b)
    torch.add(norm2[j].unsqueeze(0), gram, alpha=-2.0, out=dist2).add_(norm2[i].unsqueeze(1))
    neg_cos = gram.mul_(-inv[i].unsqueeze(1)).mul_(inv[j].unsqueeze(0))  # −cos (Eq. 6)
    lower, per_row = None, float(b)
    if i.start == j.start:  # the self-pairs are not pairs: keep them away from the near test
        neg_cos.diagonal().fill_(0.0)
        lower, per_row = work.diagonal(a)
    near = None
    if float(neg_cos.amin()) < 0.5 * NEAR - 1.0:  # ‖ẑ_i − ẑ_j‖² = 2 − 2cos < NEAR
        near = _recompute_near(i, j, z, inv, dist2, neg_cos)

    # Eq. 4 without its ½: (σ_i² + σ_j²) / ‖z_i − z_j‖^(2+k)
    torch.add(sigma2[i].unsqueeze(1), sigma2[j].unsqueeze(0), out=cdnv)
    if acc.control is not None:  # k = 0: (σ_i² + σ_j²) / ‖z_i − z_j‖²
        ctl = torch.div(cdnv, dist2, out=tiles[3])
        acc.control.add(i, j, ctl, per_row, lower, search=near is not None)
    cdnv.mul_(dist2.pow_(-1.0 - acc.power / 2.0))  # pow(−2) is 1/(x·x) for k = 2
    acc.n_degenerate += acc.cdnv.add(i, j, cdnv, per_row, lower, search=near is not None)
    log = torch.log1p(neg_cos, out=dist2)  # log(1 − cos) = log(‖ẑ_i − ẑ_j‖² / 2)
    if near is not None:  # log1p(k²/2 − 1) would lose what the recomputation kept
        rows, cols, kern2 = near
        log[rows, cols] = (0.5 * kern2).log()
    acc.n_degenerate_dir += acc.log.add(i, j, log, per_row, lower, search=near is not None)
    acc.cos.add(i, j, neg_cos, per_row, lower, search=False)


def _recompute_near(i, j, z, inv, dist2, neg_cos) -> tuple[Tensor, Tensor, Tensor]:
    """Exact distances for nearly coinciding pairs, from the vector differences."""
    rows, cols = (neg_cos < 0.5 * NEAR - 1.0).nonzero(as_tuple=True)
    gi, gj = rows + i.start, cols + j.start
    dist2[rows, cols] = (z[gi] - z[gj]).square().sum(1)
    kern2 = (z[gi] * inv[gi].unsqueeze(1) - z[gj] * inv[gj].unsqueeze(1)).square().sum(1)
    neg_cos[rows, cols] = 0.5 * kern2 - 1.0
    return rows, cols, kern2
