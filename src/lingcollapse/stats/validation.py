"""Validation statistics: loss, accuracy and the NC4 decisions per true class.

For every validation embedding ``h`` with true next token ``y`` one pass records

- the linear decision ``argmax_{c∈S} ⟨w_c, h⟩ + b_c`` (Eq. 1/9) over the kept classes S;
- the nearest-class-centre decision ``argmin_{c∈S} ‖h − μ_c‖`` (Eq. 9, 12);
- the cross-entropy over the *full* vocabulary and the full-vocabulary top-1 hit;

and adds per true class the counts of agreements (Eq. 10), correct and NCC-correct
predictions, and the summed loss. Everything is O(n·V·d) matrix work chunked over
classes, so the (batch × classes) block stays bounded whatever the vocabulary.

Some families transform ``W h + b`` before their softmax (:class:`LogitTransform`):
Gemma-2/3 soft-cap it (``cap·tanh(z/cap)``), Cohere multiplies it by ``logit_scale``,
Granite divides it by ``logits_scaling``. The loss is the model's own, so the transform
is applied as the model applies it (here in float64); the decisions are made on the
transformed logits too, the same way the model decides (a monotone increasing map
leaves them as they were). The classifier of Eq. 1 and NC3's duality (Eq. 8) stay
``W``: a transform after the head changes no weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lingcollapse.stats.classes import ClassStats

# Budget of (rows × classes) entries per block: 2²² float64 entries = 32 MB.
_BLOCK_ENTRIES = 1 << 22

VALIDATION_KEYS = ("val_counts", "agree", "correct", "ncc_correct", "loss_sum")


def means_sha256(stats: ClassStats) -> str:
    """SHA-256 of the train counts and means: names the means NCC decisions were made with."""
    digest = hashlib.sha256()
    digest.update(stats.counts.cpu().contiguous().numpy())  # the buffers, not a copy
    digest.update(stats.means.cpu().contiguous().numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class LogitTransform:
    """What a model does to its head's ``z = W h + b`` before the softmax, in this
    order: ``z · scale``, then ``cap · tanh(z / cap)`` where ``softcap`` is set.

    Gemma-2's ``final_logit_softcapping`` is ``softcap``; Cohere's ``logit_scale`` is
    ``scale``; Granite's ``logits_scaling`` s is ``scale = 1/s``. The identity is
    ``LogitTransform()``."""

    scale: float = 1.0
    softcap: float | None = None

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def __call__(self, z: Tensor) -> Tensor:
        """The transformed logits, in ``z``'s dtype (float64 in the accumulator)."""
        if self.scale != 1.0:
            z = z * self.scale
        if self.softcap is not None:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def __str__(self) -> str:
        """``z``, ``0.0625·z``, ``30·tanh(z/30)``: as written in validation metadata."""
        z = "z" if self.scale == 1.0 else f"{self.scale:g}·z"
        return z if self.softcap is None else f"{self.softcap:g}·tanh({z}/{self.softcap:g})"


@dataclass
class ValidationStats:
    """Per-true-class validation counts (all (V,)); sums over classes give Eq. 10 etc."""

    val_counts: Tensor  # int64
    agree: Tensor  # int64, linear decision == NCC decision
    correct: Tensor  # int64, full-vocabulary argmax == y
    ncc_correct: Tensor  # int64, NCC decision == y
    loss_sum: Tensor  # float64, Σ cross-entropy over the full vocabulary
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, vocab_size: int, device: str | torch.device = "cpu") -> ValidationStats:
        zeros = {"size": (vocab_size,), "device": device}
        return cls(
            *(torch.zeros(**zeros, dtype=torch.long) for _ in range(4)),
            torch.zeros(**zeros, dtype=torch.float64),
        )

    @property
    def vocab_size(self) -> int:
        return self.val_counts.numel()

    def tensors(self) -> dict[str, Tensor]:
        return {key: getattr(self, key) for key in VALIDATION_KEYS}

    def merge(self, other: ValidationStats) -> ValidationStats:
        """Counts over disjoint data add (in place; returns self)."""
        if other.vocab_size != self.vocab_size:
            raise ValueError(f"cannot merge V={other.vocab_size} into V={self.vocab_size}")
        for key in VALIDATION_KEYS:
            getattr(self, key).add_(getattr(other, key).to(getattr(self, key).device))
        return self

    def totals(self) -> dict[str, float]:
        """val_loss, val_ppl, val_acc, ncc_acc and nc4_agreement (Eq. 10) over all samples."""
        n = int(self.val_counts.sum())
        if n == 0:
            return {}
        loss = float(self.loss_sum.sum()) / n
        return {
            "val_loss": loss,
            "val_ppl": float(torch.tensor(loss, dtype=torch.float64).clamp(max=700).exp()),
            "val_acc": int(self.correct.sum()) / n,
            "ncc_acc": int(self.ncc_correct.sum()) / n,
            "nc4_agreement": int(self.agree.sum()) / n,
            "n_val_samples": n,
        }


class ValidationAccumulator:
    """Streams validation embeddings into :class:`ValidationStats`.

    ``weight`` (V, d) and ``bias`` (V,) are the model's classifier (``lm_head``); ``train``
    gives the class means μ_c and the kept classes S = {c : N_c ≥ min_count};
    ``transform`` is what the model does to ``W h + b`` before its softmax (the identity
    by default), applied to the logits computed from the weight, never to logits given
    to :meth:`update` (the model's own, already transformed).
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        train: ClassStats,
        min_count: int = 1,
        device: str | torch.device | None = None,
        transform: LogitTransform | None = None,
    ) -> None:
        device = weight.device if device is None else torch.device(device)
        vocab_size, dim = weight.shape
        if train.vocab_size > vocab_size or train.dim != dim:
            raise ValueError(
                f"train stats (V={train.vocab_size}, d={train.dim}) do not fit a classifier "
                f"of shape ({vocab_size}, {dim})"
            )
        self.weight = weight.to(device)  # (V, d), the model's dtype
        self.bias = None if bias is None else bias.to(device)  # (V,)
        self.kept = (train.counts >= max(min_count, 1)).nonzero().squeeze(1).to(device)  # (C,)
        means = train.means.to(device)[self.kept]  # (C, d) float64
        # Centre by μ̄ before the GEMM: it removes the offset all embeddings share, so the
        # expansion ‖h−μ‖² = ‖h‖² − 2⟨h,μ⟩ + ‖μ‖² has no large terms to cancel.
        self.centre = means.mean(0)  # (d,)
        self.z = means - self.centre  # (C, d)
        self.z_sq = self.z.square().sum(1)  # (C,)
        self.transform = LogitTransform() if transform is None else transform
        self.state = ValidationStats.empty(vocab_size, device)
        self.state.metadata.update(
            {"train_means_sha256": means_sha256(train), "min_count": str(max(min_count, 1))}
        )
        if not self.transform.identity:  # files of untransformed heads stay as they were
            self.state.metadata["logit_transform"] = str(self.transform)

    def update(self, h: Tensor, y: Tensor, logits: Tensor | None = None) -> None:
        """Add a batch: ``h`` (n, d), ``y`` (n,) true classes, optional ``logits`` (n, V)
        from the model's own forward pass (reused for the loss and linear decisions)."""
        dev = self.weight.device
        y = y.to(device=dev, dtype=torch.long).reshape(-1)
        h = h.to(dev).reshape(y.numel(), self.weight.shape[1])
        if y.numel() == 0:
            return
        if logits is None:
            loss, top1, linear = self._linear_from_weight(h, y)
        else:
            loss, top1, linear = self._linear_from_logits(logits.to(dev).reshape(y.numel(), -1), y)
        ncc = self._nearest_centre(h)
        s = self.state
        s.val_counts.index_add_(0, y, torch.ones_like(y))
        s.correct.index_add_(0, y, (top1 == y).long())
        s.agree.index_add_(0, y, (linear == ncc).long())
        s.ncc_correct.index_add_(0, y, (ncc == y).long())
        s.loss_sum.index_add_(0, y, loss)

    def _linear_from_logits(self, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # (n, V): half-precision logits are upcast before the log-sum-exp, as HF's loss does
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = torch.logsumexp(logits, dim=1) - logits.gather(1, y.unsqueeze(1)).squeeze(1)
        top1 = logits.argmax(1)
        linear = self.kept[logits.index_select(1, self.kept).argmax(1)]
        return loss.double(), top1, linear

    def _linear_from_weight(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Loss and decisions from the transformed ``W h + b`` computed in class chunks: a
        running log-sum-exp over the full vocabulary and running argmaxes (all, and kept
        only). The transform is elementwise, so it applies block by block."""
        n, vocab = y.numel(), self.weight.shape[0]
        hw = h.to(self.weight.dtype)
        lse = torch.full((n,), -torch.inf, dtype=torch.float64, device=h.device)
        target = torch.empty(n, dtype=torch.float64, device=h.device)
        best = _RunningArgmax(n, h.device)
        kept_mask = torch.zeros(vocab, dtype=torch.bool, device=h.device)
        kept_mask[self.kept] = True
        best_kept = _RunningArgmax(n, h.device)
        step = max(1, _BLOCK_ENTRIES // n)
        for lo in range(0, vocab, step):
            hi = min(lo + step, vocab)
            block = (hw @ self.weight[lo:hi].T).double()  # (n, c)
            if self.bias is not None:
                block += self.bias[lo:hi].double()
            block = self.transform(block)  # the model's logits (the identity for most)
            lse = torch.logaddexp(lse, torch.logsumexp(block, dim=1))
            inside = (y >= lo) & (y < hi)
            target[inside] = block[inside, y[inside] - lo]
            best.update(block, lo)
            best_kept.update(block.masked_fill(~kept_mask[lo:hi], -torch.inf), lo)
        return lse - target, best.index, best_kept.index

    def _nearest_centre(self, h: Tensor) -> Tensor:
        """argmin_{c∈S} ‖h − μ_c‖ in float64 (Eq. 9, via the expansion of Eq. 12)."""
        hc = h.to(torch.float64) - self.centre  # (n, d)
        n, c_total = hc.shape[0], self.z.shape[0]
        best = _RunningArgmax(n, h.device)
        step = max(1, _BLOCK_ENTRIES // n)
        for lo in range(0, c_total, step):
            z = self.z[lo : lo + step]
            # −(‖z‖² − 2⟨h,z⟩): the max of this is the nearest centre (‖h‖² is constant).
            score = torch.addmm(self.z_sq[lo : lo + step], hc, z.T, beta=-1, alpha=2)
            best.update(score, lo)
        return self.kept[best.index]


class _RunningArgmax:
    """argmax over column blocks of one (n, C) matrix seen block by block; first wins ties."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.value = torch.full((n,), -torch.inf, dtype=torch.float64, device=device)
        self.index = torch.zeros(n, dtype=torch.long, device=device)

    def update(self, block: Tensor, offset: int) -> None:
        value, index = block.max(1)
        better = value.double() > self.value
        self.value = torch.where(better, value.double(), self.value)
        self.index = torch.where(better, index + offset, self.index)
