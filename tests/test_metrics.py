"""Every metric against the float64 brute force and closed-form geometries."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lingcollapse.metrics import Convention, measure, pairwise_metrics
from lingcollapse.stats import ClassStats, class_stats
from reference import brute_force, covariance_reference, simplex_etf


def stats_from(counts, means, m2) -> ClassStats:
    return ClassStats(
        torch.as_tensor(counts, dtype=torch.long),
        torch.as_tensor(means, dtype=torch.float64),
        torch.as_tensor(m2, dtype=torch.float64),
    )


def random_case(seed, v=60, d=8, near=True):
    """Random means with filtered (rare and empty) classes, an exact duplicate and a
    near-duplicate at distance 1e-3 of the norms."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, v)
    counts[:3] = 0  # empty classes
    means = rng.standard_normal((v, d)) * rng.uniform(0.5, 3, (v, 1)) + 2.0
    means[counts == 0] = 0.0
    m2 = rng.uniform(0.1, 2.0, v) * counts
    means[11] = means[10]  # exact duplicate → degenerate pair
    counts[10] = counts[11] = 5
    if near:
        direction = rng.standard_normal(d)
        means[13] = means[12] + 1e-3 * np.linalg.norm(means[12]) * direction / np.linalg.norm(
            direction
        )
        counts[12] = counts[13] = 5
    return counts, means, m2, rng.standard_normal((v, d))


def assert_matches(got: dict, want: dict, rtol=1e-9):
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=rtol, abs=1e-12), key


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_count", [1, 3])
@pytest.mark.parametrize("k", [2.0, 0.0, 1.0])
def test_brute_force(seed, min_count, k):
    counts, means, m2, weight = random_case(seed)
    want, rows, kept = brute_force(counts, means, m2, weight, min_count, k)
    got = measure(
        stats_from(counts, means, m2),
        Convention(cdnv_power=k, min_count=min_count),
        classifier=(torch.as_tensor(weight), None),
        tile=7,
    )
    assert_matches(got.metrics, want)
    assert got.metrics["n_degenerate_pairs"] == 1
    table = got.classes
    assert table.token_id.tolist() == kept.tolist()
    for col, values in rows.items():
        np.testing.assert_allclose(table[col], values, rtol=1e-9, err_msg=col)


@pytest.mark.parametrize("centre", ["unweighted", "weighted"])
@pytest.mark.parametrize("variance", ["biased", "unbiased"])
def test_conventions_against_brute_force(centre, variance):
    counts, means, m2, weight = random_case(7)
    want, _, _ = brute_force(counts, means, m2, weight, 2, 2.0, centre, variance)
    conv = Convention(centre=centre, variance=variance, min_count=2)
    got = measure(stats_from(counts, means, m2), conv, classifier=(torch.as_tensor(weight), None))
    assert_matches(got.metrics, want)


@pytest.mark.parametrize("tile", [1, 5, 16, 1024])
def test_tiling_does_not_change_the_answer(tile):
    counts, means, m2, _ = random_case(3)
    want, _, _ = brute_force(counts, means, m2)
    got = measure(stats_from(counts, means, m2), tile=tile).metrics
    assert_matches(got, want)


def test_near_coincident_means_keep_float64_accuracy():
    """Pairs at distance 1e-3..1e-6 of their norms: the expansion would lose up to 12
    digits; the recomputation keeps the brute force's answer."""
    rng = np.random.default_rng(0)
    d = 64
    base = rng.standard_normal((4, d)) * 100
    means = [base[0], base[1], base[2], base[3]]
    for scale in (1e-3, 1e-5, 1e-6):
        step = rng.standard_normal(d)
        means.append(base[0] + scale * np.linalg.norm(base[0]) * step / np.linalg.norm(step))
    means = np.array(means)
    counts = np.full(len(means), 10)
    m2 = np.full(len(means), 5.0)
    want, rows, _ = brute_force(counts, means, m2)
    got = measure(stats_from(counts, means, m2), tile=3)
    assert_matches(got.metrics, want, rtol=1e-9)
    np.testing.assert_allclose(got.classes.cdnv_mean, rows["cdnv_mean"], rtol=1e-9)


@pytest.mark.parametrize("c,d", [(5, 4), (10, 9), (12, 32)])
def test_simplex_etf(c, d):
    means = simplex_etf(c, d, scale=3.0, offset=50.0)
    stats = stats_from(np.full(c, 4), means, np.full(c, 0.3))
    weight = torch.as_tensor(means - means.mean(0))  # self-dual classifier
    m = measure(stats, classifier=(weight * 2.5, None), tile=4).metrics
    assert m["nc2_interference_mean"] == pytest.approx(-1 / (c - 1), rel=1e-12)
    for key in (
        "nc2_interference_std",
        "nc2_equiangular_cov",
        "nc2_norm_std",
        "nc2_equinorm_cov",
        "gnc2_logkernel_std",
        "gnc2_uniformity_cov",
        "nc3_duality_std",
        "unc3_duality_cov",
        "nc3_distance_mean",
        "nc3_papyan_error",
    ):
        assert abs(m[key]) < 1e-12, key
    assert m["nc2_etf_error"] < 1e-7  # closed form: √(rounding) ≈ 1e-8
    assert m["nc3_zhu_error"] < 1e-7
    assert m["nc3_duality_mean"] == pytest.approx(1.0, abs=1e-14)
    # Equal unit vectors at angle arccos(−1/(C−1)): ‖ẑ − ẑ'‖² = 2 + 2/(C−1)
    assert m["gnc2_logkernel_mean"] == pytest.approx(-0.5 * math.log(2 + 2 / (c - 1)))


def test_fully_collapsed_classes_have_zero_cdnv():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((20, 6))
    m = measure(stats_from(np.full(20, 7), means, np.zeros(20))).metrics
    assert m["nc1_cdnv"] == 0.0


def test_cdnv_scales_as_inverse_square_with_k2():
    counts, means, m2, _ = random_case(2, near=False)
    a = measure(stats_from(counts, means, m2)).metrics["nc1_cdnv"]
    b = measure(stats_from(counts, means * 10, m2 * 100)).metrics["nc1_cdnv"]
    assert b == pytest.approx(a / 100, rel=1e-10)
    a0 = measure(stats_from(counts, means, m2), Convention(cdnv_power=0)).metrics["nc1_cdnv"]
    b0 = measure(stats_from(counts, means * 10, m2 * 100), Convention(cdnv_power=0))
    assert b0.metrics["nc1_cdnv"] == pytest.approx(a0, rel=1e-10)


def test_covariance_metrics_against_samples():
    torch.manual_seed(0)
    v, d, n = 12, 5, 3000
    y = torch.randint(0, v, (n,))
    h = torch.randn(n, d, dtype=torch.float64) * 0.5 + torch.randn(v, d, dtype=torch.float64)[y]
    got = measure(class_stats(h, y, v, covariance=True)).metrics
    _, _, kept = brute_force(*_moments(h, y, v))
    mu = np.stack([h[y == c].mean(0).numpy() for c in kept])
    ratio, quotient = covariance_reference(h.numpy(), y.numpy(), kept, mu - mu.mean(0))
    assert got["nc1_covariance_ratio"] == pytest.approx(ratio, rel=1e-9)
    assert got["nc1_quotient"] == pytest.approx(quotient, rel=1e-9)


def _moments(h, y, v):
    counts = torch.bincount(y, minlength=v).numpy()
    means = np.stack([h[y == c].mean(0).numpy() for c in range(v)])
    m2 = np.array([((h[y == c] - h[y == c].mean(0)) ** 2).sum().item() for c in range(v)])
    return counts, means, m2


def test_empty_classes_behave_as_absent():
    counts, means, m2, weight = random_case(5)
    pad = 17  # extra classes that were never seen
    padded = stats_from(
        np.r_[counts, np.zeros(pad, int)],
        np.r_[means, np.zeros((pad, 8))],
        np.r_[m2, np.zeros(pad)],
    )
    w_pad = torch.as_tensor(np.r_[weight, np.ones((pad, 8))])
    a = measure(stats_from(counts, means, m2), classifier=(torch.as_tensor(weight), None))
    b = measure(padded, classifier=(w_pad, None))
    assert (a.metrics.pop("vocab_size"), b.metrics.pop("vocab_size")) == (
        len(counts),
        len(counts) + pad,
    )
    assert a.metrics == b.metrics
    assert a.classes.equals(b.classes)


def test_pairwise_never_allocates_c_by_c(monkeypatch):
    """A tile bounds every temporary: with tile=8 nothing of C×C size may appear."""
    c, d, tile = 300, 4, 8
    z = torch.randn(c, d, dtype=torch.float64)
    seen = []
    real_matmul, real_mm = torch.Tensor.__matmul__, torch.mm

    def spy(real):
        def product(*args, **kwargs):
            out = real(*args, **kwargs)
            seen.append(out.numel())
            return out

        return product

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy(real_matmul))
    monkeypatch.setattr(torch, "mm", spy(real_mm))
    pairwise_metrics(z, torch.ones(c, dtype=torch.float64), tile=tile)
    assert seen and max(seen) <= tile * tile


def pairwise_reference(z, sigma2, k=2.0) -> dict:
    """Float64 brute force of what :func:`pairwise_metrics` returns, from vector differences:
    per quantity the mean and std over the pairs c < c' it keeps, the row means over the
    c' ≠ c it keeps, and how many pairs it leaves out (its value is not finite)."""
    z, sigma2 = np.asarray(z, float), np.asarray(sigma2, float)
    c = len(z)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    dist2 = ((z[:, None] - z[None]) ** 2).sum(2)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "cdnv": (sigma2[:, None] + sigma2[None]) / (2 * dist2 ** (1 + k / 2)),
            "interference": unit @ unit.T,
            "logkernel": -np.log(np.linalg.norm(unit[:, None] - unit[None], axis=2)),
        }
    iu, off = np.triu_indices(c, 1), ~np.eye(c, dtype=bool)
    out = {}
    for name, x in values.items():
        ok = off & np.isfinite(x)
        pairs = x[iu][ok[iu]]
        rows = np.where(ok, x, 0).sum(1) / ok.sum(1)
        out[name] = pairs.mean(), pairs.std(), rows, int((~ok[iu]).sum())
    return out


def awkward_means(c=40, d=6, seed=0):
    """Integer means (so that coincidences are exact) with two coinciding pairs, a pair of
    coinciding directions (different norms) and a pair at distance 1 with norms ~10⁴."""
    rng = np.random.default_rng(seed)
    z = rng.integers(-9, 10, (c, d)).astype(float)
    z[7], z[30] = z[3], z[2]  # means coincide: out of Eq. 4 and 7
    z[12] = 2 * z[5]  # directions coincide (×2 keeps ẑ exact): out of Eq. 7 only
    z[21] = 1000 * rng.integers(1, 10, d)
    z[22] = z[21] + np.eye(d)[0]  # near: recomputed from the difference
    return z, rng.uniform(0.1, 2.0, c)


@pytest.mark.parametrize("k", [2.0, 1.0])
@pytest.mark.parametrize("tile", [1, 2, 3, 7, 39, 40, 41, 1024])
def test_pairwise_any_tile_against_brute_force(tile, k):
    """Tiles of one class, tiles that do not divide C, one tile and more than C: every
    mean, std and row mean at 1e-9, with degenerate pairs in diagonal and other tiles."""
    z, sigma2 = awkward_means()
    want = pairwise_reference(z, sigma2, k)
    got = pairwise_metrics(torch.as_tensor(z), torch.as_tensor(sigma2), cdnv_power=k, tile=tile)
    for name, (mean, std, rows, _) in want.items():
        moments = getattr(got, name)
        assert moments.value == pytest.approx(mean, rel=1e-9), name
        assert moments.std == pytest.approx(std, rel=1e-9), name
        np.testing.assert_allclose(getattr(got, f"row_{name}"), rows, rtol=1e-9, err_msg=name)
    assert got.n_degenerate_pairs == want["cdnv"][3] == 2
    assert got.n_degenerate_directions == want["logkernel"][3] == 3
    assert want["interference"][3] == 0


@pytest.mark.parametrize("tile", [1, 5, 64])
def test_pairwise_std_keeps_its_digits_under_a_large_offset(tile):
    """CDNVs that share an offset 10⁶ times their spread: Σx² − (Σx)²/n would keep only
    about four digits of the variance; the row-shifted sums keep the brute force's."""
    c = 64
    z = c * np.eye(c) - 1.0  # a simplex: every ‖z_i − z_j‖² is 2C², exactly
    sigma2 = 1e6 + np.random.default_rng(0).uniform(0.0, 1.0, c)
    want = pairwise_reference(z, sigma2)["cdnv"]
    pairs = (sigma2[:, None] + sigma2[None])[np.triu_indices(c, 1)] / (2 * (2 * c * c) ** 2)
    naive = math.sqrt((pairs**2).mean() - pairs.mean() ** 2)
    assert abs(naive / want[1] - 1) > 1e-6  # the offset is large enough to matter
    got = pairwise_metrics(torch.as_tensor(z), torch.as_tensor(sigma2), tile=tile)
    assert got.cdnv.value == pytest.approx(want[0], rel=1e-12)
    assert got.cdnv.std == pytest.approx(want[1], rel=1e-9)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    counts, means, m2, weight = random_case(9)
    stats = stats_from(counts, means, m2)
    a = measure(stats, classifier=(torch.as_tensor(weight), None)).metrics
    b = measure(stats, classifier=(torch.as_tensor(weight), None), device="cuda").metrics
    assert_matches(b, a, rtol=1e-9)


def test_ood_deviation_against_brute_force():
    counts, means, m2, _ = random_case(4, near=False)
    stats = stats_from(counts, means, m2)
    rng = np.random.default_rng(8)
    ood_counts = rng.integers(0, 5, 60)
    ood_means = rng.standard_normal((60, 8)) + 1.5
    ood = stats_from(ood_counts, ood_means, np.zeros(60))
    got = measure(stats, ood=ood).metrics["nc5_ood_deviation"]
    kept = counts >= 1
    z = means[kept] - means[kept].mean(0)
    g = (ood_counts[:, None] * ood_means).sum(0) / ood_counts.sum() - means[kept].mean(0)
    want = np.abs(z @ g / (np.linalg.norm(z, axis=1) * np.linalg.norm(g))).mean()
    assert got == pytest.approx(want, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), offset=st.floats(-1e3, 1e3), c=st.integers(3, 25))
def test_property_relabel_and_translate_invariance(seed, offset, c):
    """Relabelling classes and translating every mean change no metric."""
    rng = np.random.default_rng(seed)
    d = 5
    counts = rng.integers(1, 6, c)
    means = rng.standard_normal((c, d)) * 3
    m2 = rng.uniform(0, 2, c) * counts
    perm = rng.permutation(c)
    a = measure(stats_from(counts, means, m2), tile=4).metrics
    b = measure(stats_from(counts[perm], means[perm] + offset, m2[perm]), tile=3).metrics
    for key in (
        "nc1_cdnv",
        "nc2_norm_std",
        "nc2_interference_mean",
        "nc2_interference_std",
        "gnc2_logkernel_mean",
        "gnc2_logkernel_std",
        "nc2_etf_error",
    ):
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("tile", [1, 7, 1024])
def test_cdnv_control_is_the_k0_cdnv_and_scale_invariant(tile):
    """--cdnv-control: nc1_cdnv_k0 equals the brute-force k = 0 CDNV (degenerate pairs
    left out as for k = 2, any tiling) and does not move when every embedding is scaled,
    while the k = 2 CDNV falls as 1/α²; without it, or at k = 0, there is no such key."""
    z, sigma2 = awkward_means()
    want = pairwise_reference(z, sigma2, 0.0)["cdnv"]
    got = pairwise_metrics(
        torch.as_tensor(z), torch.as_tensor(sigma2), cdnv_power=2.0, tile=tile, control=True
    )
    assert got.cdnv_control.value == pytest.approx(want[0], rel=1e-9)
    assert got.cdnv_control.std == pytest.approx(want[1], rel=1e-9)
    counts, means, m2, _ = random_case(3, near=False)
    small = measure(stats_from(counts, means, m2), cdnv_control=True, tile=tile).metrics
    big = measure(stats_from(counts, means * 10, m2 * 100), cdnv_control=True, tile=tile).metrics
    assert big["nc1_cdnv_k0"] == pytest.approx(small["nc1_cdnv_k0"], rel=1e-10)
    assert big["nc1_cdnv"] == pytest.approx(small["nc1_cdnv"] / 100, rel=1e-10)
    k0 = measure(stats_from(counts, means, m2), Convention(cdnv_power=0)).metrics["nc1_cdnv"]
    assert small["nc1_cdnv_k0"] == pytest.approx(k0, rel=1e-12)
    assert "nc1_cdnv_k0" not in measure(stats_from(counts, means, m2)).metrics
    galanti = measure(stats_from(counts, means, m2), Convention(cdnv_power=0), cdnv_control=True)
    assert "nc1_cdnv_k0" not in galanti.metrics
