"""The bundled `llms` grid and the planner that sizes its jobs: real LLMs described by
their declared configs, planned offline (no download), on SLURM with planned resources."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import socket
import tomllib
from pathlib import Path

import pytest

from lingcollapse.cli import main
from lingcollapse.errors import UserError
from lingcollapse.memory import ModelShape
from lingcollapse.sweep import bundled, resources, stages
from lingcollapse.sweep.grid import load_grid, parse_grid, parse_size
from tiny import save_model

# Every model's total parameters as its authors publish them: Pythia's README table
# (EleutherAI/pythia), and the parameter counts of the Llama-3.2 and Qwen2.5 model cards.
PUBLISHED = {
    "EleutherAI/pythia-70m": 70_426_624,
    "EleutherAI/pythia-160m": 162_322_944,
    "EleutherAI/pythia-410m": 405_334_016,
    "EleutherAI/pythia-1b": 1_011_781_632,
    "EleutherAI/pythia-1.4b": 1_414_647_808,
    "EleutherAI/pythia-2.8b": 2_775_208_960,
    "EleutherAI/pythia-6.9b": 6_857_302_016,
    "EleutherAI/pythia-12b": 11_846_072_320,
    "meta-llama/Llama-3.2-1B": 1_235_814_400,
    "meta-llama/Llama-3.2-3B": 3_212_749_824,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "Qwen/Qwen2.5-1.5B": 1_543_714_304,
    "Qwen/Qwen2.5-3B": 3_085_938_688,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
}
PYTHIA = [k for k in PUBLISHED if "pythia" in k]


def llms(**slurm):
    """The bundled grid, with [executor.slurm] keys replaced."""
    raw = tomllib.loads(bundled.path("llms").read_text())
    raw["executor"]["slurm"].update(slurm)
    return parse_grid(raw, "llms.toml")


def first(grid, hub_id: str):
    return next(m for m in grid.models if m.hub_id == hub_id)


def budget(gpu_memory: str) -> int:
    return int(resources.GPU_FILL * (parse_size(gpu_memory, "x") - resources.GPU_CONTEXT))


def test_the_declared_configs_give_the_published_parameter_counts():
    """The figures copied from config.json, built on the meta device, count exactly the
    parameters their authors publish (a wrong width, depth, MLP width, head grouping,
    vocabulary padding or tying changes the count); bf16 weights are 2 bytes each."""
    grid = llms()
    assert {m.hub_id for m in grid.models} == set(PUBLISHED)
    for hub_id, published in PUBLISHED.items():
        built = resources.declared_model(first(grid, hub_id).declared, "bf16")
        assert built.params == published, hub_id
        buffers = built.shape.weights - 2 * built.params  # rotary frequencies
        assert 0 <= buffers < 2**20, hub_id
        assert built.shape.elem == 2


def test_a_declared_config_is_the_model_it_describes(tmp_path):
    """Built from the declared keys alone, a model has the real one's parameters and
    memory shape; the sweep's check passes it and names every key declared wrongly."""
    import torch

    path = save_model(tmp_path / "lm", "gpt-neox", vocab=97)
    declared = {
        "model_type": "gpt_neox",
        "vocab_size": 97,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "tie_word_embeddings": False,
    }
    grid = parse_grid({"models": [{"id": str(path), "config": declared}]})
    model = grid.models[0]
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    built = resources.declared_model(model.declared, "float32")
    assert built.params == real.num_parameters()
    assert built.shape == ModelShape.of(real)
    resources.check_declared(grid, model)  # passes
    wrong = {**declared, "hidden_size": 32, "num_hidden_layers": 3}
    grid = parse_grid({"models": [{"id": str(path), "name": "lm", "config": wrong}]})
    with pytest.raises(UserError) as err:
        resources.check_declared(grid, grid.models[0])
    assert (
        "lm: the grid declares hidden_size = 32 (its config.json: 16), "
        "num_hidden_layers = 3 (its config.json: 2)"
    ) in str(err.value)


def test_the_plan_of_llms_is_offline_and_lists_every_model_and_revision(
    tmp_path, monkeypatch, capsys
):
    """`sweep llms --plan --json` with no network at all: every model × revision, in the
    DESIGN shape, each with the resources its job is sized with."""

    def no_network(*args, **kwargs):
        raise AssertionError("the plan went to the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert main(["sweep", "llms", "--plan", "--json", "--out", str(tmp_path / "o")]) == 0
    plan = json.loads(capsys.readouterr().out)
    raw = tomllib.loads(bundled.path("llms").read_text())
    wanted = {(e["id"], rev) for e in raw["models"] for rev in e.get("revisions", [None])}
    assert {(m["hub_id"], m["revision"]) for m in plan["models"]} == wanted
    assert len(wanted) == 8 * 5 + 2 + 4
    assert plan["runs"] == [] and all(
        m["run"] is None and m["epoch"] is None for m in plan["models"]
    )
    assert all({"name", "run", "epoch"} <= set(m) for m in plan["models"])
    for m in plan["models"]:
        r = m["resources"]
        assert r["params"] == PUBLISHED[m["hub_id"]]
        assert r["gpus"] >= 1 and r["gpu_bytes"] <= budget("80GB")
        assert r["layer_stats"] == r["shape"]["layers"] + 1  # layers = "all"
        assert r["time_limit_hours"] >= r["hours"] > 0
    assert plan["totals"]["planned_models"] == len(wanted)
    gpu_hours = sum(m["resources"]["hours"] * m["resources"]["gpus"] for m in plan["models"])
    assert plan["totals"]["gpu_hours"] == pytest.approx(gpu_hours)


def test_costs_grow_with_the_model():
    """Across Pythia's sizes (one tokenizer, one data dir): more parameters, more
    weights, at least as many passes, more hours."""
    grid = llms()
    plans = [resources.plan_model(grid, first(grid, h), Path("o")) for h in PYTHIA]
    for small, large in itertools.pairwise(plans):
        assert large.params > small.params
        assert large.shape.weights > small.shape.weights
        assert large.passes["train"] >= small.passes["train"]
        assert large.hours > small.hours and large.gpu_hours > small.gpu_hours
    assert plans[0].passes == {"train": 1, "validation": 1} and plans[-1].passes["train"] > 1


def test_a_model_one_gpu_cannot_hold_is_spread_over_several():
    """Pythia-12B's bf16 weights (23.7 GB) do not fit in 90% of a 24 GB GPU: the planner
    asks for ≥ 2 GPUs with a device map, and each holds its share and, on the
    statistics' GPU, the largest pass; at 80 GB one GPU does, without a map."""
    big = "EleutherAI/pythia-12b"
    grid = llms(gpu_memory="24GB")
    plan = resources.plan_model(grid, first(grid, big), Path("o"))
    assert plan.shape.weights > budget("24GB")
    assert plan.gpus >= 2 and plan.device_map
    assert plan.gpu_bytes <= budget("24GB")
    small = resources.plan_model(grid, first(grid, "EleutherAI/pythia-70m"), Path("o"))
    assert (small.gpus, small.device_map) == (1, False)
    grid = llms(gpu_memory="80GB")
    plan = resources.plan_model(grid, first(grid, big), Path("o"))
    assert (plan.gpus, plan.device_map) == (1, False) and plan.gpu_bytes <= budget("80GB")


def test_more_gpus_when_they_save_more_passes_than_they_cost():
    """On 40 GB GPUs Pythia-12B would fit on one, but with room for one layer's
    statistics a pass (37 passes); two GPUs leave room for several a pass, fewer
    GPU-hours: the planner takes the GPU count that costs least."""
    grid = llms(gpu_memory="40GB")
    model = first(grid, "EleutherAI/pythia-12b")
    plan = resources.plan_model(grid, model, Path("o"))
    assert plan.gpus == 2 and plan.device_map
    one = resources.MAX_GPUS
    try:  # the same model, held to one GPU
        resources.MAX_GPUS = 1
        alone = resources.plan_model(grid, model, Path("o"))
    finally:
        resources.MAX_GPUS = one
    assert alone.gpus == 1 and alone.passes["train"] == 37  # one layer a pass
    assert plan.passes["train"] < alone.passes["train"] / 2
    assert plan.gpu_hours < alone.gpu_hours


def test_the_human_plan_shows_each_models_job_and_the_total(capsys):
    assert main(["sweep", "llms", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "0 runs to train, 46 models to measure" in out
    row = next(line for line in out.splitlines() if line.startswith("pythia-12b "))
    assert re.search(r"pythia-12b\s+5\s+11\.8B\s+36 × 5120\s+50688\s+1\s", row), row
    assert re.search(r"GPU-hours estimated, \d+ asked of SLURM", out)
    assert "Qwen2.5-7B" in out and "Llama-3.2-3B" in out


def test_each_tokenizer_gets_its_own_data_dir(tmp_path):
    """Token ids of one tokenizer mean nothing to another model: a model naming its own
    tokenizer reads a data dir of its own, tokenised by it; [data]'s tokenizer stays in
    OUT/data. Prepared once each."""
    base = """
[data]
corpus = "embedded"
tokens = 4_000
seq_len = 32
vocab_size = 300
[[models]]
id = "a/shared"
"""
    out = tmp_path / "o"
    first_grid = parse_grid(tomllib.loads(base))
    stages.prepare_data(first_grid, out)
    tokenizer = out / "data" / "tokenizer"  # a trained BPE, standing in for a hub one
    grid = parse_grid(
        tomllib.loads(
            base + f'[[models]]\nid = "b/one"\ntokenizer = "{tokenizer}"\n'
            f'[[models]]\nid = "c/two"\ntokenizer = "{tokenizer}"\n'
        )
    )
    dirs = [stages.data_dir(grid, m, out) for m in grid.models]
    assert dirs[0] == out / "data" and dirs[1] == dirs[2] != dirs[0]
    assert dirs[1].parent == out and dirs[1].name.startswith("data-")
    cfg = stages.data_config(grid, out, str(tokenizer))
    assert (cfg.tokenizer, cfg.vocab_size, cfg.tokens) == (str(tokenizer), None, 4_000)
    before = (out / "data" / "meta.json").stat().st_mtime_ns
    stages.prepare_data(grid, out)
    assert (out / "data" / "meta.json").stat().st_mtime_ns == before  # made once
    meta = json.loads((dirs[1] / "meta.json").read_text())
    assert meta["config"]["tokenizer"] == str(tokenizer)
    collect = stages.collect_configs(grid, grid.models[1], out)
    assert {c.data for c in collect} == {str(dirs[1])}


def test_slurm_asks_each_model_for_its_planned_resources(tmp_path, monkeypatch):
    """Cells of other resources go to other arrays: a model that needs two GPUs gets
    them, its memory, and collects with device_map=auto; a small one gets one GPU."""
    pytest.importorskip("submitit")
    from test_sweep_slurm import fake_sbatch, flags

    log = fake_sbatch(tmp_path, monkeypatch)

    raw = tomllib.loads(bundled.path("llms").read_text())
    models = [m for m in raw["models"] if m["id"].endswith(("pythia-70m", "pythia-12b"))]
    for m in models:
        m["revisions"] = ["step143000"]
    grid = parse_grid(
        {
            "name": "big",
            "data": {"corpus": "embedded", "tokens": 4_000, "seq_len": 32, "vocab_size": 300},
            "models": models,
            "collect": raw["collect"],
            "executor": {"slurm": {"gpu_memory": "24GB", "cpus_per_task": 4}},
        }
    )
    from lingcollapse.sweep.executors import run_slurm

    out = tmp_path / "out"
    run_slurm(grid, out, cluster="slurm")
    big, small, analyze = (flags(s) for s in sorted(log.glob("*.sh")))
    twelve = resources.plan_model(grid, grid.models[1], out)  # the data is prepared now
    assert twelve.tokens["classes"] is not None  # sized with the data's own C
    assert big["gpus-per-node"] == str(twelve.gpus) and twelve.gpus >= 2
    assert big["mem"] == f"{twelve.mem_gb}GB"
    assert big["job-name"] == f"lc-big-1h-{twelve.gpus}gpu-{twelve.mem_gb}G"
    assert small.get("gpus-per-node", "1") == "1"
    assert analyze["dependency"] == "afterok:1000:1001"
    pickles = {p.parent.name: p for p in (out / "slurm").rglob("*_submitted.pkl")}
    for job, mapped in (("1000", "auto"), ("1001", None)):
        with pickles[job].open("rb") as f:
            submitted = pickle.load(f)
        cell_grid = submitted.args[0]
        assert cell_grid.collect.get("device_map") == mapped
    assert grid.collect.get("device_map") is None  # the grid itself is left as it was


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("hidden_size = 512", "hidden = 512"), "config: unknown key 'hidden'; did you mean"),
        (("intermediate_size = 2048, ", ""), "config lacks intermediate_size: copy them"),
        (("vocab_size = 50304", "vocab_size = 0"), "config.vocab_size = 0: give a whole number"),
        (("vocab_size = 50304", 'vocab_size = "50304"'), "config.vocab_size = '50304': give"),
        (("hidden_size = 512", "hidden_size = true"), "config.hidden_size = True: give"),
        (("tie_word_embeddings = false", "tie_word_embeddings = 0"), "give true or false"),
        (('"gpt_neox"', '"gpt-neox"'), "did you mean 'gpt_neox'?"),
        (("num_attention_heads = 8", "num_attention_heads = 7"), "must split into"),
        (('gpu_memory = "80GB"', 'gpu_memory = "80"'), "gpu_memory = '80': give a size"),
        (('gpu_memory = "80GB"', "gpu_memory = 80"), "gpu_memory = 80: give a size"),
        (('gpu_memory = "80GB"', 'gpu_memory = "80 gigs"'), "give a size with its unit"),
        (("tflops = 100", "tflops = 0"), "tflops = 0: give a number of TFLOP/s > 0"),
        (("tflops = 100", 'tflops = "fast"'), "tflops = 'fast': give a number"),
        (('tokenizer = "Qwen/Qwen2.5-0.5B"', "tokenizer = 3"), "tokenizer must be a hub id"),
    ],
)
def test_bad_declarations_are_one_error_naming_the_file_and_key(tmp_path, change, words):
    text = bundled.path("llms").read_text()
    old, new = change
    assert old in text, old
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(UserError) as err:
        load_grid(path)
    assert str(path) in str(err.value) and words in str(err.value), str(err.value)


def test_sizes_take_si_and_binary_units():
    assert parse_size("80GB", "x") == 80 * 10**9
    assert parse_size("40GiB", "x") == 40 * 2**30
    assert parse_size("1.5 TB", "x") == 1_500 * 10**9
    assert parse_size("512mib", "x") == 512 * 2**20
    for bad in ("80G", "-1GB", "0GB", "GB"):
        with pytest.raises(UserError):
            parse_size(bad, "x")


def test_a_model_too_large_for_any_gpu_is_one_error():
    grid = llms(gpu_memory="2GB")
    with pytest.raises(UserError) as err:
        resources.plan_model(grid, first(grid, "Qwen/Qwen2.5-7B"), Path("o"))
    assert "Qwen2.5-7B: one batch and one layer's statistics need" in str(err.value)
    assert "lower [collect] batch_size or give a larger [executor.slurm] gpu_memory" in str(
        err.value
    )
