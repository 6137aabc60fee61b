"""The validation accumulator (NC4, loss, accuracy) against a float64 brute force."""

import numpy as np
import pytest
import torch

from lingcollapse.metrics import Convention, measure
from lingcollapse.stats import class_stats
from lingcollapse.stats.validation import ValidationAccumulator, means_sha256


def setup_case(seed=0, v=40, d=8, n=700, bias=True):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, v - 5, (n,), generator=g)
    centres = torch.randn(v, d, generator=g) * 2 + 30  # a large shared offset
    h = torch.randn(n, d, generator=g) + centres[y]
    train = class_stats(h, y, v)
    weight = torch.randn(v, d, generator=g)
    b = torch.randn(v, generator=g) if bias else None
    hv = torch.randn(300, d, generator=g) + centres[torch.randint(0, v, (300,), generator=g)]
    yv = torch.randint(0, v, (300,), generator=g)  # includes classes absent from train
    return train, weight, b, hv, yv


def brute(train, weight, bias, h, y, min_count):
    counts = train.counts.numpy()
    kept = np.nonzero(counts >= min_count)[0]
    h64, w = h.double().numpy(), weight.double().numpy()
    logits = h64 @ w.T + (0 if bias is None else bias.double().numpy())
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    loss = lse - logits[np.arange(len(y)), y.numpy()]
    linear = kept[logits[:, kept].argmax(1)]
    dist = ((h64[:, None, :] - train.means.numpy()[kept][None]) ** 2).sum(2)
    ncc = kept[dist.argmin(1)]
    return loss, logits.argmax(1), linear, ncc


@pytest.mark.parametrize("min_count", [1, 15])
@pytest.mark.parametrize("use_logits", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_decisions_and_loss_match_brute_force(min_count, use_logits, bias, monkeypatch):
    import lingcollapse.stats.validation as validation

    monkeypatch.setattr(validation, "_BLOCK_ENTRIES", 64 * 7)  # many class blocks
    train, weight, b, h, y = setup_case(bias=bias)
    loss, top1, linear, ncc = brute(train, weight, b, h, y, min_count)
    acc = ValidationAccumulator(
        weight.double(), None if b is None else b.double(), train, min_count
    )
    for part in torch.tensor_split(torch.arange(len(y)), 5):
        logits = None
        if use_logits:
            logits = h[part].double() @ weight.double().T + (0 if b is None else b.double())
        acc.update(h[part], y[part], logits)
    s = acc.state
    v = weight.shape[0]
    yn = y.numpy()
    assert s.val_counts.tolist() == np.bincount(yn, minlength=v).tolist()
    assert s.agree.tolist() == np.bincount(yn, weights=linear == ncc, minlength=v).tolist()
    assert s.correct.tolist() == np.bincount(yn, weights=top1 == yn, minlength=v).tolist()
    assert s.ncc_correct.tolist() == np.bincount(yn, weights=ncc == yn, minlength=v).tolist()
    # absolute slack: a loss near 0 is lse − logit of logits ~10³, exact to ~1e-13 only
    np.testing.assert_allclose(
        s.loss_sum.numpy(), np.bincount(yn, loss, minlength=v), rtol=1e-10, atol=1e-9
    )
    totals = s.totals()
    assert totals["nc4_agreement"] == pytest.approx(np.mean(linear == ncc))
    assert totals["val_loss"] == pytest.approx(loss.mean(), rel=1e-10)
    assert totals["val_acc"] == pytest.approx(np.mean(top1 == yn))


def test_ncc_is_exact_where_float32_would_cancel():
    """Means 1e4 from the origin and 1e-3 apart: float32 ‖h‖² − 2⟨h,μ⟩ + ‖μ‖² cannot tell
    them apart, the centred float64 computation can."""
    d = 4
    base = torch.full((d,), 1e4, dtype=torch.float64)
    means = torch.stack([base, base + 1e-3, base - 5.0])
    h = torch.cat([means[0] + 2e-4, means[1] - 2e-4]).reshape(2, d)
    y = torch.tensor([0, 1])
    train = class_stats(torch.cat([means, means]), torch.tensor([0, 1, 2] * 2), 3)
    acc = ValidationAccumulator(torch.eye(3, d, dtype=torch.float64), None, train)
    acc.update(h, y)
    assert acc.state.ncc_correct.tolist() == [1, 1, 0]


def test_measure_reads_validation_and_checks_the_means():
    train, weight, b, h, y = setup_case()
    acc = ValidationAccumulator(weight, b, train)
    acc.update(h, y)
    m = measure(train, classifier=(weight, b), validation=acc.state).metrics
    assert 0 <= m["nc4_agreement"] <= 1
    assert m["val_ppl"] == pytest.approx(np.exp(m["val_loss"]))
    assert acc.state.metadata["train_means_sha256"] == means_sha256(train)
    other, *_ = setup_case(seed=1)
    with pytest.raises(Exception, match="other train means"):
        measure(other, validation=acc.state)
    with pytest.raises(Exception, match="--min-count 1"):
        measure(train, Convention(min_count=3), validation=acc.state)
