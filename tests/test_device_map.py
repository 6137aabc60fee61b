"""`collect --device-map`: a model split over devices by accelerate gives the statistics,
the identity and the resume fingerprint of the same model loaded whole.

On a CPU-only machine the split is the CPU and the disk: a tight ``--max-memory`` with
``--offload-folder`` leaves blocks on disk, whose weights accelerate's hooks read into
each forward (they are meta tensors in the module). Where CUDA is present the same
checks run over the GPU and the CPU.
"""

import re

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
from lingcollapse.stats.files import load_stats
from test_collect import head_inputs
from test_stats import brute
from tiny import FAMILIES, VOCAB, data_dir, save_model, tiny_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return data_dir(tmp_path_factory.mktemp("data"))


def half_budget(family: str) -> str:
    """``--max-memory`` for the CPU that holds about half of the tiny model: the rest is
    left on disk."""
    size = sum(p.numel() * p.element_size() for p in tiny_model(family).parameters())
    return f"cpu={size // 2}"


def split(model_dir, family: str, offload, dtype: str = "float32"):
    budget = parse_max_memory(half_budget(family))
    kwargs = {"device_map": "sequential", "max_memory": budget, "offload_folder": str(offload)}
    return load_model(str(model_dir), dtype=dtype, **kwargs)


def is_split(model) -> bool:
    """accelerate's hooks hold some weights on disk (meta tensors in the module)."""
    return "disk" in model.hf_device_map.values() and any(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_split_model_matches_the_model_and_its_identity(family, data, tmp_path):
    """The oracle of test_collect (brute force on the head's input, the validation loss)
    for a model whose blocks run from disk, and the weights' SHA-256 of the model loaded
    whole (the fingerprint and the file's bytes: the tests below)."""
    model_dir = save_model(tmp_path / "model", family)
    offload = tmp_path / "offload"
    placed = split(model_dir, family, offload)
    assert is_split(placed.model), placed.model.hf_device_map
    assert placed.body_only
    assert placed.weights_sha256() == load_model(str(model_dir)).weights_sha256()
    weight, _ = placed.classifier()
    torch.testing.assert_close(weight, tiny_model(family).get_output_embeddings().weight)

    where = {
        "device_map": "sequential",
        "max_memory": half_budget(family),
        "offload_folder": str(offload),
    }
    train = tmp_path / "train.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(train), batch_size=5, **where))
    stats = load_stats(train)
    model = tiny_model(family).eval()
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
    model_dir = save_model(tmp_path / "model", "gpt2", layers=3)
    where = {
        "device_map": "balanced",
        "max_memory": half_budget("gpt2"),
        "offload_folder": str(tmp_path / "off"),
    }
    out = tmp_path / "train.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(out), layers="1,last", **where))
    model = tiny_model("gpt2", layers=3).eval()
    ids = torch.from_numpy(np.load(data / "train.npy")).long()
    with torch.no_grad():
        hidden = model.transformer(input_ids=ids, output_hidden_states=True).hidden_states
    stats = load_stats(tmp_path / "train.layer01.safetensors")
    counts, means, _ = brute(
        hidden[1][:, :-1].reshape(-1, 16).double(), ids[:, 1:].reshape(-1).numpy(), VOCAB
    )
    assert stats.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(stats.means.numpy(), means, rtol=1e-5, atol=1e-6)


def test_bf16_split_keeps_its_identity_and_float64_statistics(data, tmp_path):
    """Offloaded weights read back in the loaded dtype (bf16 from float32 files)."""
    model_dir = save_model(tmp_path / "model", "llama")
    placed = split(model_dir, "llama", tmp_path / "off", dtype="bf16")
    assert is_split(placed.model)
    whole = load_model(str(model_dir), dtype="bf16")
    assert placed.weights_sha256() == whole.weights_sha256()
    assert placed.weights_sha256() != load_model(str(model_dir)).weights_sha256()
    out = tmp_path / "train.safetensors"
    where = {"max_memory": half_budget("llama"), "offload_folder": str(tmp_path / "off")}
    where |= {"device_map": "sequential", "dtype": "bf16"}
    collect(CollectConfig(str(model_dir), str(data), out=str(out), **where))
    assert load_stats(out).means.dtype == torch.float64


def test_a_pass_interrupted_whole_resumes_split(data, tmp_path, monkeypatch):
    """The resume fingerprint does not depend on placement: a checkpoint written by the
    whole model is continued by the split one, and the file is the uninterrupted one."""
    model_dir = save_model(tmp_path / "model", "gpt-neox")
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
    where = {"max_memory": half_budget("gpt-neox"), "offload_folder": str(tmp_path / "off")}
    collect(
        CollectConfig(str(model_dir), str(data), out=str(out), device_map="auto", **kw, **where)
    )
    assert not partial.exists()
    assert out.read_bytes() == plain.read_bytes()


def test_a_map_that_cannot_hold_the_model_is_one_error(data, tmp_path, capsys):
    model_dir = save_model(tmp_path / "model", "gpt2")
    out = tmp_path / "stats" / "train.safetensors"
    argv = ["collect", model_dir, "--data", data, "--out", out, "--device-map", "auto"]
    capsys.readouterr()
    assert main([str(a) for a in [*argv, "--max-memory", "cpu=10KiB"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the model needs"), err
    assert re.search(r"is 10 KiB on cpu, so \d+ KiB of it would be left on disk", err[0])
    assert "--offload-folder" in err[0]
    assert not (tmp_path / "stats").exists()
    offload = tmp_path / "off"
    assert (
        main([str(a) for a in [*argv, "--max-memory", "cpu=10KiB", "--offload-folder", offload]])
        == 0
    )
    assert out.is_file()


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
    gib = 2**30
    free = {0: 10 * gib, 1: 20 * gib, 2: 30 * gib, 3: 40 * gib, "cpu": 100 * gib}
    mine = group_max_memory(None, [2, 3], free, local_world=2)
    assert mine == {2: int(HEADROOM * 30 * gib), 3: int(HEADROOM * 40 * gib), "cpu": 45 * gib}
    budget = parse_max_memory("0=5GiB,1=6GiB,cpu=64GiB")  # within the group
    assert group_max_memory(budget, [2, 3], local_world=2) == {
        2: 5 * gib,
        3: 6 * gib,
        "cpu": 64 * gib,
    }
    assert group_max_memory({"cpu": gib}, [0, 1]) == {"cpu": gib}  # unnamed GPUs unused
    with pytest.raises(UserError, match="each torchrun rank holds 2 GPUs"):
        group_max_memory({2: gib}, [2, 3], local_world=2)
    with pytest.raises(UserError, match="no GPU is visible"):
        group_max_memory({0: gib}, [])


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
    """Part on GPU 0, the rest offloaded to the CPU (meta in the module, moved to the GPU
    for each forward): the statistics live on the GPU where the head's input is, and
    match the whole model on the CPU."""
    model_dir = save_model(tmp_path / "model", "gpt-neo", layers=4)
    size = sum(p.numel() * p.element_size() for p in tiny_model("gpt-neo", layers=4).parameters())
    budget = {0: size // 2, "cpu": 2**30}
    placed = load_model(str(model_dir), device_map="sequential", max_memory=budget)
    assert {0, "cpu"} <= set(placed.model.hf_device_map.values()), placed.model.hf_device_map
    assert placed.output_device().type == "cuda"
    assert placed.weights_sha256() == load_model(str(model_dir)).weights_sha256()
    where = {"device_map": "sequential", "max_memory": f"0={size // 2},cpu=1GiB"}
    gpu, cpu = tmp_path / "gpu.safetensors", tmp_path / "cpu.safetensors"
    collect(CollectConfig(str(model_dir), str(data), out=str(gpu), **where))
    collect(CollectConfig(str(model_dir), str(data), out=str(cpu), device="cpu"))
    a, b = load_stats(gpu), load_stats(cpu)
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(a.means, b.means, rtol=1e-5, atol=1e-6)
    assert a.metadata["weights_sha256"] == b.metadata["weights_sha256"]
