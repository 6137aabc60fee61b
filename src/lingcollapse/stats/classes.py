"""Per-class streaming statistics of context embeddings (paper Eq. 2–3), in float64.

Every context embedding ``h`` is a sample of its next token's class ``y``. Per class we
want ``(N_c, μ_c, M2_c)`` in float64, where ``M2_c = Σ ||h − μ_c||²`` (Eq. 3 times N_c),
and optionally the pooled within-class scatter ``cov_m2 = Σ (h − μ_y)(h − μ_y)ᵀ`` (d×d).

Two objects, as in torchmetrics' update → compute split:

- :class:`ClassAccumulator` streams batches in a *shifted-sum* form: each class keeps a
  fixed shift ``K_c`` (its first sample, or its mean when resumed from a file) and the
  sums ``S_c = Σ (h − K_c)`` and ``Q_c = Σ ||h − K_c||²``. A batch costs O(n·d): one
  gather, one subtraction and ``index_add_`` scatters straight into the state, with no
  per-batch merge and never a one-hot (n × V) product.
- :class:`ClassStats` holds the finished moments, what a train stats file stores. Merging two
  of them over disjoint data uses Chan, Golub & LeVeque's parallel formula
  (:func:`chan_merge`); an accumulator re-starts exactly from stats (``K = μ, S = 0,
  Q = M2``), so streaming, merging shards and resuming share these two helpers.

Why shift at all: with ``‖μ_c‖/σ_c = 10⁶`` the textbook ``Σ||h||² − N||μ||²`` cancels
twelve of float64's sixteen digits. Around a shift within a few σ of the mean the
final ``Q − ||S||²/N`` cancels at most a digit or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

# Rows per chunk: a float64 chunk of ~4 MB stays in cache across the gather, subtract,
# scatter and norm that touch it, and bounds the temporary memory of a huge batch.
_CHUNK_ELEMENTS = 1 << 19


@dataclass
class ClassStats:
    """Finished per-class moments: what a train stats file stores (``counts``, ``means``,
    ``m2``, optional ``cov_m2``; :func:`lingcollapse.stats.files.save_stats`).

    Classes with ``counts == 0`` are absent: their ``means``/``m2`` rows are zero.
    """

    counts: Tensor  # (V,) int64
    means: Tensor  # (V, d) float64
    m2: Tensor  # (V,) float64, Σ ||h − μ_c||² per class
    cov_m2: Tensor | None = None  # (d, d) float64, Σ (h − μ_y)(h − μ_y)ᵀ over all samples
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(
        cls,
        vocab_size: int,
        dim: int,
        covariance: bool = False,
        device: str | torch.device = "cpu",
    ) -> ClassStats:
        f64 = {"dtype": torch.float64, "device": device}
        return cls(
            counts=torch.zeros(vocab_size, dtype=torch.long, device=device),
            means=torch.zeros(vocab_size, dim, **f64),
            m2=torch.zeros(vocab_size, **f64),
            cov_m2=torch.zeros(dim, dim, **f64) if covariance else None,
        )

    @property
    def vocab_size(self) -> int:
        return self.counts.numel()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: ClassStats) -> ClassStats:
        """Statistics of the union of two disjoint data sets (in place; returns self)."""
        if other.vocab_size != self.vocab_size or other.dim != self.dim:
            raise ValueError(
                f"cannot merge stats of shape V={other.vocab_size}, d={other.dim} "
                f"into V={self.vocab_size}, d={self.dim}"
            )
        if (self.cov_m2 is None) != (other.cov_m2 is None):
            raise ValueError("cannot merge stats with a covariance and stats without one")
        dev = self.means.device
        i = (other.counts > 0).nonzero().squeeze(1).to(dev)
        mean_a = self.means[i]
        count, mean, m2, root = chan_merge(
            self.counts[i],
            mean_a,
            self.m2[i],
            other.counts.to(dev)[i],
            other.m2.to(dev)[i],
            other.means.to(dev)[i] - mean_a,
        )
        self.counts[i], self.means[i], self.m2[i] = count, mean, m2
        if self.cov_m2 is not None:
            self.cov_m2 += other.cov_m2.to(dev)
            self.cov_m2.addmm_(root.T, root)
        return self

    def to(self, device: str | torch.device) -> ClassStats:
        cov = None if self.cov_m2 is None else self.cov_m2.to(device)
        return ClassStats(
            self.counts.to(device),
            self.means.to(device),
            self.m2.to(device),
            cov,
            dict(self.metadata),
        )


def chan_merge(
    count_a: Tensor, mean_a: Tensor, m2_a: Tensor, count_b: Tensor, m2_b: Tensor, delta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Chan et al.'s parallel formula for two disjoint sets A, B of each class.

    ``delta`` = mean_B − mean_A, (k, d). Returns count, mean and M2 of A ∪ B, and ``root``
    with ``rootᵀ root = Σ_c (N_A N_B / N) δ_c δ_cᵀ``, the between-part of the pooled
    scatter. A class absent from A (count 0) gets B's moments exactly.
    """
    n_a = count_a.to(torch.float64)
    n_b = count_b.to(torch.float64)
    n = n_a + n_b
    mean = torch.addcmul(mean_a, delta, (n_b / n).unsqueeze(1))
    weight = n_a * n_b / n  # (k,)
    m2 = m2_a + m2_b + weight * torch.linalg.vector_norm(delta, dim=1).square_()
    root = delta * weight.sqrt().unsqueeze(1)
    return count_a + count_b, mean, m2, root


class ClassAccumulator:
    """Streams ``(h, y)`` batches into per-class shifted sums; :meth:`compute` → ClassStats.

    >>> acc = ClassAccumulator(vocab_size=50257, dim=768)
    >>> acc.update(h, y)  # h (n, d) any float dtype/device, y (n,) next-token ids
    >>> stats = acc.compute()

    ``classes`` (ids, e.g. the targets a shard of data holds) keeps rows for those
    classes alone: at V = 128,256 and d = 4,096 the shifts and sums of every class are
    8.4 GB per layer, while a corpus may hold a fraction of the vocabulary. A class
    outside ``classes`` is an error in :meth:`update`; :meth:`compute` still returns
    every one of the V classes (absent ones zero), to the bit what an accumulator of
    all V rows gives for the same batches.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        covariance: bool = False,
        device: str | torch.device = "cpu",
        classes: Tensor | None = None,
    ) -> None:
        f64 = {"dtype": torch.float64, "device": device}
        self.vocab_size = vocab_size
        self._index(classes, device)
        rows = vocab_size if self.classes is None else self.classes.numel()  # R
        self.counts = torch.zeros(rows, dtype=torch.long, device=device)  # (R,)
        self.shift = torch.zeros(rows, dim, **f64)  # (R, d) K_c
        self.sum = torch.zeros(rows, dim, **f64)  # (R, d) Σ (h − K_c)
        self.sumsq = torch.zeros(rows, **f64)  # (R,) Σ ||h − K_c||²
        self.outer = torch.zeros(dim, dim, **f64) if covariance else None  # Σ xxᵀ

    def _index(self, classes: Tensor | None, device: str | torch.device) -> None:
        """``classes`` (R,) sorted ids, one per row, and ``row`` (V,): each id's row or −1;
        both None when row c is class c."""
        self.classes = self.row = None
        if classes is None:
            return
        classes = torch.as_tensor(classes, dtype=torch.long, device=device).reshape(-1)
        classes = torch.unique(classes)  # sorted
        if classes.numel() and not 0 <= int(classes[0]) <= int(classes[-1]) < self.vocab_size:
            raise ValueError(f"classes must be ids in [0, {self.vocab_size})")
        self.classes = classes  # (R,)
        self.row = torch.full((self.vocab_size,), -1, dtype=torch.long, device=device)  # (V,)
        self.row[classes] = torch.arange(classes.numel(), device=device)

    @classmethod
    def from_stats(cls, stats: ClassStats, device: str | torch.device | None = None):
        """Resume from finished moments, exactly: K = μ, S = 0, Q = M2, Σxxᵀ = cov_m2."""
        device = stats.means.device if device is None else device
        acc = cls(stats.vocab_size, stats.dim, stats.cov_m2 is not None, device)
        acc.counts.copy_(stats.counts)
        acc.shift.copy_(stats.means)
        acc.sumsq.copy_(stats.m2)
        if acc.outer is not None:
            acc.outer.copy_(stats.cov_m2)
        return acc

    def state(self) -> dict[str, Tensor]:
        """The raw shifted sums, and ``classes`` when the rows are a subset: what a
        checkpoint keeps so that :meth:`from_state` continues bit for bit."""
        names = ("counts", "shift", "sum", "sumsq", "outer", "classes")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    @classmethod
    def from_state(
        cls, state: dict[str, Tensor], vocab_size: int, device: str | torch.device = "cpu"
    ) -> ClassAccumulator:
        """The accumulator whose :meth:`state` this is; a state without ``classes`` has a
        row for every class. The tensors are copied into fresh ones, never taken: a
        tensor read from a file may start at any alignment, and the rounding of a BLAS
        product (Σxxᵀ's) can depend on it, which would end a resumed run in other bits."""
        rows, dim = state["shift"].shape
        acc = cls(vocab_size, 0, device=device, classes=state.get("classes"))
        expected = vocab_size if acc.classes is None else acc.classes.numel()
        shapes = {"counts": (rows,), "sum": (rows, dim), "sumsq": (rows,), "outer": (dim, dim)}
        if rows != expected or any(
            k in state and tuple(state[k].shape) != shape for k, shape in shapes.items()
        ):
            raise ValueError(f"not the state of an accumulator of {vocab_size} classes")
        for key in ("counts", "shift", "sum", "sumsq", "outer"):
            fresh = state[key].to(device, copy=True) if key in state else None
            setattr(acc, key, fresh)
        return acc

    @property
    def dim(self) -> int:
        return self.shift.shape[1]

    @property
    def device(self) -> torch.device:
        return self.shift.device

    def update(self, h: Tensor, y: Tensor) -> None:
        """Add a batch: ``h`` (n, d) embeddings of any float dtype, ``y`` (n,) classes."""
        y = y.to(device=self.device, dtype=torch.long).reshape(-1)
        h = h.to(self.device).reshape(y.numel(), self.dim)  # (n, d)
        if y.numel() == 0:
            return
        r = y if self.row is None else self._rows_of(y)  # (n,) the row of each sample
        batch_counts = torch.bincount(r, minlength=self.counts.numel())  # (R,)
        self._seed_shifts(h, r, batch_counts)
        self.counts += batch_counts
        rows = max(1, _CHUNK_ELEMENTS // self.dim)
        # Reused buffers: fresh multi-MB tensors per chunk cost more in page faults
        # than the arithmetic itself.
        work = torch.empty(
            2, min(rows, y.numel()), self.dim, dtype=torch.float64, device=self.device
        )
        for start in range(0, y.numel(), rows):
            r_c = r[start : start + rows]
            x = work[0, : r_c.numel()].copy_(h[start : start + rows])  # (r, d)
            x -= torch.index_select(self.shift, 0, r_c, out=work[1, : r_c.numel()])
            self.sum.index_add_(0, r_c, x)
            self.sumsq.index_add_(0, r_c, torch.linalg.vector_norm(x, dim=1).square_())
            if self.outer is not None:
                self.outer.addmm_(x.T, x)

    def _rows_of(self, y: Tensor) -> Tensor:
        r = self.row[y]  # (n,)
        if bool((r < 0).any()):
            missing = int(y[r < 0][0])
            raise ValueError(f"class {missing} occurs but the accumulator keeps no row for it")
        return r

    def _seed_shifts(self, h: Tensor, r: Tensor, batch_counts: Tensor) -> None:
        """Classes seen for the first time take their first sample as their shift."""
        new = ((batch_counts > 0) & (self.counts == 0)).nonzero().squeeze(1)  # (m,)
        if new.numel() == 0:
            return
        n = r.numel()
        first = torch.full((self.counts.numel(),), n, dtype=torch.long, device=self.device)
        first.scatter_reduce_(0, r, torch.arange(n, device=self.device), reduce="amin")
        self.shift[new] = h.index_select(0, first[new]).to(torch.float64)

    def compute(self) -> ClassStats:
        """The finished moments (Eq. 2–3): μ = K + S/N, M2 = Q − ||S||²/N, for all V
        classes. Rows kept for a subset of classes are computed as they are and then
        placed in (V, ·) zeros: each value is the one a row per class gives."""
        n = self.counts.to(torch.float64).clamp_min(1).unsqueeze(1)  # (R, 1)
        offset = self.sum / n  # (R, d) μ − K
        means = self.shift + offset
        m2 = self.sumsq - n.squeeze(1) * torch.linalg.vector_norm(offset, dim=1).square()
        m2.clamp_min_(0.0)
        absent = self.counts == 0
        means[absent] = 0.0
        m2[absent] = 0.0
        cov = None
        if self.outer is not None:  # Σ xxᵀ − Σ_c N_c o_c o_cᵀ: from shift- to mean-centred
            # over all V rows (absent ones zero) even when fewer are kept: the same
            # product, so the same rounding as an accumulator of V rows
            root = self._all_rows(offset * n.sqrt())  # (V, d)
            cov = self.outer - root.T @ root
            del root
        del offset  # before the (V, d) means are made
        return ClassStats(
            self._all_rows(self.counts.clone()), self._all_rows(means), self._all_rows(m2), cov
        )

    def _all_rows(self, x: Tensor) -> Tensor:
        """Rows of the kept classes → (V, ...) with zeros for the others."""
        if self.classes is None:
            return x
        full = x.new_zeros((self.vocab_size, *x.shape[1:]))
        full[self.classes] = x
        return full

    def merge(self, other: ClassAccumulator) -> ClassAccumulator:
        """Absorb an accumulator over disjoint data (in place; returns self; all V rows
        after, since ``other`` may hold classes this one keeps no row for)."""
        merged = self.compute().merge(other.compute())
        fresh = ClassAccumulator.from_stats(merged, self.device)
        self.__dict__.update(fresh.__dict__)
        return self


def class_stats(h: Tensor, y: Tensor, vocab_size: int, covariance: bool = False) -> ClassStats:
    """One-shot statistics of one data set (the same path as streaming)."""
    acc = ClassAccumulator(vocab_size, h.shape[-1], covariance, device=h.device)
    acc.update(h, y)
    return acc.compute()
