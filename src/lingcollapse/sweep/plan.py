"""``sweep GRID --plan``: what a sweep would train and measure, and what it would cost,
without doing any of it.

The plan is the grid's data: the runs (each with the epochs it keeps as models), the
models (``{"name": <model id>, "run": <run name>, "epoch": E}``), and per stage an
estimate of the compute:

- **FLOPs** from the shapes: a forward pass costs 2 FLOPs per weight of the blocks and
  the output layer for every token, plus 4·d·t for attention over t earlier positions in
  each layer (t ≈ T/2 on average, causal); training is forward + backward, 3×
  (Kaplan et al. 2020's 6N). The train pass of ``collect`` runs the body alone (no
  output layer), the validation pass the whole model.
- **The paper's hours** on one A100 (40 GB): the authors' time limit per epoch for each
  architecture (Appendix C: "up to 8 hours per epoch"), and "up to 6 hours" per pass of
  collection (Appendix D). Upper bounds they set, not measurements.
- **Resources of hub models** that declare their config (``[[models]] config``): GPUs,
  the peak on a GPU and on the host, passes over the data and hours, planned by
  :mod:`lingcollapse.sweep.resources` (the model's ``resources``; null for the others),
  and their GPU-hours in the totals.

Token counts come from the sweep's data dir when it exists; before that, from the
paper's TinyStories counts (Appendix A) or the size the grid asks of the embedded
corpus (marked as estimates), else they are unknown (null).
"""

from __future__ import annotations

import functools
from pathlib import Path

from lingcollapse.io import read_json
from lingcollapse.memory import gib
from lingcollapse.models import registry
from lingcollapse.models.gpt_neo import PAPER_COLLECT_HOURS, PAPER_HOURS_PER_EPOCH
from lingcollapse.sweep import resources, stages
from lingcollapse.sweep.grid import Grid, Model, Run

# Appendix A: TinyStories, GPT-Neo tokenizer, T = 2048, run_clm's packing with 2 workers.
PAPER_DATA = {"train_tokens": resources.PAPER_TRAIN_TOKENS, "vocab_size": 50_257, "seq_len": 2048}


def data_sizes(grid: Grid, out: Path) -> dict:
    """N of the train and validation splits, V and T: from the data dir, else estimated."""
    meta_path = out / "data" / "meta.json"
    if meta_path.is_file():
        meta = read_json(meta_path, "delete the data dir to prepare it again")
        return {
            "train_tokens": meta["splits"]["train"]["N"],
            "validation_tokens": meta["splits"]["validation"]["N"],
            "vocab_size": meta["vocab_size"],
            "seq_len": meta["seq_len"],
            "source": str(meta_path),
        }
    cfg = stages.data_config(grid, out)
    if cfg.kind == "tinystories" and (cfg.packing, cfg.num_proc, cfg.seq_len) == (
        "group-texts",
        2,
        2048,
    ):
        return {**PAPER_DATA, "validation_tokens": None, "source": "the paper (Appendix A)"}
    if cfg.kind == "embedded":
        train = int(cfg.tokens * (1 - cfg.validation_fraction))
        return {
            "train_tokens": train,
            "validation_tokens": cfg.tokens - train,
            "vocab_size": cfg.vocab_size,
            "seq_len": cfg.seq_len,
            "source": "estimated from [data] (prepare the data for exact counts)",
        }
    return {
        "train_tokens": None,
        "validation_tokens": None,
        "vocab_size": None,
        "seq_len": cfg.seq_len,
        "source": "unknown until the data is prepared",
    }


@functools.cache
def _shape(family: str, width: int, depth: int, vocab: int, positions: int) -> tuple[int, int]:
    """(all parameters, those of the blocks and the output layer), built on no device."""
    import torch

    with torch.device("meta"):
        model = registry.build(
            family, width, depth, vocab, 0, max_positions=positions, allow_any_size=True
        )
    tokens = model.get_input_embeddings()
    positions = sum(  # learned positions: a lookup, no FLOPs
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m is not tokens
    )
    head = model.get_output_embeddings().weight
    untied = head.numel() if head is not tokens.weight else 0
    total = model.num_parameters()
    return total, total - tokens.weight.numel() - positions - untied + head.numel()


def _forward_flops(run: Run, sizes: dict, head: bool = True) -> float | None:
    """FLOPs of one forward pass per token (see the module doc)."""
    vocab, seq_len = sizes["vocab_size"], sizes["seq_len"]
    if vocab is None:
        return None
    _, matmul = _shape(run.family, run.width, run.depth, vocab, max(seq_len, 2048))
    if not head:
        matmul -= vocab * run.width
    return 2 * matmul + 4 * run.depth * run.width * (seq_len / 2)


def _scaled(per_token: float | None, tokens: int | None, factor: float = 1.0) -> float | None:
    return None if per_token is None or tokens is None else per_token * tokens * factor


def _run_entry(grid: Grid, run: Run, out: Path, sizes: dict) -> dict:
    cfg = stages.train_config(grid, run, out)
    vocab = sizes["vocab_size"]
    params = (
        None
        if vocab is None
        else _shape(run.family, run.width, run.depth, vocab, max(sizes["seq_len"], 2048))[0]
    )
    sequences = None
    if sizes["train_tokens"] is not None:
        sequences = sizes["train_tokens"] // (sizes["seq_len"] - 1)
    hours = PAPER_HOURS_PER_EPOCH.get(run.depth, {}).get(run.width)
    return {
        "name": run.name,
        "width": run.width,
        "depth": run.depth,
        "family": run.family,
        "epochs": run.epochs,
        "weight_decay": run.weight_decay,
        "seed": run.seed,
        "save_epochs": run.save_epochs,
        "batch_size": cfg.batch_size,
        "n_params": params,
        "steps": None if sequences is None else -(-sequences // cfg.batch_size) * run.epochs,
        "compute": {
            "train_flops": _scaled(
                _forward_flops(run, sizes), sizes["train_tokens"], 3 * run.epochs
            ),
            "paper_train_hours": None if hours is None else hours * run.epochs,
        },
    }


def _model_entry(grid: Grid, model: Model, out: Path, sizes: dict) -> dict:
    entry = {
        "name": model.name,
        "run": model.run.name if model.run else None,
        "epoch": model.epoch,
        "dir": str(model.path(out)),
    }
    if model.run is None:
        entry.update(hub_id=model.hub_id, revision=model.revision)
        flops = {"collect_flops": None}
    else:
        body = _forward_flops(model.run, sizes, head=False)
        whole = _forward_flops(model.run, sizes)
        train = _scaled(body, sizes["train_tokens"])
        val = _scaled(whole, sizes["validation_tokens"])
        flops = {"collect_flops": None if train is None else train + (val or 0.0)}
    planned = resources.plan_model(grid, model, out)
    return {
        **entry,
        "compute": {**flops, "paper_collect_hours": PAPER_COLLECT_HOURS},
        "resources": None if planned is None else planned.as_dict(),
    }


def plan(grid: Grid, out: Path) -> dict:
    """The sweep as data (see the module doc); nothing is read but the grid and, if it
    exists, the sweep's ``data/meta.json``."""
    stages.check(grid, out)
    sizes = data_sizes(grid, out)
    runs = [_run_entry(grid, run, out, sizes) for run in grid.runs]
    models = [_model_entry(grid, model, out, sizes) for model in grid.models]
    planned = [m["resources"] for m in models if m["resources"] is not None]
    gpu_memory, tflops = resources.settings(grid)
    return {
        "grid": grid.name,
        "out": str(out),
        "data": sizes,
        "runs": runs,
        "models": models,
        "totals": {
            "runs": len(runs),
            "models": len(models),
            "train_flops": _total(r["compute"]["train_flops"] for r in runs),
            "collect_flops": _total(m["compute"]["collect_flops"] for m in models),
            "paper_train_hours": _total(r["compute"]["paper_train_hours"] for r in runs),
            "paper_collect_hours": PAPER_COLLECT_HOURS * len(models),
            "planned_models": len(planned),
            "gpu_hours": _total(r["gpu_hours"] for r in planned),
            "gpu_hours_asked": _total(
                None if r["time_limit_hours"] is None else r["time_limit_hours"] * r["gpus"]
                for r in planned
            ),
        },
        "assumptions": {"gpu_memory_bytes": gpu_memory, "tflops": tflops} if planned else None,
    }


def _total(values) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values)


def format_plan(p: dict) -> str:
    """The plan as a table a person reads: a row per run, its models, and the totals;
    then the hub models whose jobs are sized from their declared configs, if any."""
    planned = {m["name"] for m in p["models"] if m["resources"] is not None}
    lines = [
        f"grid {p['grid']} → {p['out']}: {len(p['runs'])} runs to train, "
        f"{len(p['models'])} models to measure"
        + (f" (tokens: {p['data']['source']})" if p["runs"] else ""),
    ]
    if p["runs"] or len(planned) < len(p["models"]):
        lines += ["", *_runs_table(p, planned)]
    if planned:
        lines += ["", *format_resources(p)]
    return "\n".join(lines)


def _runs_table(p: dict, planned: set[str]) -> list[str]:
    lines = [
        f"{'run':<34} {'epochs':>6} {'keeps':>8} {'batch':>5} {'params':>8} "
        f"{'PFLOP':>8} {'paper h':>7}  models",
    ]
    by_run: dict[str | None, list[str]] = {}
    for m in p["models"]:
        by_run.setdefault(m["run"], []).append(m["name"])
    for r in p["runs"]:
        keeps = ",".join(map(str, r["save_epochs"])) or "-"
        lines.append(
            f"{r['name']:<34} {r['epochs']:>6} {keeps:>8} {r['batch_size']:>5} "
            f"{_si(r['n_params']):>8} {_peta(r['compute']['train_flops']):>8} "
            f"{_g(r['compute']['paper_train_hours']):>7}  {' '.join(by_run.get(r['name'], []))}"
        )
    for name in by_run.get(None, []):
        if name not in planned:
            lines.append(f"{'(hub model, no training)':<34} {'':>6} {'':>8} {'':>5} {'':>8} "
                         f"{'':>8} {'':>7}  {name}")  # fmt: skip
    t = p["totals"]
    return [
        *lines,
        "",
        f"train: {_peta(t['train_flops'])} PFLOP, the paper's budget {_g(t['paper_train_hours'])} "
        f"A100-hours; collect: {_peta(t['collect_flops'])} PFLOP, at most "
        f"{_g(t['paper_collect_hours'])} A100-hours at the paper's 6 h a pass",
    ]


def format_resources(p: dict) -> list[str]:
    """The hub models' planned jobs: a row each (revisions of one model share a row),
    then their GPU-hours."""
    a, t = p["assumptions"], p["totals"]
    lines = [
        f"hub models, sized from their declared configs for GPUs of "
        f"{a['gpu_memory_bytes'] / 1e9:g} GB, hours at an assumed {a['tflops']:g} TFLOP/s a GPU:",
        "",
        f"{'model':<26} {'revisions':>9} {'params':>7} {'L × d':>10} {'V':>7} {'GPUs':>6} "
        f"{'GPU peak':>9} {'host':>6} {'passes':>7} {'hours':>7} {'limit':>6}",
    ]
    rows: dict[str, list] = {}
    for m in p["models"]:
        if m["resources"] is not None:
            rows.setdefault(m["hub_id"], []).append(m)
    for hub_id, models in rows.items():
        r = models[0]["resources"]
        shape, passes = r["shape"], r["passes"]
        gpus = f"{r['gpus']}" + (" map" if r["device_map"] else "")
        lines.append(
            f"{hub_id.split('/')[-1]:<26} {len(models):>9} {_si(r['params']):>7} "
            f"{shape['layers']:>3} × {shape['dim']:<4} {shape['vocab']:>7} {gpus:>6} "
            f"{gib(r['gpu_bytes']):>9} {r['mem_gb']:>4} G {passes['train']:>3}/"
            f"{passes['validation']:<3} {_hours(r['hours']):>7} {_g(r['time_limit_hours']):>5}h"
        )
    sources = sorted({m["resources"]["tokens"]["source"] for m in p["models"] if m["resources"]})
    lines += [
        "",
        f"{t['planned_models']} jobs: {_hours(t['gpu_hours'])} GPU-hours estimated, "
        f"{_g(t['gpu_hours_asked'])} asked of SLURM (time limits × GPUs); GPU peak: on the "
        "GPU of the statistics; passes: over train/validation; map: device_map=auto "
        f"(tokens: {'; '.join(sources)})",
    ]
    return lines


def _hours(h) -> str:
    return "?" if h is None else f"{h:,.1f}"


def _si(n) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _peta(flops) -> str:
    return "?" if flops is None else f"{flops / 1e15:,.1f}"


def _g(x) -> str:
    return "?" if x is None else f"{x:g}"
