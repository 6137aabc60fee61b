"""`collect --device-map`: a model split over devices by accelerate gives the statistics,
the identity and the resume fingerprint of the same model loaded whole.

On a CPU-only machine the split is the CPU and the disk: a tight ``--max-memory`` with
``--offload-folder`` leaves blocks on disk, whose weights accelerate's hooks read into
each forward (they are meta tensors in the module). Where CUDA is present the same
checks run over the GPU and the CPU.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from lingcollapse import faults
from lingcollapse.cli import main
from lingcollapse.collect.model import load_model
from lingcollapse.collect.run import CollectConfig, collect
from lingcollapse.device import (
    HEADROOM,
    gpu_group,
    group_max_memory,
    parse_max_memory,
    statistics_device,
)
from lingcollapse.errors import UserError
from lingcollapse.memory import gib
from lingcollapse.stats.files import load_stats
from test_collect import BIN, head_inputs
from test_stats import brute
from tiny import FAMILIES, VOCAB, data_dir, save_model, tiny_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_dir(tmp_path_factory.mktemp("data"))


LAYERS = 4  # blocks of the tiny models split here


def part_budget(family: str, element: int = 4) -> str:
    """``--max-memory`` for the CPU that holds the embeddings and the first block or two
    of the tiny model with ``element`` bytes a weight (accelerate keeps room for the
    largest block besides): the other blocks are left on disk."""
    size = element * sum(p.numel() for p in tiny_model(family, layers=LAYERS).parameters())
    return f"cpu={int(0.65 * size)}"


def split(model_dir, family: str, offload, dtype: str = "float32"):
    budget = parse_max_memory(part_budget(family, 2 if dtype == "bf16" else 4))
    kwargs = {"device_map": "sequential", "max_memory": budget, "offload_folder": str(offload)}
    return load_model(str(model_dir), dtype=dtype, **kwargs)


def is_split(model) -> bool:
    """Blocks in memory and blocks on disk, whose weights are meta tensors in the module
    that accelerate's hooks read into each forward."""
    blocks = {name: where for name, where in model.hf_device_map.items() if name[-1].isdigit()}
    return {"cpu", "disk"} <= set(blocks.values()) and any(p.is_meta for p in model.parameters())


# the four, OPT-350m's shape (a head of half the width after project_out) and Gemma-2's
# soft-capped logits (validation through the transform)
SPLIT = [*FAMILIES, "opt-350m-like", "gemma2"]


@pytest.mark.parametrize("family", SPLIT)
def test_split_model_matches_the_model_and_its_identity(family, data, tmp_path):
    """The oracle of test_collect (brute force on the head's input, the validation loss)
    for a model whose blocks run from disk, and the weights' SHA-256 of the model loaded
    whole (the fingerprint and the file's bytes: the tests below)."""
    model_dir = save_model(tmp_path / "model", family, layers=LAYERS)
    offload = tmp_path / "offload"
    placed = split(model_dir, family, offload)
    assert is_split(placed.model), placed.model.hf_device_map
    assert placed.body_only
    ids = torch.from_numpy(np.load(data / "train.npy")[:2]).long()
    body = placed.embeddings(ids, ["last"])["last"]
    placed.body_only = False  # the whole model, its head's input read by a hook
    assert torch.equal(placed.embeddings(ids, ["last"])["last"], body)
    assert placed.weights_sha256() == load_model(str(model_dir)).weights_sha256()
    weight, _ = placed.classifier()
    model = tiny_model(family, layers=LAYERS).eval()
    torch.testing.assert_close(weight, model.get_output_embeddings().weight)

    where = {
        "device_map": "sequential",
        "max_memory": part_budget(family),
        "offload_folder": str(offload),
    }
    train = tmp_path / "train.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(train), batch_size=5, **where))
    stats = load_stats(train)
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    h, _ = head_inputs(model, ids)
    counts, means, m2 = brute(
        h[:, :-1].reshape(-1, h.shape[-1]).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert stats.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.m2.numpy(), m2, rtol=1e-4, atol=1e-6)

    val = tmp_path / "val.safetensors"
    kw = {"split": "validation", "train_stats": str(train), **where}
    collect(CollectConfig(str(model_dir), str(data), out=str(val), **kw))
    vids = torch.from_numpy(np.load(data / "validation.npy")).long()
    _, loss = head_inputs(model, vids)
    assert load_stats(val).totals()["val_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_auto_on_the_cpu_writes_the_same_bytes(data, tmp_path, capsys):
    """Without GPUs ``--device-map auto`` places the whole model on the CPU: every layer's
    file is the very file a pass without a map writes."""
    model_dir = save_model(tmp_path / "model", "gpt-neo")
    common = ["collect", model_dir, "--data", data, "--layers", "all", "--batch-size", 4]
    assert main([str(a) for a in [*common, "--out", tmp_path / "a" / "train.safetensors"]]) == 0
    mapped = ["--device-map", "auto", "--out", tmp_path / "b" / "train.safetensors"]
    assert main([str(a) for a in [*common, *mapped]]) == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("*.safetensors"))
    assert len(names) == 3
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_hidden_layers_of_a_split_model(data, tmp_path):
    """Block outputs computed on disk-offloaded blocks are those of the whole model."""
    model_dir = save_model(tmp_path / "model", "gpt2", layers=LAYERS)
    where = {
        "device_map": "balanced",
        "max_memory": part_budget("gpt2"),
        "offload_folder": str(tmp_path / "off"),
    }
    out = tmp_path / "train.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(out), layers="3,last", **where))
    model = tiny_model("gpt2", layers=LAYERS).eval()
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    with torch.no_grad():
        hidden = model.transformer(input_ids=ids, output_hidden_states=True).hidden_states
    stats = load_stats(tmp_path / "train.layer03.safetensors")  # block 3 ran from disk
    counts, means, _ = brute(
        hidden[3][:, :-1].reshape(-1, 16).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert stats.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-5, atol=1e-6)


def test_bf16_split_keeps_its_identity_and_float64_statistics(data, tmp_path):
    """Offloaded weights read back in the loaded dtype (bf16 from float32 files)."""
    model_dir = save_model(tmp_path / "model", "llama", layers=LAYERS)
    placed = split(model_dir, "llama", tmp_path / "off", dtype="bf16")
    assert is_split(placed.model)
    whole = load_model(str(model_dir), dtype="bf16")
    assert placed.weights_sha256() == whole.weights_sha256()
    assert placed.weights_sha256() != load_model(str(model_dir)).weights_sha256()
    out = tmp_path / "train.safetensors"
    where = {"max_memory": part_budget("llama", element=2), "offload_folder": str(tmp_path / "off")}
    where |= {"device_map": "sequential", "dtype": "bf16"}
    collect(CollectConfig(str(model_dir), str(data), out=str(out), **where))
    assert load_stats(out).means.dtype == torch.float64


def test_a_pass_interrupted_whole_resumes_split(data, tmp_path, monkeypatch):
    """The resume fingerprint does not depend on placement: a checkpoint written by the
    whole model is continued by the split one, and the file is the uninterrupted one."""
    model_dir = save_model(tmp_path / "model", "gpt-neox", layers=LAYERS)
    kw = {"batch_size": 4, "checkpoint_every": 8}
    plain = tmp_path / "plain.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(plain), device="cpu", **kw))

    class Stop(Exception):
        pass

    reached = []

    def stop_at_the_fourth_batch(name):
        reached.append(name)
        if len(reached) == 4:
            raise Stop

    out = tmp_path / "train.safetensors"
    monkeypatch.setattr(faults, "point", stop_at_the_fourth_batch)
    with pytest.raises(Stop):
        collect(CollectConfig(str(model_dir), str(data), out=str(out), device="cpu", **kw))
    monkeypatch.undo()
    partial = tmp_path / "train.safetensors.partial"
    assert partial.is_file() and not out.exists()
    where = {"max_memory": part_budget("gpt-neox"), "offload_folder": str(tmp_path / "off")}
    collect(
        CollectConfig(str(model_dir), str(data), out=str(out), device_map="auto", **kw, **where)
    )
    assert not partial.exists()
    assert out.read_bytes() == plain.read_bytes()


def test_a_map_that_cannot_hold_the_model_is_one_error(data, tmp_path, capsys):
    """Checked on the empty model before any weight is read: nothing is written."""
    model_dir = save_model(tmp_path / "model", "gpt2", layers=LAYERS)
    out = tmp_path / "stats" / "train.safetensors"
    argv = ["collect", model_dir, "--data", data, "--out", out, "--device-map", "auto"]
    part, offload = part_budget("gpt2"), ["--offload-folder", tmp_path / "off"]
    capsys.readouterr()
    assert main([str(a) for a in [*argv, "--max-memory", part]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the model needs"), err
    room = gib(int(part.removeprefix("cpu=")))
    assert re.search(rf"is {room} on cpu, so \d+ KiB of it would be left on disk", err[0])
    assert "--offload-folder" in err[0]
    assert main([str(a) for a in [*argv, "--max-memory", "cpu=10KiB", *offload]]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # not even a block fits: no way to run
    assert len(err) == 1 and err[0].endswith("which holds no part of it: raise --max-memory")
    assert not (tmp_path / "stats").exists() and not (tmp_path / "off").exists()
    assert main([str(a) for a in [*argv, "--max-memory", part, *offload]]) == 0
    assert out.is_file()


@pytest.mark.slow
def test_two_gloo_ranks_with_a_device_map_equal_one_process(data, tmp_path):
    """Under torchrun each rank places its own copy by the map (no GPU here: each its
    share of the CPU) and takes its block of sequences; rank 0 merges them."""
    model_dir = save_model(tmp_path / "model", "llama")
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(one), device="cpu", batch_size=3))
    argv = ["--nproc-per-node", "2", "--master-port", "29519", "--no-python"]
    argv += [BIN / "lingcollapse", "collect", model_dir, "--data", data, "--out", two]
    argv += ["--device-map", "auto", "--batch-size", "3"]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    a, b = load_stats(one), load_stats(two)
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
    assert a.metadata["fingerprint"] == b.metadata["fingerprint"]


@pytest.mark.parametrize(
    ("spec", "budget"),
    [
        ("0=20GiB,1=40GiB,cpu=64GiB", {0: 20 * 2**30, 1: 40 * 2**30, "cpu": 64 * 2**30}),
        ("cuda:1 = 1.5GB, CPU=512MiB", {1: 1_500_000_000, "cpu": 512 * 2**20}),
        ("cpu=1000", {"cpu": 1000}),
        ("0=0", {0: 0}),
    ],
)
def test_max_memory_is_parsed_into_bytes(spec, budget):
    assert parse_max_memory(spec) == budget


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("20GiB", "is not DEVICE=SIZE"),
        ("0=20GiB,", "is not DEVICE=SIZE"),
        ("gpu0=20GiB", "unknown device 'gpu0'"),
        ("disk=1TB", "unknown device 'disk'"),
        ("0=20G", "'20G' (for 0) is not a size"),
        ("cpu=-1GiB", "is not a size"),
        ("cpu=lots", "is not a size"),
        ("0=1GiB,cuda:0=2GiB", "names 'cuda:0' twice"),
    ],
)
def test_bad_max_memory_is_one_clear_error(spec, says):
    with pytest.raises(UserError, match=re.escape(says)):
        parse_max_memory(spec)


def test_placement_options_are_checked_in_the_config(data, tmp_path):
    base = {"model": "m", "data": str(data), "out": str(tmp_path / "s.safetensors")}
    with pytest.raises(UserError, match="--max-memory applies only to a model split by"):
        CollectConfig(**base, max_memory="cpu=1GiB")
    with pytest.raises(UserError, match="did you mean 'balanced'"):
        CollectConfig(**base, device_map="balance")
    with pytest.raises(UserError, match="not a size"):
        CollectConfig(**base, device_map="auto", max_memory="cpu=big")
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        CollectConfig(**base, device_map="auto", offload_folder=str(file))


def test_torchrun_ranks_take_disjoint_groups_of_gpus():
    assert gpu_group(0, 1, 0) == []
    assert gpu_group(0, 1, 4) == [0, 1, 2, 3]
    assert [gpu_group(r, 2, 8) for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [gpu_group(r, 3, 8) for r in range(3)] == [[0, 1], [2, 3], [4, 5]]  # 6, 7 idle
    assert [gpu_group(r, 4, 4) for r in range(4)] == [[0], [1], [2], [3]]
    with pytest.raises(UserError, match="start at most 2"):
        gpu_group(0, 4, 2)


def test_each_rank_budgets_its_own_gpus():
    G = 2**30  # bytes
    free = {0: 10 * G, 1: 20 * G, 2: 30 * G, 3: 40 * G, "cpu": 100 * G}
    mine = group_max_memory(None, [2, 3], free, local_world=2)
    assert mine == {2: int(HEADROOM * 30 * G), 3: int(HEADROOM * 40 * G), "cpu": 45 * G}
    budget = parse_max_memory("0=5GiB,1=6GiB,cpu=64GiB")  # within the group
    assert group_max_memory(budget, [2, 3], local_world=2) == {
        2: 5 * G,
        3: 6 * G,
        "cpu": 64 * G,
    }
    assert group_max_memory({"cpu": G}, [0, 1]) == {"cpu": G}  # unnamed GPUs unused
    with pytest.raises(UserError, match="each torchrun rank holds 2 GPUs"):
        group_max_memory({2: G}, [2, 3], local_world=2)
    with pytest.raises(UserError, match="no GPU is visible"):
        group_max_memory({0: G}, [])


def test_statistics_device_follows_the_head_input_or_the_option():
    cpu, cuda1 = torch.device("cpu"), torch.device("cuda", 1)
    assert statistics_device("auto", cuda1, [0, 1]) == cuda1
    assert statistics_device("auto", cpu, []) == cpu
    assert statistics_device("cpu", cuda1, [0, 1]) == cpu
    assert statistics_device("cuda", cuda1, [0, 1]) == cuda1
    assert statistics_device("cuda", cpu, [2, 3]) == torch.device("cuda", 2)
    assert statistics_device("cuda:1", cpu, [2, 3]) == torch.device("cuda", 3)
    with pytest.raises(UserError, match="--device cuda:2 names a GPU but 2 GPUs are"):
        statistics_device("cuda:2", cpu, [2, 3])
    with pytest.raises(UserError, match="unknown device"):
        statistics_device("tpu", cpu, [])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_split_over_the_gpu_and_the_cpu(data, tmp_path):
    """The first blocks on GPU 0, the rest and the head offloaded to the CPU (meta in the
    module, moved to the GPU for each forward): the statistics live on the GPU, where the
    head's input is, and match the whole model's; so does the validation pass, which
    reads the offloaded head."""
    model_dir = save_model(tmp_path / "model", "llama", layers=LAYERS)
    size = sum(
        p.numel() * p.element_size() for p in tiny_model("llama", layers=LAYERS).parameters()
    )
    budget = f"0={int(0.65 * size)},cpu=1GiB"
    placed = load_model(
        str(model_dir), device_map="sequential", max_memory=parse_max_memory(budget)
    )
    assert {0, "cpu"} <= set(placed.model.hf_device_map.values()), placed.model.hf_device_map
    assert placed.model.hf_device_map["lm_head"] == "cpu"
    assert placed.output_device() == torch.device("cuda", 0)
    assert placed.weights_sha256() == load_model(str(model_dir)).weights_sha256()
    where = {"device_map": "sequential", "max_memory": budget}
    out = {name: tmp_path / f"{name}.safetensors" for name in ("gpu", "cpu", "vgpu", "vcpu")}
    collect(CollectConfig(str(model_dir), str(data), out=str(out["gpu"]), **where))
    collect(CollectConfig(str(model_dir), str(data), out=str(out["cpu"]), device="cpu"))
    a, b = load_stats(out["gpu"]), load_stats(out["cpu"])
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
    assert a.metadata["weights_sha256"] == b.metadata["weights_sha256"]
    val = {"split": "validation", "train_stats": str(out["cpu"])}
    collect(CollectConfig(str(model_dir), str(data), out=str(out["vgpu"]), **val, **where))
    collect(CollectConfig(str(model_dir), str(data), out=str(out["vcpu"]), **val, device="cpu"))
    va, vb = load_stats(out["vgpu"]).totals(), load_stats(out["vcpu"]).totals()
    assert va["val_loss"] == pytest.approx(vb["val_loss"], rel=1e-5)
    assert va["n_val_samples"] == vb["n_val_samples"]
