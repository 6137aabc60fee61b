"""The class-statistics battery: streaming == one shot == merged shards == brute force."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lingcollapse.stats import ClassAccumulator, ClassStats, class_stats
from lingcollapse.stats.files import load_stats, merge_stats_files, save_stats


def brute(h, y, v):
    h, y = np.asarray(h, np.float64), np.asarray(y)
    counts = np.bincount(y, minlength=v)
    means = np.zeros((v, h.shape[1]))
    m2 = np.zeros(v)
    for c in np.unique(y):
        x = h[y == c]
        mu = x.mean(0)
        mu += (x - mu).mean(0)  # refine: exact to rounding even for huge offsets
        means[c] = mu
        m2[c] = ((x - mu) ** 2).sum()
    return counts, means, m2


def data(n=500, v=20, d=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, v - 3, (n,), generator=g)  # the last 3 classes stay empty
    h = torch.randn(n, d, generator=g) + 3 * torch.randn(v, d, generator=g)[y]
    return h.to(dtype), y


def assert_same(a: ClassStats, b: ClassStats, rtol=1e-12):
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(a.means, b.means, rtol=rtol, atol=1e-12)
    torch.testing.assert_close(a.m2, b.m2, rtol=rtol, atol=1e-12)
    if a.cov_m2 is not None:
        torch.testing.assert_close(a.cov_m2, b.cov_m2, rtol=rtol, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_one_shot_matches_brute_force(dtype, device):
    h, y = data(dtype=dtype)
    got = class_stats(h.to(device), y.to(device), 20).to("cpu")
    counts, means, m2 = brute(h.double(), y, 20)
    assert got.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(got.means.numpy(), means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.m2.numpy(), m2, rtol=1e-12)
    assert (got.means[17:] == 0).all() and (got.m2[17:] == 0).all()  # empty = absent


@pytest.mark.parametrize("chunks", [[1], [7, 93, 400], [250, 250], [499, 1]])
def test_streaming_equals_one_shot(chunks, device):
    h, y = data()
    one = class_stats(h, y, 20, covariance=True)
    acc = ClassAccumulator(20, 6, covariance=True, device=device)
    start = 0
    for size in chunks * (500 // sum(chunks) + 1):
        acc.update(h[start : start + size].to(device), y[start : start + size].to(device))
        start += size
    assert_same(acc.compute().to("cpu"), one)


def test_merged_shards_equal_the_union_and_half_differs():
    h, y = data(n=900)
    whole = class_stats(h, y, 20, covariance=True)
    parts = [class_stats(h[i::3], y[i::3], 20, covariance=True) for i in range(3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert_same(merged, whole)
    half = class_stats(h[:450], y[:450], 20, covariance=True)
    assert not torch.allclose(half.means, whole.means)
    assert not torch.allclose(half.m2, whole.m2)


def test_resume_from_stats_is_exact():
    h, y = data(n=600)
    whole = class_stats(h, y, 20, covariance=True)
    acc = ClassAccumulator.from_stats(class_stats(h[:200], y[:200], 20, covariance=True))
    acc.update(h[200:], y[200:])
    assert_same(acc.compute(), whole)


def test_covariance_matches_brute_force():
    h, y = data(dtype=torch.float64)
    got = class_stats(h, y, 20, covariance=True).cov_m2.numpy()
    _, means, _ = brute(h, y, 20)
    dev = h.numpy() - means[y.numpy()]
    np.testing.assert_allclose(got, dev.T @ dev, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_variance_exact_when_mean_is_a_million_sigmas(dtype):
    """‖μ_c‖/σ_c = 10⁶: the naive Σh² − Nμ² would keep ~4 digits; we need 1e-9."""
    g = torch.Generator().manual_seed(3)
    v, d, n = 5, 16, 20000
    y = torch.randint(0, v, (n,), generator=g)
    direction = torch.randn(v, d, generator=g, dtype=torch.float64)
    mu = direction / direction.norm(dim=1, keepdim=True) * 1e6 * 4.0  # σ_c = 4
    h = (mu[y] + torch.randn(n, d, generator=g, dtype=torch.float64)).to(dtype)
    counts, means, m2 = brute(h.double(), y, v)
    sigma = np.sqrt(m2 / counts)
    assert np.all(np.linalg.norm(means, axis=1) / sigma > 5e5)
    # streamed in uneven batches, and as merged shards
    acc = ClassAccumulator(v, d)
    for part in torch.tensor_split(torch.arange(n), 37):
        acc.update(h[part], y[part])
    streamed = acc.compute()
    shards = [class_stats(h[i::4], y[i::4], v) for i in range(4)]
    merged = shards[0].merge(shards[1]).merge(shards[2]).merge(shards[3])
    for got in (streamed, merged):
        rel = np.abs(got.m2.numpy() - m2) / m2
        assert rel.max() <= 1e-9


def test_naive_formula_would_fail_the_precision_case():
    """The precision test can fail: the textbook formula misses 1e-9 by far."""
    g = torch.Generator().manual_seed(3)
    x = 4e6 + torch.randn(20000, 16, generator=g, dtype=torch.float64)
    exact = ((x - x.mean(0)) ** 2).sum()
    naive = (x**2).sum() - len(x) * (x.mean(0) ** 2).sum()
    assert abs(float(naive - exact)) / float(exact) > 1e-9


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    v=st.integers(1, 8),
    d=st.integers(1, 5),
    splits=st.lists(st.integers(0, 60), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_property_split_and_merge_is_the_union(n, v, d, splits, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, v, (n,), generator=g)
    h = torch.randn(n, d, generator=g, dtype=torch.float64) * 10 + 100
    cuts = sorted({min(s, n) for s in splits} | {0, n})
    parts = [class_stats(h[a:b], y[a:b], v) for a, b in itertools.pairwise(cuts)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    assert_same(merged, class_stats(h, y, v), rtol=1e-9)


def test_save_load_round_trip_and_merge_files(tmp_path):
    h, y = data(n=400)
    a = class_stats(h[:150], y[:150], 20, covariance=True)
    b = class_stats(h[150:], y[150:], 20, covariance=True)
    save_stats(tmp_path / "a.safetensors", a, model="tiny", sequences=3, tokens=150, shard="0/2")
    save_stats(tmp_path / "b.safetensors", b, model="tiny", sequences=5, tokens=250, shard="1/2")
    loaded = load_stats(tmp_path / "a.safetensors")
    assert_same(loaded, a, rtol=0)
    assert loaded.metadata["model"] == "tiny" and loaded.metadata["kind"] == "train"
    merged = merge_stats_files([tmp_path / "a.safetensors", tmp_path / "b.safetensors"])
    assert_same(merged, class_stats(h, y, 20, covariance=True))
    assert merged.metadata["tokens"] == "400" and "shard" not in merged.metadata


def test_equal_stats_give_equal_bytes(tmp_path):
    """Metadata order must not leak into the file (resumed runs compare byte for byte)."""
    h, y = data(n=100)
    stats = class_stats(h, y, 20)
    save_stats(tmp_path / "a.safetensors", stats, model="m", layer="last", tokens=100)
    stats.metadata = {}
    save_stats(tmp_path / "b.safetensors", stats, tokens=100, layer="last", model="m")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert load_stats(tmp_path / "b.safetensors").metadata["model"] == "m"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from lingcollapse.io import atomic_path

    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) != 0o600
