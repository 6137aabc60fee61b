"""The class-statistics battery: streaming == one shot == merged shards == brute force."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.stats import ClassAccumulator, ClassStats, class_stats
from lingcollapse.stats.files import load_stats, merge_stats_files, save_stats
from lingcollapse.stats.validation import ValidationAccumulator


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


# ---------------------------------------------------------------- stats merge (DESIGN §9)

# The provenance `collect` writes (values made up): what `stats merge` compares.
PROVENANCE = {
    "model": "tiny",
    "revision": "",
    "weights_sha256": "a" * 64,
    "data": "data",
    "data_meta_sha256": "b" * 64,
    "split": "train",
    "split_sha256": "c" * 64,
    "dtype": "float32",
    "covariance": "true",
    "layer": "last",
}


def shard_rows(n: int, shard: str) -> slice:
    """The rows `collect --shard I/N` takes of n (collect/data.py's Shard.rows)."""
    index, count = (int(x) for x in shard.split("/"))
    return slice(n * index // count, n * (index + 1) // count)


def save_shard(path, h, y, shard, **changes):
    """Train stats of the rows of ``shard``, with provenance (``changes`` edit it)."""
    rows = shard_rows(len(y), shard)
    stats = class_stats(h[rows], y[rows], 20, covariance=True)
    n = len(y[rows])
    save_stats(path, stats, **{**PROVENANCE, "shard": shard, "sequences": n, "tokens": n})
    if changes:  # re-saved: save_stats fills the checksum in for the edited metadata
        save_stats(path, load_stats(path), **changes)
    return path


def test_save_load_round_trip_and_merge_files(tmp_path):
    h, y = data(n=400)
    a = save_shard(tmp_path / "a.safetensors", h, y, "0/2")
    b = save_shard(tmp_path / "b.safetensors", h, y, "1/2")
    loaded = load_stats(a)
    assert_same(loaded, class_stats(h[:200], y[:200], 20, covariance=True), rtol=0)
    assert loaded.metadata["model"] == "tiny" and loaded.metadata["kind"] == "train"
    merged = merge_stats_files([b, a])
    assert_same(merged, class_stats(h, y, 20, covariance=True))
    assert merged.metadata["tokens"] == "400"
    assert merged.metadata["shard"] == "0/1" and merged.metadata["merged_from"] == "0/2,1/2"
    kept = {k: v for k, v in merged.metadata.items() if k in PROVENANCE}
    assert kept == PROVENANCE  # nothing the inputs share is dropped


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 1, 0, 2]])
def test_all_shards_merge_to_the_whole_and_a_merge_merges_on(order, tmp_path):
    h, y = data(n=999)
    whole = class_stats(h, y, 20, covariance=True)
    shards = [save_shard(tmp_path / f"s{i}.st", h, y, f"{i}/4") for i in range(4)]
    merged = merge_stats_files([shards[i] for i in order])
    assert_same(merged, whole)
    assert merged.metadata["shard"] == "0/1" and merged.metadata["tokens"] == "999"
    # two shards merged, saved, then merged with the other two
    save_stats(tmp_path / "half.st", merge_stats_files([shards[order[0]], shards[order[1]]]))
    rest = [shards[i] for i in order[2:]]
    again = merge_stats_files([tmp_path / "half.st", *rest])
    assert_same(again, whole)
    assert again.metadata["shard"] == "0/1"
    assert again.metadata["merged_from"] == "0/4,1/4,2/4,3/4"
    assert load_stats(tmp_path / "half.st").n_samples < whole.n_samples  # a half differs


@pytest.mark.parametrize(
    ("shards", "covered"),
    [
        (["0/4", "1/4"], "0/2"),
        (["2/4", "3/4"], "1/2"),
        (["1/4", "2/4"], "1/4,2/4"),  # [1/4, 3/4) is no shard I/N
        (["0/4", "1/4", "3/4"], "0/2,3/4"),
        (["0/3", "1/3", "2/3"], "0/1"),
        (["0/2", "2/4"], "0/2,2/4"),
    ],
)
def test_merged_files_record_the_shards_they_cover(shards, covered, tmp_path):
    h, y = data(n=120)
    paths = [save_shard(tmp_path / f"{i}.st", h, y, s) for i, s in enumerate(shards)]
    merged = merge_stats_files(paths)
    assert merged.metadata["shard"] == covered
    rows = [i for s in shards for i in range(120)[shard_rows(120, s)]]
    assert_same(merged, class_stats(h[rows], y[rows], 20, covariance=True))


# Each refusal: (second file's shard, its changed metadata) → the check the error names.
REFUSALS = {
    "another model": ("1/2", {"weights_sha256": "d" * 64, "model": "other"}, "different model"),
    "another layer": ("1/2", {"layer": "0"}, "different layer"),
    "another split": ("1/2", {"split": "validation"}, "different split"),
    "another data dir": ("1/2", {"data_meta_sha256": "e" * 64}, "different data"),
    "another split file": ("1/2", {"split_sha256": "e" * 64}, "different data"),
    "another dtype": ("1/2", {"dtype": "bfloat16"}, "different dtype"),
    "without covariance": ("1/2", {"covariance": "false"}, "different covariance setting"),
    "the same shard twice": ("0/2", {}, "the same shard twice"),
    "a shard of a whole pass": ("1/4", {}, "overlapping shards"),
    "shards of other N that overlap": ("1/3", {}, "overlapping shards"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_merge_refuses_all_but_disjoint_shards_of_one_pass(case, tmp_path):
    shard, changes, check = REFUSALS[case]
    h, y = data(n=300)
    first = "0/1" if case == "a shard of a whole pass" else "0/2"
    a = save_shard(tmp_path / "a.st", h, y, first)
    b = save_shard(tmp_path / "b.st", h, y, shard, **changes)
    with pytest.raises(UserError) as caught:
        merge_stats_files([a, b])
    message = str(caught.value)
    assert check in message and str(a) in message and str(b) in message, message
    assert "\n" not in message


def test_merge_refuses_validation_of_other_train_means_or_min_count(tmp_path):
    h, y = data(n=300)
    train = class_stats(h, y, 20)
    weight = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    files = {}
    for name, means_from, min_count, shard in (
        ("a", train, 1, "0/2"),
        ("means", class_stats(h[:100], y[:100], 20), 1, "1/2"),
        ("min", train, 2, "1/2"),
        ("b", train, 1, "1/2"),
    ):
        acc = ValidationAccumulator(weight, None, means_from, min_count)
        rows = shard_rows(300, shard)
        acc.update(h[rows], y[rows])
        meta = {**PROVENANCE, "split": "validation", "shard": shard, "min_count": min_count}
        del meta["covariance"]
        files[name] = tmp_path / f"{name}.st"
        save_stats(files[name], acc.state, **meta)
    for name, check in (("means", "different train means"), ("min", "different min-count")):
        with pytest.raises(UserError, match=check):
            merge_stats_files([files["a"], files[name]])
    merged = merge_stats_files([files["a"], files["b"]])
    whole = ValidationAccumulator(weight, None, train)
    whole.update(h, y)
    assert torch.equal(merged.val_counts, whole.state.val_counts)
    assert torch.equal(merged.agree, whole.state.agree)
    assert merged.metadata["min_count"] == "1" and merged.metadata["shard"] == "0/1"


def test_stats_without_provenance_load_but_do_not_merge(tmp_path):
    """Other tools' stats (format and kind only, DESIGN §4) are read by measure; merge
    needs provenance and says so."""
    h, y = data(n=200)
    stats = class_stats(h, y, 20)
    save_stats(tmp_path / "bare.st", stats)
    assert_same(load_stats(tmp_path / "bare.st"), stats, rtol=0)
    good = save_shard(tmp_path / "good.st", h, y, "1/2")
    for inputs in ([tmp_path / "bare.st"], [good, tmp_path / "bare.st"]):
        with pytest.raises(UserError, match="carries no provenance") as caught:
            merge_stats_files(inputs)
        assert "weights_sha256" in str(caught.value) and "bare.st" in str(caught.value)


def test_stats_merge_cli_writes_the_union_or_nothing(tmp_path, capsys):
    """(Replaces a test that merged a file with itself and checked only that a file came
    out: that merge now fails, as it must.)"""
    h, y = data(n=500)
    a, b = (save_shard(tmp_path / f"{i}.st", h, y, f"{i}/2") for i in range(2))
    out = tmp_path / "merged.safetensors"
    capsys.readouterr()
    assert main(["stats", "merge", str(a), str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "same shard twice" in err[0]
    assert not out.exists()
    assert main(["stats", "merge", str(a), str(b), "--out", str(out)]) == 0
    assert "(shard 0/1)" in capsys.readouterr().out
    assert_same(load_stats(out), class_stats(h, y, 20, covariance=True))


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


def test_tensors_sha256_reads_every_byte_of_every_shape():
    """It keys the weights' provenance: 0-d tensors (scalar buffers) and bf16 included."""
    from lingcollapse.stats.files import tensors_sha256

    base = {"w": torch.ones(3, 2, dtype=torch.bfloat16), "s": torch.tensor(1.5)}
    digest = tensors_sha256(base)
    assert tensors_sha256({**base, "s": torch.tensor(2.5)}) != digest
    changed = base["w"].clone()
    changed[2, 1] = 2
    assert tensors_sha256({**base, "w": changed}) != digest
    assert tensors_sha256({**base, "w": base["w"].T.contiguous().T}) == digest
