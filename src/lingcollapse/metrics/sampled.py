"""Pairwise NC metrics estimated from uniformly sampled pairs of classes
(``measure --sample-pairs N [--sample-seed S]``).

The exact pass (:mod:`.pairwise`) costs C²·d/2 multiply-adds: 3.5×10¹³ at C = 131,072,
d = 4,096, hours on a laptop. Here N pairs are drawn uniformly, independently and with
replacement from the P = C(C − 1)/2 unordered pairs c < c' (i ≠ j uniform, then ordered)
by a CPU ``torch.Generator`` seeded with S, in blocks of :data:`DRAW` pairs, so a seed
gives the same pairs on any device and at any width. Each pair's values are computed in
float64 from its two rows, gathered in chunks into reused buffers: O(N·d) time, memory
O(d) per pair of a chunk. Pairs closer than :data:`.pairwise.NEAR` in direction are
recomputed from vector differences, as in the exact pass, and degenerate pairs (infinite
Eq. 4 or 7) are left out of those means, as there.

**Estimates.** For a per-pair quantity x with mean μ and population std σ over the pairs
(those kept), the n draws are i.i.d. from that population, so the sample mean x̄ is
unbiased and s² = M₂/(n − 1) is unbiased for σ². The 95% intervals are asymptotic
(central limit theorem, z = 1.96):

- the mean: x̄ ± z·s/√n;
- the std: s² ± z·√V with V = (μ₄ − s⁴(n − 3)/(n − 1))/n, the ends clamped at 0 and
  square-rooted;
- the CoV s/x̄: the delta method with Var x̄ = s²/n, Var s² = V, Cov(x̄, s²) = μ₃/n.

Where the mean is exact (the interference, below), σ² is estimated about it,
Σ(x − μ)²/n (unbiased), with V = (μ₄ − σ⁴)/n, and the CoV's interval is the std's
divided by μ. ``n_degenerate_pairs`` is P times the degenerate share of the draws, with
Wilson's interval for a proportion.

Coverage (``tests/test_sampled.py``, ``benchmarks/bench_sample_pairs.py``): with 400 draws
of the 1,770 pairs of 60 Gaussian means in d = 16, the intervals held the exact value in
92–95% of 1,000 seeds. Intervals from a sample assume that no few pairs dominate the
population: the k = 2 CDNV, ∝ 1/‖μ_c − μ_c'‖⁴, is heavy-tailed where some class means
nearly coincide, and a draw that misses its largest pairs is low with a narrow interval
it cannot know is wrong (in d = 4, coverage 26% for k = 2, 76% for k = 0; the log kernel
and interference stayed at 92–95%).

**Closed forms.** Exact in O(C·d) and reported as exact: the interference mean,
Σ_{c<c'} ⟨ẑ_c, ẑ_c'⟩ = (‖Σ_c ẑ_c‖² − C)/2, and its per-class row means
(⟨ẑ_c, Σẑ⟩ − 1)/(C − 1). The d×d closed forms (ETF error, Zhu's NC3 and Papyan's
covariance ratio) cost C·d² for ZᵀZ, 2×10¹² multiply-adds at the size above; they stay
exact while :func:`dense_affordable`, else the two errors are estimated from the same
pairs: ‖ZZᵀ‖_F² = Σ_c ‖z_c‖⁴ + 2 Σ_{c<c'} ⟨z_c, z_c'⟩² and
‖WZᵀ‖_F² = Σ_c ⟨w_c, z_c⟩² + Σ_{c<c'} (⟨w_c, z_c'⟩² + ⟨w_c', z_c⟩²), each pair sum
P times a sampled mean, and each error a monotone function of its norm, so the interval's
ends map through it. The covariance ratio, which needs Σ_B's eigendecomposition, is then
skipped. The per-class ``cdnv_mean`` and ``logkernel_mean`` need every pair of their
class: they are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lingcollapse.errors import UserError
from lingcollapse.metrics.pairwise import NEAR
from lingcollapse.progress import progress

if TYPE_CHECKING:
    from lingcollapse.metrics.compute import Geometry

CONFIDENCE = 0.95
Z = 1.959963984540054  # the two-sided 95% quantile of the standard normal
MAX_PAIRS = 10**9  # about 4 hours at d = 4,096 on 2 CPU cores; 10⁶ gives ~3 digits
DRAW = 1 << 16  # pairs drawn at a time: a seed's pairs depend on nothing else
# Elements of one (n, d) float64 row buffer: 4 MiB, 128 pairs at d = 4,096. Gathering
# rows is memory-bound; chunks of 64–128 rows at that width were the fastest measured
# on a 2-core CPU (1,024-row chunks took four times as long: they leave the cache).
CHUNK_ELEMENTS = 1 << 19
# The d×d closed forms stay exact under sampling while their work, C·d² multiply-adds
# for ZᵀZ (and WᵀW), plus ~10·d³ for Σ_B's eigendecomposition when the covariance was
# collected, is at most this: about a second on 2 CPU cores (C = 16,384 at d = 1,024).
DENSE_BUDGET = 1 << 34
# What metrics.json's "sampling" block says of the per-class table.
NAN_COLUMNS = ("cdnv_mean", "logkernel_mean")
METHOD = (
    "uniform i.i.d. pairs c < c'; 95% intervals: CLT for means, the variance's asymptotic "
    "variance for stds, the delta method for CoVs, Wilson's for n_degenerate_pairs"
)


def check_count(count, seed=None) -> None:
    """``--sample-pairs`` and ``--sample-seed`` as given, before any input is read (a
    :class:`UserError` each)."""
    if count is None:
        if seed is not None:
            raise UserError("--sample-seed needs --sample-pairs: the exact pass draws nothing")
        return
    if isinstance(count, bool) or not isinstance(count, int):
        raise UserError(f"--sample-pairs must be a whole number of pairs, not {count!r}")
    if not 2 <= count <= MAX_PAIRS:
        raise UserError(
            f"--sample-pairs must be between 2 and {MAX_PAIRS:,}, not {count:,} "
            "(10⁶ pairs give about three significant digits)"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserError(f"--sample-seed must be a whole number, not {seed!r}")
    if seed is not None and not 0 <= seed < 2**63:
        raise UserError(f"--sample-seed must be in [0, 2⁶³), not {seed}")


def check_cheaper(count: int, classes: int) -> None:
    """A :class:`UserError` when ``count`` draws are no fewer than the pairs themselves."""
    pairs = classes * (classes - 1) // 2
    if count >= pairs:
        raise UserError(
            f"--sample-pairs {count:,} is not fewer than the {pairs:,} pairs of the "
            f"{classes:,} kept classes: exact is cheaper; drop --sample-pairs"
        )


def dense_affordable(classes: int, dim: int, eigen: bool = False) -> bool:
    """Whether the d×d closed forms (ZᵀZ, WᵀW; with ``eigen`` Σ_B's eigendecomposition
    too) fit :data:`DENSE_BUDGET` multiply-adds."""
    return classes * dim * dim + (10 * dim**3 if eigen else 0) <= DENSE_BUDGET


# ------------------------------------------------------------------ statistics


@dataclass
class Moments4:
    """Count, mean and the central sums M₂, M₃, M₄ of a stream of numbers. Batches are
    merged with Pébay's formulas (2008), so no sum of raw powers ever cancels digits."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    def add(self, x: Tensor) -> None:
        """Add a batch of values (float64, any device)."""
        if x.numel() == 0:
            return
        mean = x.mean()
        dev = x - mean
        dev2 = dev * dev
        stats = torch.stack((mean, dev2.sum(), (dev2 * dev).sum(), dev2.square().sum()))
        self.merge(Moments4(x.numel(), *stats.tolist()))

    def merge(self, b: Moments4) -> None:
        a = self
        if b.n == 0:
            return
        if a.n == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = b.n, b.mean, b.m2, b.m3, b.m4
            return
        na, nb = float(a.n), float(b.n)
        n = na + nb
        delta = b.mean - a.mean
        dn = delta / n
        m2 = a.m2 + b.m2 + delta * dn * na * nb
        m3 = (
            a.m3 + b.m3 + delta * dn * dn * na * nb * (na - nb) + 3.0 * dn * (na * b.m2 - nb * a.m2)
        )
        m4 = (
            a.m4
            + b.m4
            + delta * dn**3 * na * nb * (na * na - na * nb + nb * nb)
            + 6.0 * dn * dn * (na * na * b.m2 + nb * nb * a.m2)
            + 4.0 * dn * (na * b.m3 - nb * a.m3)
        )
        self.n, self.mean, self.m2, self.m3, self.m4 = a.n + b.n, a.mean + dn * nb, m2, m3, m4

    def about(self, mu: float) -> tuple[float, float, float]:
        """Σ(x − μ)², Σ(x − μ)³, Σ(x − μ)⁴ about a given μ."""
        n, d = self.n, self.mean - mu
        s2 = self.m2 + n * d * d
        s3 = self.m3 + 3.0 * d * self.m2 + n * d**3
        s4 = self.m4 + 4.0 * d * self.m3 + 6.0 * d * d * self.m2 + n * d**4
        return s2, s3, s4


@dataclass(frozen=True)
class Estimate:
    """A value estimated from sampled pairs and its 95% interval [low, high]."""

    value: float
    low: float
    high: float

    def map(self, f) -> Estimate:
        """The estimate of ``f(x)`` for a monotone ``f``: the interval's ends mapped."""
        ends = sorted((f(self.low), f(self.high)))
        return Estimate(f(self.value), *ends)


NAN = Estimate(math.nan, math.nan, math.nan)


def mean_estimate(m: Moments4) -> Estimate:
    """x̄ ± z·s/√n."""
    if m.n < 2:
        return NAN
    half = Z * math.sqrt(m.m2 / (m.n - 1) / m.n)
    return Estimate(m.mean, m.mean - half, m.mean + half)


def _variance(m: Moments4, mu: float | None) -> tuple[float, float]:
    """An unbiased estimate of σ² and the (asymptotic) variance of that estimate: about
    the sample mean (s², n − 1) or, with ``mu``, about the exact mean (n)."""
    n = m.n
    if mu is None:
        var, fourth = m.m2 / (n - 1), m.m4 / n
        return var, max(0.0, (fourth - var * var * (n - 3) / (n - 1)) / n)
    s2, _, s4 = m.about(mu)
    var = s2 / n
    return var, max(0.0, (s4 / n - var * var) / n)


def std_estimate(m: Moments4, mu: float | None = None) -> Estimate:
    """σ from s², whose interval s² ± z·√Var(s²) is clamped at 0 and square-rooted."""
    if m.n < 2:
        return NAN
    var, spread = _variance(m, mu)
    half = Z * math.sqrt(spread)
    return Estimate(math.sqrt(var), math.sqrt(max(0.0, var - half)), math.sqrt(var + half))


def cov_estimate(m: Moments4, mu: float | None = None) -> Estimate:
    """The signed CoV σ/μ (§3.3): with an exact ``mu`` the std's interval over μ; else
    the delta method on (x̄, s²), whose covariance is μ₃/n."""
    if mu is not None:
        return NAN if mu == 0 else std_estimate(m, mu).map(lambda s: s / mu)
    if m.n < 2 or m.mean == 0:
        return NAN
    var, spread = _variance(m, None)
    x, n = m.mean, m.n
    value = math.sqrt(var) / x
    if var == 0:  # every draw alike
        return Estimate(value, value, value)
    third = m.m3 / n
    delta = var * var / (n * x**4) + spread / (4 * x * x * var) - third / (n * x**3)
    half = Z * math.sqrt(max(0.0, delta))
    return Estimate(value, value - half, value + half)


def share_estimate(hits: int, n: int, total: int) -> Estimate:
    """``total`` times the share ``hits/n``, with Wilson's score interval (sound at 0)."""
    p, z2 = hits / n, Z * Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if hits == 0 else max(0.0, centre - half)  # 0 exactly, not to rounding
    high = 1.0 if hits == n else min(1.0, centre + half)
    return Estimate(total * p, total * low, total * high)


# ------------------------------------------------------------------ the pass


@dataclass
class PairSample:
    """What N drawn pairs say: the moments of each per-pair quantity (degenerate pairs
    left out of those of Eq. 4 and 7) and the draws that were degenerate."""

    drawn: int
    cdnv: Moments4  # Eq. 4 with k, ½ applied
    cos: Moments4  # Eq. 6
    logkernel: Moments4  # Eq. 7
    gram2: Moments4  # ⟨z_c, z_c'⟩²
    control: Moments4 | None = None  # Eq. 4 with k = 0
    cross2: Moments4 | None = None  # ⟨w_c, z_c'⟩² + ⟨w_c', z_c⟩²
    degenerate: int = 0  # draws whose means coincide (Eq. 4 and 7 infinite)
    degenerate_directions: int = 0  # draws whose directions coincide (Eq. 7 infinite)


def draw_pairs(generator: torch.Generator, classes: int, count: int) -> tuple[Tensor, Tensor]:
    """``count`` uniform unordered pairs (i < j) of ``classes``, (count,) each on the CPU."""
    i = torch.randint(classes, (count,), generator=generator)
    j = torch.randint(classes - 1, (count,), generator=generator)
    j += j >= i  # uniform over j ≠ i
    return torch.minimum(i, j), torch.maximum(i, j)


def sample_pairs(
    g: Geometry,
    count: int,
    seed: int = 0,
    power: float = 2.0,
    control: bool = False,
    weight: Tensor | None = None,
) -> PairSample:
    """Draw ``count`` pairs and accumulate their CDNV (Eq. 4 with k = ``power``; with
    ``control`` also k = 0), interference (Eq. 6), log kernel (Eq. 7) and ⟨z_c, z_c'⟩²;
    with ``weight`` (V, d), the classifier, also ⟨w_c, z_c'⟩² + ⟨w_c', z_c⟩² (Zhu's NC3)."""
    c, d = g.shape
    generator = torch.Generator().manual_seed(seed)
    out = PairSample(count, Moments4(), Moments4(), Moments4(), Moments4())
    out.control = Moments4() if control else None
    out.cross2 = Moments4() if weight is not None else None
    rows = _Rows(g, weight, max(1, CHUNK_ELEMENTS // d))
    with progress(total=count, desc="pairs", unit="pair", unit_scale=True, leave=False) as bar:
        for lo in range(0, count, DRAW):
            i, j = draw_pairs(generator, c, min(DRAW, count - lo))
            _add_block(out, g, rows, i, j, power)
            bar.update(i.numel())
    return out


class _Rows:
    """The dot products of drawn pairs, chunk by chunk, in reused (n, d) buffers: a fresh
    multi-MB tensor per chunk would page-fault its bytes every time."""

    def __init__(self, g: Geometry, weight: Tensor | None, chunk: int) -> None:
        self.g, self.weight, self.chunk = g, weight, chunk
        device = g.centre.device
        self.buf = torch.empty(3 if weight is not None else 2, chunk, g.shape[1],
                               dtype=torch.float64, device=device)  # fmt: skip
        self.wide = None if weight is None else torch.empty(chunk, g.shape[1], dtype=weight.dtype)

    def dots(self, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor | None]:
        """⟨z_i, z_j⟩ (m,) and, with a classifier, ⟨w_i, z_j⟩² + ⟨w_j, z_i⟩² (m,)."""
        device = self.g.centre.device
        dot = torch.empty(i.numel(), dtype=torch.float64, device=device)
        cross = None if self.weight is None else torch.empty_like(dot)
        for s in range(0, i.numel(), self.chunk):
            a, b = i[s : s + self.chunk], j[s : s + self.chunk]
            n = a.numel()
            zi = self.g.rows(a, out=self.buf[0, :n])  # (n, d)
            zj = self.g.rows(b, out=self.buf[1, :n])
            torch.linalg.vecdot(zi, zj, out=dot[s : s + n])
            if cross is not None:
                wz = torch.linalg.vecdot(self._weights(a, self.buf[2, :n]), zj)  # ⟨w_i, z_j⟩
                zw = torch.linalg.vecdot(self._weights(b, self.buf[2, :n]), zi)  # ⟨w_j, z_i⟩
                cross[s : s + n] = wz.square_().add_(zw.square_())
        return dot, cross

    def _weights(self, index: Tensor, out: Tensor) -> Tensor:
        """Rows of W of the classes at positions ``index``, widened to float64 in ``out``."""
        ids = self.g.ids[index]
        rows = torch.index_select(self.weight, 0, ids, out=self.wide[: ids.numel()])
        return out.copy_(rows)


def _add_block(out: PairSample, g: Geometry, rows: _Rows, i: Tensor, j: Tensor, power) -> None:
    """Every per-pair value of one block of draws, from their dot products, in float64."""
    dot, cross = rows.dots(i, j)  # (m,)
    device = dot.device
    i, j = i.to(device), j.to(device)
    norm2, inv = g.norm.square(), g.norm.reciprocal()
    cos = dot * inv[i] * inv[j]  # Eq. 6
    dist2 = norm2[i] + norm2[j] - 2.0 * dot  # ‖z_i − z_j‖²
    kern2 = 2.0 - 2.0 * cos  # ‖ẑ_i − ẑ_j‖²
    near = (kern2 < NEAR).nonzero().squeeze(1)
    if near.numel():  # the expansion cancels digits there: from the differences
        zi, zj = g.rows(i[near].cpu()), g.rows(j[near].cpu())
        dist2[near] = (zi - zj).square().sum(1)
        kern2[near] = (zi * inv[i[near], None] - zj * inv[j[near], None]).square().sum(1)
        cos[near] = 1.0 - 0.5 * kern2[near]
    spread = g.sigma2[i] + g.sigma2[j]
    cdnv = 0.5 * spread / dist2.pow(1.0 + power / 2.0)  # Eq. 4
    kept = torch.isfinite(cdnv)
    out.degenerate += int((~kept).sum())
    out.cdnv.add(cdnv[kept])
    if out.control is not None:
        ctl = 0.5 * spread / dist2
        out.control.add(ctl[torch.isfinite(ctl)])
    log = -0.5 * kern2.log()  # Eq. 7: log(1/‖ẑ_i − ẑ_j‖)
    finite = torch.isfinite(log)
    out.degenerate_directions += int((~finite).sum())
    out.logkernel.add(log[finite])
    out.cos.add(cos)
    out.gram2.add(dot.square())
    if cross is not None:
        out.cross2.add(cross)


# ------------------------------------------------------------------ estimates


@dataclass
class Estimated:
    """The pairwise metrics of ``measure`` under sampling: ``values`` by name (exact or
    estimated), ``intervals`` of the estimated ones, the per-class row means (NaN where a
    class's row needs every pair) and the sampled pair sums the d×d forms need."""

    values: dict
    intervals: dict[str, Estimate]
    row_cdnv: Tensor  # (C,) NaN
    row_interference: Tensor  # (C,) exact
    row_logkernel: Tensor  # (C,) NaN
    gram_sum: Estimate  # Σ_{c<c'} ⟨z_c, z_c'⟩²
    cross_sum: Estimate | None  # Σ_{c<c'} ⟨w_c, z_c'⟩² + ⟨w_c', z_c⟩²


def estimate(sample: PairSample, g: Geometry) -> Estimated:
    """Each pairwise metric from ``sample``; the interference mean and rows exact."""
    c = g.shape[0]
    pairs = c * (c - 1) // 2
    unit_sum = g.unit_sum  # Σ ẑ_c (d,)
    along = torch.cat([torch.mv(z, unit_sum) / g.norm[r] for r, z in g.blocks()])  # ⟨ẑ_c, Σẑ⟩
    mean_cos = (float(unit_sum.square().sum()) - c) / (c * (c - 1))  # (‖Σẑ‖² − C)/2 / P
    found = {"nc1_cdnv": mean_estimate(sample.cdnv)}
    if sample.control is not None:
        found["nc1_cdnv_k0"] = mean_estimate(sample.control)
    count = share_estimate(sample.degenerate, sample.drawn, pairs)
    found |= {
        "nc2_interference_std": std_estimate(sample.cos, mean_cos),
        "nc2_equiangular_cov": cov_estimate(sample.cos, mean_cos),
        "gnc2_logkernel_mean": mean_estimate(sample.logkernel),
        "gnc2_logkernel_std": std_estimate(sample.logkernel),
        "gnc2_uniformity_cov": cov_estimate(sample.logkernel),
        # a count of whole pairs
        "n_degenerate_pairs": Estimate(
            round(count.value), math.floor(count.low), math.ceil(count.high)
        ),
    }
    values = {name: e.value for name, e in found.items()}
    values["nc2_interference_mean"] = mean_cos  # exact
    nan = torch.full((c,), math.nan, dtype=torch.float64, device=g.centre.device)
    return Estimated(
        values,
        found,
        nan,
        (along - 1.0) / (c - 1),
        nan.clone(),
        _pair_sum(sample.gram2, pairs),
        None if sample.cross2 is None else _pair_sum(sample.cross2, pairs),
    )


def _pair_sum(m: Moments4, pairs: int) -> Estimate:
    """Σ over all pairs: P times the sampled mean (an unbiased estimate), ends ≥ 0."""
    mean = mean_estimate(m)
    return Estimate(pairs * mean.value, pairs * max(0.0, mean.low), pairs * mean.high)
