"""What each hub model of a grid needs on a cluster, planned offline: GPUs and their
memory, host memory, passes over the data and hours (``sweep --plan``, and the SLURM
executor's resources per job).

A ``[[models]]`` entry that declares its ``config`` (keys of its config.json,
:data:`~lingcollapse.sweep.grid.DECLARED`) is built on PyTorch's meta device, which gives
every tensor its shape and dtype and allocates nothing: its weights are counted exactly,
with no download (:class:`~lingcollapse.memory.ModelShape`), and the upper bounds of
:mod:`lingcollapse.memory` size its job:

- **Memory of a GPU.** A GPU offers ``[executor.slurm] gpu_memory`` less 1 GiB of CUDA context, and
  the plan fills at most 90% of that. Collect holds the weights, the statistics of the
  layers one pass collects and one batch (:func:`~lingcollapse.memory.collect_work_bytes`,
  train and validation passes alike). Over n > 1 GPUs ``device_map="auto"`` spreads the
  weights (evenly, we assume) and the statistics and the batch sit on one of them.
- **Passes.** As many layers of ``[collect] layers`` as fit beside that are collected
  together; the others take more passes over the data, each a whole forward pass
  (:func:`~lingcollapse.memory.layer_passes`). The train statistics keep a row per class
  the data holds (C, or V before the data is prepared).
- **How many GPUs.** From the fewest that hold the weights and one layer's statistics,
  up to a node's 8, the count that costs the fewest GPU-hours (n × hours; on a tie the
  fewer): a second GPU can pay for itself by halving the passes (Pythia-12B on 40 GB
  GPUs: 37 passes on one, 10 on two).
- **Host memory** (``mem_gb``): the larger of collect's (the weights, read on the CPU,
  and a pass's statistics, copied to it at each checkpoint; the validation pass also
  reads the train stats of its layers) and measure's with every token a class (C ≤ V,
  :func:`~lingcollapse.memory.measure_bytes`), plus 25%.
- **Hours: an assumption, not a measurement.** Per token the body's forward costs 2
  FLOPs per weight and 4·d·T/2 per block for attention (as for the trained models of
  :mod:`.plan`); the validation pass adds the output layer (2·V·d) per collected layer.
  These run at a sustained ``[executor.slurm] tflops`` of one GPU (default 100, about a
  third of an A100's bf16 peak). The float64 work (the statistics, 4·d per sample and
  layer; the nearest-class-centre decisions, 2·C·d; measure's Gram of the class means,
  2·C²·d per layer) runs at 1/16 of that, the FP64 : BF16 ratio of an A100's and an
  H100's peaks. Layers spread over GPUs run one GPU at a time, so more GPUs add memory,
  not speed. The time limit asked of SLURM is 1.5× the estimate, in whole hours.

Token counts come from the model's data dir when it exists. Before that, TinyStories
counts as the paper's 469.5 M train tokens (the GPT-Neo tokenizer, Appendix A) whatever
the tokenizer (others split the same stories into somewhat more or fewer), validation as
the same share of tokens as of stories (21,990 of 2,119,719), and C ≤ V.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from lingcollapse.errors import UserError, first_line
from lingcollapse.io import read_json
from lingcollapse.memory import (
    F64,
    GIB,
    ModelShape,
    collect_bytes,
    collect_work_bytes,
    gib,
    layer_passes,
    measure_bytes,
)
from lingcollapse.sweep import stages
from lingcollapse.sweep.grid import Grid, Model, parse_size

DEFAULT_GPU_MEMORY = "40GB"  # the paper's A100 (Appendix C)
DEFAULT_TFLOPS = 100.0  # sustained bf16 TFLOP/s of one GPU: an assumption (see above)
FP64_SHARE = 1 / 16  # float64 runs at this share of it (A100: 19.5 / 312, H100: 67 / 990)
GPU_CONTEXT = GIB  # the CUDA context and library workspaces, outside PyTorch's count
GPU_FILL = 0.9  # of what is left: the allocator's fragmentation
HOST_HEADROOM = 1.25
TIME_SAFETY = 1.5  # the time limit over the estimate
READ_BYTES_PER_S = 0.5e9  # weights read from a shared file system, once per collect pass
MAX_GPUS = 8  # of one node: a device map spans the GPUs of one process
SPLITS = ("train", "validation")
# TinyStories (Appendix A): train tokens with the GPT-Neo tokenizer at T = 2048, and the
# stories of its train and validation splits
PAPER_TRAIN_TOKENS = 469_514_249
STORIES = {"train": 2_119_719, "validation": 21_990}


@dataclass(frozen=True)
class Declared:
    """A declared config built on the meta device: its memory shape and parameters."""

    shape: ModelShape
    params: int
    body_params: int  # all but the embeddings and an untied output layer: the body's matmuls


@functools.cache
def declared_model(declared: tuple, dtype: str) -> Declared:
    """The model a ``[[models]] config`` describes, in ``dtype``, with no memory and no
    download (cached: the meta build takes about a second the first time)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lingcollapse.collect.model import DTYPES
    from lingcollapse.hub import quiet

    quiet()
    options = dict(declared)
    model_type = options.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **options)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config).to(DTYPES[dtype])
    except (ValueError, TypeError, KeyError) as err:
        why = first_line(err)
        raise UserError(f"its declared config cannot be built by transformers: {why}") from None
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    head = model.get_output_embeddings().weight
    untied = head is not model.get_input_embeddings().weight
    params = model.num_parameters()
    body = params - embeddings - (head.numel() if untied else 0)
    return Declared(ModelShape.of(model), params, body)


@dataclass(frozen=True)
class Resources:
    """A hub model's job, as planned: what SLURM is asked for, and why."""

    params: int
    shape: ModelShape
    gpus: int
    device_map: bool  # device_map="auto": the weights spread over the GPUs
    gpu_memory: int  # bytes per GPU, as [executor.slurm] gives them
    gpu_bytes: int  # the planned peak on the first GPU (CUDA context not included)
    host_bytes: int  # the planned peak on the host, headroom included
    layers: int  # layers whose statistics are collected ([collect] layers)
    passes: dict[str, int]  # passes over each split
    tokens: dict  # train, validation, classes, seq_len, source
    hours: float | None  # the estimate; None when the token counts are unknown

    @property
    def mem_gb(self) -> int:
        """SLURM's ``--mem`` in GiB (its ``G`` is 2³⁰ bytes)."""
        return max(1, math.ceil(self.host_bytes / GIB))

    @property
    def time_limit_hours(self) -> int | None:
        return None if self.hours is None else max(1, math.ceil(TIME_SAFETY * self.hours))

    @property
    def gpu_hours(self) -> float | None:
        return None if self.hours is None else self.hours * self.gpus

    def as_dict(self) -> dict:
        s = self.shape
        return {
            "params": self.params,
            "shape": {
                "vocab": s.vocab,
                "dim": s.dim,
                "layers": s.layers,
                "heads": s.heads,
                "inner": s.inner,
                "weight_bytes": s.weights,
                "dtype_bytes": s.elem,
            },
            "gpus": self.gpus,
            "device_map": "auto" if self.device_map else None,
            "gpu_memory_bytes": self.gpu_memory,
            "gpu_bytes": self.gpu_bytes,
            "host_bytes": self.host_bytes,
            "mem_gb": self.mem_gb,
            "layer_stats": self.layers,
            "passes": self.passes,
            "tokens": self.tokens,
            "hours": self.hours,
            "time_limit_hours": self.time_limit_hours,
            "gpu_hours": self.gpu_hours,
        }


def settings(grid: Grid) -> tuple[int, float]:
    """Bytes per GPU and the sustained TFLOP/s assumed, from ``[executor.slurm]``."""
    slurm = grid.slurm
    memory = parse_size(slurm.get("gpu_memory", DEFAULT_GPU_MEMORY), "[executor.slurm] gpu_memory")
    return memory, float(slurm.get("tflops", DEFAULT_TFLOPS))


def plan_model(grid: Grid, model: Model, out: Path) -> Resources | None:
    """The resources of ``model``'s job (see the module doc); None when it declares no
    config, so that nothing is known of its size before it is downloaded."""
    if not model.declared:
        return None
    collect = grid.collect
    try:
        built = declared_model(model.declared, str(collect.get("dtype", "float32")))
    except UserError as err:
        raise UserError(f"{model.name}: {err}") from None
    m = built.shape
    tokens = data_tokens(grid, model, out, m.vocab)
    classes = tokens["classes"] or m.vocab  # C ≤ V until the data is prepared
    spec = str(collect.get("layers", "last"))
    layers = _layer_count(spec, m.layers, model)
    covariance = bool(collect.get("covariance", False))
    batch, seq_len = int(collect.get("batch_size", 8)), tokens["seq_len"]
    hidden = 0 if spec == "last" else m.layers + 1  # every hidden state comes back

    # the train statistics keep a row per class the data holds (R = C ≤ V)
    options = {"hidden_states": hidden, "classes": classes, "covariance": covariance}

    def work(split: str, k: int) -> int:
        return collect_work_bytes(m, batch, seq_len, split, k, **options, rows=classes)

    def layout(gpus: int) -> tuple[dict, dict, int]:
        """Layers per pass and passes of each split, and the peak on the statistics'
        GPU, with the weights spread over ``gpus``."""
        share = -(-m.weights // gpus)
        cut = {s: layer_passes(m, range(layers), batch, seq_len, budget - share, s, **options,
                               rows=classes)
               for s in SPLITS}  # fmt: skip
        per_pass = {s: len(found[0]) for s, found in cut.items()}  # the first is the largest
        peak = max(share + work(s, k) for s, k in per_pass.items())
        return per_pass, {s: len(found) for s, found in cut.items()}, peak

    gpu_memory, tflops = settings(grid)
    budget = int(GPU_FILL * (gpu_memory - GPU_CONTEXT))
    least = _fewest_gpus(m.weights, max(work(s, 1) for s in SPLITS), budget, model)
    layouts = {}
    for n in range(least, MAX_GPUS + 1):
        layouts[n] = layout(n)
        if all(p == 1 for p in layouts[n][1].values()):
            break  # more GPUs cannot save a pass

    def gpu_cost(n: int) -> float:  # GPU-hours, or GPU-passes while tokens are unknown
        passes = layouts[n][1]
        hours = _hours(built, tokens, classes, layers, passes, tflops)
        return n * (sum(passes.values()) if hours is None else hours)

    gpus = min(layouts, key=gpu_cost)  # the fewest of those that cost least
    per_pass, passes, peak = layouts[gpus]
    tile = grid.measure.get("tile") or 1024
    control = bool(grid.measure.get("cdnv_control", False))
    measured = measure_bytes(m.vocab, classes, m.dim, tile, validation=True, gpu=True,
                             control=control)  # fmt: skip
    gpu_bytes = max(peak, measured.gpu)
    host = max(_collect_host(m, batch, seq_len, per_pass, classes, covariance), measured.host)
    hours = _hours(built, tokens, classes, layers, passes, tflops)
    return Resources(
        params=built.params,
        shape=m,
        gpus=gpus,
        device_map=gpus > 1,
        gpu_memory=gpu_memory,
        gpu_bytes=gpu_bytes,
        host_bytes=int(HOST_HEADROOM * host),
        layers=layers,
        passes=passes,
        tokens=tokens,
        hours=hours,
    )


def _layer_count(spec: str, num_layers: int, model: Model) -> int:
    from lingcollapse.collect.run import parse_layers

    try:
        return len(parse_layers(spec, num_layers))
    except UserError as err:
        raise UserError(f"{model.name}: the grid's [collect] layers: {err}") from None


def _fewest_gpus(weights: int, least_work: int, budget: int, model: Model) -> int:
    """The fewest GPUs that each hold an even share of the weights and, on the one of the
    statistics, one batch and one layer's statistics beside it."""
    fix = "lower [collect] batch_size or give a larger [executor.slurm] gpu_memory"
    if least_work >= budget:
        raise UserError(
            f"{model.name}: one batch and one layer's statistics need {gib(least_work)} "
            f"beside the weights, more than the {gib(budget)} planned per GPU; {fix}"
        )
    for n in range(1, MAX_GPUS + 1):
        if -(-weights // n) + least_work <= budget:
            return n
    raise UserError(f"{model.name}: its weights need more than {MAX_GPUS} GPUs; {fix}")


def _collect_host(m: ModelShape, batch, seq_len, per_pass: dict, classes, covariance) -> int:
    """Collect's peak on the host: the weights and a pass's statistics (checkpoints copy
    them there); the validation pass also reads its layers' train stats, means and M2
    (V, d + 2) each."""
    k = per_pass["train"]
    train = collect_bytes(m, batch, seq_len, "train", k, classes, covariance, True, classes)
    k = per_pass["validation"]
    validation = collect_bytes(m, batch, seq_len, "validation", k, classes, gpu=True).host
    return max(train.host, validation + k * F64 * m.vocab * (m.dim + 2))


def _hours(built: Declared, tokens: dict, classes: int, layers: int, passes: dict, tflops):
    """The estimate of the module doc, in hours; None when the tokens are unknown."""
    train, validation = tokens["train"], tokens["validation"]
    if train is None or validation is None:
        return None
    m, rate = built.shape, tflops * 1e12
    rate64 = rate * FP64_SHARE
    body = 2 * built.body_params + 4 * m.layers * m.dim * tokens["seq_len"] / 2  # per token
    seconds = passes["train"] * train * body / rate + train * layers * 4 * m.dim / rate64
    seconds += passes["validation"] * validation * body / rate
    seconds += validation * layers * (2 * m.vocab * m.dim / rate + 2 * classes * m.dim / rate64)
    seconds += layers * 2 * classes**2 * m.dim / rate64  # measure
    seconds += 2 * m.weights / READ_BYTES_PER_S
    return seconds / 3600


def data_tokens(grid: Grid, model: Model, out: Path, vocab: int) -> dict:
    """N of the train and validation splits, C and T of ``model``'s data dir when it is
    prepared; else estimates (see the module doc), or None where nothing is known."""
    meta_path = stages.data_dir(grid, model, out) / "meta.json"
    if meta_path.is_file():
        meta = read_json(meta_path, "delete the data dir to prepare it again")
        return {
            "train": meta["splits"]["train"]["N"],
            "validation": meta["splits"]["validation"]["N"],
            "classes": meta.get("C"),
            "seq_len": meta["seq_len"],
            "source": str(meta_path),
        }
    cfg = stages.data_config(grid, out, model.tokenizer)
    found = {"classes": None, "seq_len": cfg.seq_len}
    if cfg.kind == "tinystories":
        share = STORIES["validation"] / STORIES["train"]
        return {
            **found,
            "train": PAPER_TRAIN_TOKENS,
            "validation": round(PAPER_TRAIN_TOKENS * share),
            "source": "estimated: TinyStories as the paper counts it (Appendix A), C ≤ V",
        }
    if cfg.kind == "embedded":
        train = int(cfg.tokens * (1 - cfg.validation_fraction))
        return {
            **found,
            "train": train,
            "validation": cfg.tokens - train,
            "source": "estimated from [data], C ≤ V",
        }
    return {**found, "train": None, "validation": None, "source": "unknown until prepared"}


def check_declared(grid: Grid, model: Model) -> None:
    """The real config.json against what the grid declares, before collecting: a plan
    made from a wrong shape is one error, not a job killed for memory or time."""
    if not model.declared:
        return
    from transformers import AutoConfig

    from lingcollapse.hub import load_pretrained

    real = load_pretrained(
        AutoConfig.from_pretrained,
        model.hub_id,
        "the config of",
        revision=model.revision,
        trust_remote_code=bool(grid.collect.get("trust_remote_code", False)),
    )
    wrong = [
        f"{key} = {value!r} (its config.json: {getattr(real, key, None)!r})"
        for key, value in model.declared
        if getattr(real, key, None) != value
    ]
    if wrong:
        raise UserError(
            f"{model.name}: the grid declares {', '.join(wrong)}; correct the grid's "
            f"config of {model.hub_id} (the plan and the SLURM resources are made from it)"
        )
