"""`collect` within memory: train statistics keep rows for the classes the data holds
(bit for bit what rows for all V give), and layers that do not fit together are
collected in several passes, each resumable, whose files equal one pass's byte for byte."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lingcollapse import faults, memory
from lingcollapse.collect import passes
from lingcollapse.collect.model import load_model
from lingcollapse.collect.run import CollectConfig, collect, layer_path
from lingcollapse.errors import UserError
from lingcollapse.stats import ClassAccumulator
from test_stats import brute
from tiny import data_dir, save_model

VOCAB = 300  # most of it never occurs in the tiny data: the compact rows are few


# ------------------------------------------------------------ the accumulator


def zipf_batch(n=2000, v=VOCAB, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, v + 1, dtype=torch.float64) ** 2
    y = torch.multinomial(p, n, replacement=True, generator=g)
    h = torch.randn(n, d, generator=g) + 3 * torch.randn(v, d, generator=g)[y]
    return h, y


@pytest.mark.parametrize("covariance", [False, True])
def test_compact_rows_equal_all_rows_to_the_bit_and_brute_force(covariance):
    h, y = zipf_batch()
    classes = torch.unique(y)
    assert 20 < classes.numel() < VOCAB / 2  # most classes absent
    full = ClassAccumulator(VOCAB, 8, covariance)
    compact = ClassAccumulator(VOCAB, 8, covariance, classes=classes)
    assert compact.shift.shape == (classes.numel(), 8)
    for part in torch.tensor_split(torch.arange(len(y)), 7):  # the same update order
        full.update(h[part], y[part])
        compact.update(h[part], y[part])
    a, b = full.compute(), compact.compute()
    for key in ("counts", "means", "m2", *(["cov_m2"] if covariance else [])):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    counts, means, m2 = brute(h.double(), y, VOCAB)
    assert b.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(b.means.numpy(), means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.m2.numpy(), m2, rtol=1e-10, atol=1e-10)
    absent = np.setdiff1d(np.arange(VOCAB), classes.numpy())
    assert (b.means[absent] == 0).all() and (b.counts[absent] == 0).all()


def test_a_compact_state_resumes_bit_for_bit_and_a_full_one_too(tmp_path):
    """Through a file, as a checkpoint: tensors read from one start at any alignment."""
    h, y = zipf_batch(seed=1)
    whole = ClassAccumulator(VOCAB, 8, True, classes=torch.unique(y))
    whole.update(h, y)
    for classes in (torch.unique(y), None):
        first = ClassAccumulator(VOCAB, 8, True, classes=classes)
        first.update(h[:700], y[:700])
        save_file(first.state(), str(tmp_path / "state.safetensors"))
        state = load_file(str(tmp_path / "state.safetensors"))
        assert ("classes" in state) == (classes is not None)
        resumed = ClassAccumulator.from_state(state, VOCAB)
        resumed.update(h[700:], y[700:])
        a, b = whole.compute(), resumed.compute()
        for key in ("counts", "means", "m2", "cov_m2"):
            assert torch.equal(getattr(a, key), getattr(b, key)), (classes is None, key)


def test_a_class_without_a_row_is_an_error():
    acc = ClassAccumulator(10, 2, classes=torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="class 4 occurs"):
        acc.update(torch.ones(3, 2), torch.tensor([1, 4, 3]))
    with pytest.raises(ValueError, match=r"ids in \[0, 10\)"):
        ClassAccumulator(10, 2, classes=torch.tensor([10]))


def test_target_classes_are_the_bincount_of_the_targets(monkeypatch):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=(37, 9)).astype(np.int32)
    tokens[:, 0] = 60  # a first token is never a target
    tokens[30, 4] = 70  # a target outside the rows asked for
    monkeypatch.setattr(passes, "_BLOCK_TOKENS", 20)  # blocks of 2 sequences
    rows = range(3, 29)
    expected = np.flatnonzero(np.bincount(tokens[3:29, 1:].ravel(), minlength=80))
    got = passes.target_classes(tokens, rows, 80)
    assert got.dtype == torch.int64 and got.tolist() == expected.tolist()
    assert 60 not in got.tolist() and 70 not in got.tolist()
    every = np.arange(80, dtype=np.int32).reshape(10, 8)
    assert passes.target_classes(np.hstack([every[:, :1], every]), range(10), 80) is None
    assert passes.target_classes(tokens, range(5, 5), 80).numel() == 0  # an empty shard


# ------------------------------------------------------------ the planner

LLAMA3 = memory.ModelShape(
    weights=16 * 10**9,
    vocab=128_256,
    dim=4096,
    heads=32,
    inner=14_336,
    layers=32,
    elem=2,
    eager_attention=False,
)
ALL = [*range(32), "last"]


def free_for(count: int, shape=LLAMA3, rows=None, batch=4, seq_len=2048, hidden=33) -> int:
    """Just room for ``count`` layers' statistics beside one batch."""
    return memory.collect_work_bytes(shape, batch, seq_len, "train", count, hidden, rows=rows)


def test_llama3_statistics_are_8_4_gb_per_layer_and_the_data_classes_fewer():
    assert memory.stats_bytes(LLAMA3, "train", 1, LLAMA3.vocab, False) == pytest.approx(
        16 * 128_256 * 4096, rel=1e-3
    )  # 8.4 GB
    tinystories = memory.stats_bytes(LLAMA3, "train", 1, LLAMA3.vocab, False, rows=29_233)
    assert tinystories < 0.25 * 16 * 128_256 * 4096  # TinyStories: 29,233 classes


@pytest.mark.parametrize(
    ("room", "sizes"),
    [
        (9, [9, 8, 8, 8]),
        (33, [33]),
        (40, [33]),
        (1, [1] * 33),
        (16, [11, 11, 11]),
        (2, [2] * 16 + [1]),
    ],
)
def test_layer_passes_are_the_fewest_and_even(room, sizes):
    free = (free_for(room) + free_for(room + 1)) // 2  # between room and room + 1 layers
    got = memory.layer_passes(LLAMA3, ALL, 4, 2048, free, hidden_states=33)
    assert [len(p) for p in got] == sizes
    assert [layer for p in got for layer in p] == ALL  # every layer once, in order
    for group in got:
        assert free_for(len(group)) <= free


def test_compact_rows_make_fewer_passes():
    free = free_for(9)
    full = memory.layer_passes(LLAMA3, ALL, 4, 2048, free, hidden_states=33)
    compact = memory.layer_passes(LLAMA3, ALL, 4, 2048, free, hidden_states=33, rows=29_233)
    assert len(full) == 4 and len(compact) == 1


def test_layer_passes_when_one_layer_does_not_fit():
    with pytest.raises(UserError, match="the statistics of one layer beside a batch of 4 ×"):
        memory.layer_passes(LLAMA3, ALL, 4, 2048, free_for(1) - 1, hidden_states=33)
    assert memory.layer_passes(LLAMA3, [], 4, 2048, 0) == []


def test_finishing_is_one_layer_at_a_time():
    """The work beyond the state does not grow with the layers: 33 layers cost 32 more
    states than one, not 32 more finished (V, d) means."""
    per_layer = memory.stats_bytes(LLAMA3, "train", 1, LLAMA3.vocab, False)
    assert free_for(33) - free_for(1) == 32 * per_layer


# ------------------------------------------------------------ collect in passes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    model = save_model(root / "model", "gpt2", vocab=VOCAB, layers=4)
    data = data_dir(root / "data", vocab=VOCAB, sequences=(24, 8), seq_len=20)
    return model, data


def config(tiny, out, **kw) -> CollectConfig:
    model, data = tiny
    kw = {"layers": "all", "batch_size": 4, "checkpoint_every": 8, "device": "cpu", **kw}
    kw.setdefault("covariance", kw.get("split", "train") == "train")
    return CollectConfig(str(model), str(data), out=str(out), **kw)


def room_for(tiny, count: int, split="train") -> int:
    """Free memory for ``count`` layers of the tiny model's statistics beside a batch of 4."""
    model, data = tiny
    loaded = load_model(str(model))
    tokens = np.load(data / f"{split}.npy")
    classes = passes.target_classes(tokens, range(len(tokens)), VOCAB)
    rows = None if split != "train" or classes is None else classes.numel()
    shape = memory.ModelShape.of(loaded.model)
    return memory.collect_work_bytes(
        shape,
        4,
        tokens.shape[1],
        split,
        count,
        loaded.num_layers + 1,
        covariance=split == "train",
        logits=not loaded.body_only,
        rows=rows,
    )


def files(out) -> dict[str, bytes]:
    return {layer: layer_path(out, layer).read_bytes() for layer in (0, 1, 2, 3, "last")}


@pytest.fixture(scope="module")
def one_pass(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "train.safetensors"
    collect(config(tiny, out))
    return out


def test_layers_that_do_not_fit_are_collected_in_passes_with_the_same_bytes(
    tiny, one_pass, tmp_path, monkeypatch, caplog
):
    room = room_for(tiny, 2)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": room)
    out = tmp_path / "train.safetensors"
    with caplog.at_level(logging.INFO):
        written = collect(config(tiny, out))
    assert written == [layer_path(out, layer) for layer in (0, 1, 2, 3, "last")]
    said = [m for m in caplog.messages if "passes over the data" in m]
    assert len(said) == 1 and said[0].startswith("collect: the statistics of 5 layers (")
    assert said[0].endswith(": 3 passes over the data, of ≤ 2 layers each"), said
    assert "collect (pass 2 of 3): layers 2, 3" in caplog.messages
    assert files(out) == files(one_pass)
    assert not list(tmp_path.glob("*.partial"))


def test_compact_rows_write_what_rows_for_all_classes_write(tiny, one_pass, tmp_path, monkeypatch):
    monkeypatch.setattr(passes, "target_classes", lambda *a: None)  # every class a row
    out = tmp_path / "train.safetensors"
    collect(config(tiny, out))
    assert files(out) == files(one_pass)


def interrupt_at(monkeypatch, nth: int) -> None:
    """Stop ``collect`` after its nth batch (of all passes), as a kill would."""
    seen = []

    def point(name):
        seen.append(name)
        if seen.count("collect.batch") == nth:
            raise KeyboardInterrupt

    monkeypatch.setattr(faults, "point", point)


def checkpoint_meta(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_interrupted_in_pass_2_resumes_pass_2_alone(tiny, one_pass, tmp_path, monkeypatch, caplog):
    out = tmp_path / "train.safetensors"
    room = room_for(tiny, 2)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": room)
    # 24 sequences in batches of 4: 6 batches a pass, a checkpoint at 8 and 16
    interrupt_at(monkeypatch, 6 + 3)
    with pytest.raises(KeyboardInterrupt):
        collect(config(tiny, out))
    partial = out.with_name(out.name + ".partial")
    assert json.loads(checkpoint_meta(partial)["layers"]) == ["2", "3"]
    assert checkpoint_meta(partial)["cursor"] == "8"
    assert layer_path(out, 0).is_file() and layer_path(out, 1).is_file()
    assert not layer_path(out, 2).exists()
    done = layer_path(out, 0).stat().st_mtime_ns
    interrupt_at(monkeypatch, 10**9)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        collect(config(tiny, out))
    assert f"resuming from {partial} at sequence 8" in caplog.messages
    assert "collect: the checkpoint's pass of 2 layers first, then 1 more" in caplog.messages
    assert "collect (pass 1 of 2): layers 2, 3" in caplog.messages  # pass 1's files kept
    assert layer_path(out, 0).stat().st_mtime_ns == done
    assert files(out) == files(one_pass) and not partial.exists()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        collect(config(tiny, out))
    assert any("nothing to do" in m for m in caplog.messages)


def test_a_checkpoint_continues_whole_when_more_memory_is_free(
    tiny, one_pass, tmp_path, monkeypatch, caplog
):
    """Interrupted in pass 1 of 3 with room for 2 layers; then room for all: the
    checkpoint's pass first (so it resumes), the other 3 layers together after it."""
    out = tmp_path / "train.safetensors"
    room = room_for(tiny, 2)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": room)
    interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        collect(config(tiny, out))
    monkeypatch.undo()
    with caplog.at_level(logging.INFO):
        collect(config(tiny, out))
    partial = out.with_name(out.name + ".partial")
    assert f"resuming from {partial} at sequence 8" in caplog.messages
    assert "collect: the checkpoint's pass of 2 layers first, then 1 more" in caplog.messages
    assert "collect (pass 2 of 2): layers 2, 3, last" in caplog.messages
    assert files(out) == files(one_pass)


def test_a_checkpoint_with_all_rows_resumes_into_compact_rows(
    tiny, one_pass, tmp_path, monkeypatch
):
    """A checkpoint written with a row for every class (as before compact rows) resumes."""
    out = tmp_path / "train.safetensors"
    monkeypatch.setattr(passes, "target_classes", lambda *a: None)
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        collect(config(tiny, out))
    monkeypatch.undo()
    partial = out.with_name(out.name + ".partial")
    with safe_open(str(partial), framework="pt") as f:
        assert f.get_slice("last.shift").get_shape() == [VOCAB, 16]
        assert "last.classes" not in f.keys()
    collect(config(tiny, out))
    assert files(out) == files(one_pass)


def test_validation_in_passes_equals_one_pass(tiny, one_pass, tmp_path, monkeypatch):
    one = tmp_path / "one" / "validation.safetensors"
    common = {"split": "validation", "train_stats": str(one_pass)}
    collect(config(tiny, one, **common))
    room = room_for(tiny, 1, split="validation")
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": room)
    out = tmp_path / "validation.safetensors"
    collect(config(tiny, out, **common))
    assert files(out) == files(one)


def test_a_checkpoint_that_no_longer_fits_is_one_error(tiny, tmp_path, monkeypatch):
    out = tmp_path / "train.safetensors"
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        collect(config(tiny, out))  # one pass of 5 layers
    room = room_for(tiny, 2)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": room)
    monkeypatch.setattr(faults, "point", lambda name: None)
    with pytest.raises(UserError, match=r"the checkpoint of a pass of 5 layers needs .* delete"):
        collect(config(tiny, out))
