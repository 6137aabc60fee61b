"""How much memory ``measure`` and ``collect`` need, and how much is free, so that a tile
or batch that would not fit is one clear error instead of an out-of-memory crash.

Every estimate is an upper bound of the peak it models, made from shapes alone: the
buffers that are live at the same time, counted per phase, and the largest phase. The
buffer counts are read off the code and checked against measured peaks
(``tests/test_memory.py``, ``benchmarks/bench_memory.py``). Symbols: V vocabulary, C kept
classes, d width, t tile, B batch, T sequence length, H heads, I MLP width, L layers,
p bytes per model element (4 float32, 2 bf16/fp16); float64 is 8 bytes.

- ``measure`` (:func:`measure_bytes`): the inputs (stats 8·V·d, classifier 4·V·d), the
  centred means Z (8·C·d) and the largest of: one (C, d) temporary, the tile buffers
  (4 × 8·t²), W_S in float64 with one product (2 × 8·C·d), the d×d covariance work.
- ``collect`` (:func:`collect_bytes`): the model, the statistics (train: 16·R·d per layer
  for the R classes the data holds as targets, R ≤ V; validation: 8·C·d per layer) and
  the largest of: one batch's forward pass (with GPT-Neo's eager attention the
  (B, H, T, T) float32 scores dominate: 2 × 4·B·H·T²), its statistics update, and
  finishing the statistics, one layer at a time (8·V·d + 16·R·d). Layers whose
  statistics do not fit together are collected in several passes (:func:`layer_passes`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lingcollapse.errors import UserError

log = logging.getLogger(__name__)

MIB, GIB = 2**20, 2**30
F64 = 8
# Python, torch, transformers, pandas and pyarrow once imported (0.28 GiB measured).
PROCESS_BYTES = 384 * MIB
# glibc serves blocks under 32 MiB (its largest mmap threshold) from a heap that keeps
# freed blocks: 60–130 MiB above the live peak measured, whatever the tile or batch.
ALLOCATOR_SLACK = 160 * MIB


@dataclass(frozen=True)
class Footprint:
    """Peak bytes of one command: on the CPU (the process's resident set, interpreter
    included) and on the GPU when it runs there (the CUDA context not included)."""

    host: int
    gpu: int = 0


def gib(n: int | float) -> str:
    """``12.3 GiB``, ``512 MiB`` or ``40 KiB``: short, for one-line messages."""
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{max(n, 0) / 1024:.0f} KiB"


# ------------------------------------------------------------------------ measure

# float64 (t, t) buffers of the pairwise pass: three tiles allocated once and reused (the
# Gram tile → −cos, ‖z_i−z_j‖² → log kernel, the CDNV) and (t, t) bool masks worth ⅜ of one
# (the diagonal tiles' lower triangle; on tiles with near pairs, two transient ones).
TILE_BUFFERS = 4
# Rows of the stats and the classifier go to measure's device in chunks of this size
# (metrics.compute.rows_to), so the host holds no second (C, d) copy of them.
MOVE_CHUNK_BYTES = 64 * MIB


def tile_bytes(tile: int, classes: int | None = None, control: bool = False) -> int:
    """The pairwise pass's working set: 4 float64 tiles of t × t (t ≤ C); 5 with the
    scale-invariant CDNV control (``measure --cdnv-control``)."""
    t = tile if classes is None else min(tile, classes)
    return (TILE_BUFFERS + int(control)) * F64 * t * t


def measure_device_bytes(
    classes: int,
    dim: int,
    tile: int,
    classifier: bool = True,
    covariance: bool = False,
    control: bool = False,
) -> int:
    """Peak of :func:`lingcollapse.metrics.compute.measure` on its device beyond its
    inputs: Z (C, d) float64 throughout, plus the largest phase."""
    z = F64 * classes * dim  # (C, d)
    phases = [z, tile_bytes(tile, classes, control)]  # a (C, d) temporary; the tiles
    if classifier:
        phases.append(2 * z)  # W_S (C, d) in float64 and W_S ⊙ Z (Zhu's NC3)
    if covariance:
        phases.append(6 * F64 * dim * dim)  # Σ_W, Σ_B, eigenvectors, products (d, d)
    return z + max(phases)


def measure_bytes(
    vocab: int,
    classes: int,
    dim: int,
    tile: int = 1024,  # measure's default is 1,024 on the CPU, 8,192 on a GPU
    classifier: bool = True,
    covariance: bool = False,
    validation: bool = False,
    ood: bool = False,
    gpu: bool = False,
    control: bool = False,
) -> Footprint:
    """Peak of ``lingcollapse measure``: the loaded inputs on the CPU, and the work of
    :func:`measure_device_bytes` on the CPU or the GPU."""
    stats = F64 * vocab * (dim + 2) + (F64 * dim * dim if covariance else 0)  # counts, μ, M2
    inputs = stats + (4 * vocab * dim if classifier else 0)  # float32 head (V, d)
    inputs += 5 * F64 * vocab if validation else 0  # five (V,) counters
    inputs += 2 * F64 * vocab * (dim + 2) if ood else 0  # its stats and one (V, d) product
    work = measure_device_bytes(classes, dim, tile, classifier, covariance, control)
    host = PROCESS_BYTES + ALLOCATOR_SLACK + inputs
    if gpu:  # the (C, d) rows are gathered on the CPU and moved a chunk at a time
        return Footprint(host + MOVE_CHUNK_BYTES, work)
    return Footprint(host + work)


# ------------------------------------------------------------------------ collect


@dataclass(frozen=True)
class ModelShape:
    """What a forward pass's memory depends on, read from a Hugging Face model."""

    weights: int  # bytes of parameters and buffers
    vocab: int
    dim: int
    heads: int
    inner: int  # MLP width I
    layers: int
    elem: int  # bytes per activation element
    eager_attention: bool  # the (B, H, T, T) scores are materialised

    @classmethod
    def of(cls, model: torch.nn.Module) -> ModelShape:
        """Read off the model and its config, under each family's names (GPT-2's n_inner,
        OPT's ffn_dim, Falcon's ffn_hidden_size, …; a multimodal model's text config)."""
        config = model.config
        text = getattr(config, "get_text_config", None)
        config = text() if callable(text) else config
        # the wider of the head's input and the body: OPT-350m projects 1,024 down to 512
        # after its last block, so its activations are twice its statistics' width
        dim = model.get_output_embeddings().weight.shape[1]
        dim = max(dim, _first(config, ("hidden_size", "n_embd", "d_model"), dim))
        heads = _first(config, ("num_attention_heads", "num_heads", "n_head"), 1)
        inner_keys = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size")
        inner = _first(config, inner_keys, 4 * dim)
        weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        implementation = getattr(config, "_attn_implementation", None) or "eager"
        return cls(
            weights=weights,
            vocab=model.get_output_embeddings().weight.shape[0],
            dim=dim,
            heads=heads,
            inner=inner,
            layers=_first(config, ("num_hidden_layers", "num_layers", "n_layer"), 1),
            elem=next(model.parameters()).element_size(),
            eager_attention=implementation == "eager",
        )


def _first(config, keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        value = getattr(config, key, None)
        if value:
            return int(value)
    return default


def forward_bytes(
    m: ModelShape, batch: int, seq_len: int, hidden_states: int = 0, logits: bool = False
) -> int:
    """One inference forward pass of B × T tokens: one block's temporaries at a time,
    plus ``hidden_states`` block outputs kept (``--layers``) and the (B, T, V) logits when
    the head runs (models whose head input is not the body's output)."""
    n = batch * seq_len
    act = n * m.dim * m.elem  # (B, T, d)
    mlp = 4 * n * m.inner * m.elem  # c_fc output and three GELU temporaries (B, T, I)
    body, mask = max(4 * act, mlp), 0  # q, k, v and the heads merged; or the MLP
    if m.eager_attention:
        # GPT-Neo: float32 scores (B, H, T, T), masked into a second copy, then softmaxed
        # into the attention weights it returns; a block's weights live until the next
        # block's are made, so block i + 1 holds three copies at once.
        scores = batch * m.heads * seq_len * seq_len
        weights = scores * m.elem  # the returned copy, in the model's dtype
        before = weights if m.layers > 1 else 0  # the previous block's
        attention = before + max(8, 4 + m.elem) * scores + 3 * act + 8 * n * m.dim  # q, k, v
        body = max(attention, before + weights + mlp)
        mask = batch * seq_len * seq_len * m.elem  # the additive (B, 1, T, T) mask
    head = n * m.vocab * m.elem if logits else 0
    return 2 * act + body + mask + hidden_states * act + head  # + residual, norm output


def update_bytes(
    m: ModelShape, batch: int, seq_len: int, split: str, rows: int | None = None
) -> int:
    """Turning one layer's (B, T−1, d) embeddings into statistics: their copy, and the
    float64 work buffers of ClassAccumulator.update (of R rows) or
    ValidationAccumulator.update."""
    n = batch * (seq_len - 1)
    copy = n * m.dim * m.elem
    if split == "train":
        rows = m.vocab if rows is None else rows
        # 2 chunks; (R,) bincounts and first samples; (n,) targets, their rows, positions
        return copy + 2 * F64 * min(2**19, n * m.dim) + 3 * F64 * rows + 3 * F64 * n
    # (n, d) float64 centred embeddings, five (n, 2²²/n) float64 blocks, ten (n,) vectors
    return copy + F64 * n * m.dim + 5 * F64 * max(2**22, n) + 10 * F64 * n


def stats_bytes(
    m: ModelShape,
    split: str,
    layers: int,
    classes: int,
    covariance: bool,
    rows: int | None = None,
) -> int:
    """The statistics held through the pass: train, per layer the shifts and sums (R, d)
    float64 of the R classes kept (all V by default), their counts, Q and ids, the (V,)
    row of each id (and the d × d scatter); validation, the centred means (C, d) and
    (V,) counts."""
    if split == "train":
        rows = m.vocab if rows is None else rows
        per_layer = F64 * (2 * rows * m.dim + 3 * rows + m.vocab)
        per_layer += F64 * m.dim * m.dim if covariance else 0
    else:
        per_layer = F64 * classes * (m.dim + 2) + 5 * F64 * m.vocab
    return layers * per_layer


def finish_bytes(
    m: ModelShape, split: str, classes: int, covariance: bool, rows: int | None = None
) -> int:
    """After the pass (train), one layer at a time (``collect`` writes each layer's file
    before it finishes the next): the finished (V, d) means with their (V,) vectors, and
    the (R, d) offsets and means they are made from; with the covariance the (V, d) and
    (R, d) roots and two (d, d) products. Before it (validation): one train stats file
    and the gathered means (C, d) while the centred means are made."""
    vd = F64 * m.vocab * m.dim
    if split == "train":
        rd = F64 * (m.vocab if rows is None else rows) * m.dim
        extra = vd + rd + 2 * F64 * m.dim * m.dim if covariance else 0
        return vd + 2 * rd + 3 * F64 * m.vocab + extra
    return vd + F64 * classes * m.dim


def collect_work_bytes(
    m: ModelShape,
    batch: int,
    seq_len: int,
    split: str = "train",
    layers: int = 1,
    hidden_states: int = 0,
    classes: int | None = None,
    covariance: bool = False,
    logits: bool = False,
    rows: int | None = None,
) -> int:
    """What a pass allocates beside the loaded model: the statistics of ``layers`` (of
    ``rows`` classes each, train), and the largest of one batch (forward pass, then the
    statistics update) and finishing the statistics of one layer."""
    classes = m.vocab if classes is None else classes
    state = stats_bytes(m, split, layers, classes, covariance, rows)
    outputs = max(hidden_states, 1) * batch * seq_len * m.dim * m.elem
    step = max(
        forward_bytes(m, batch, seq_len, hidden_states, logits),
        outputs + update_bytes(m, batch, seq_len, split, rows),
    )
    return state + max(step, finish_bytes(m, split, classes, covariance, rows))


def collect_bytes(
    m: ModelShape,
    batch: int,
    seq_len: int,
    split: str = "train",
    layers: int = 1,
    classes: int | None = None,
    covariance: bool = False,
    gpu: bool = False,
    rows: int | None = None,
    hidden_states: int = 0,
) -> Footprint:
    """Peak of one pass of ``lingcollapse collect`` over ``layers`` (``--layers last``
    by default; with inner layers, ``hidden_states`` = L + 1 block outputs come back):
    the model and the work of :func:`collect_work_bytes`."""
    work = collect_work_bytes(
        m, batch, seq_len, split, layers, hidden_states, classes, covariance, rows=rows
    )
    if gpu:  # the weights are read on the CPU; checkpoints copy the statistics back to it
        kept = m.vocab if classes is None else classes
        state = stats_bytes(m, split, layers, kept, False, rows)
        return Footprint(
            PROCESS_BYTES + m.weights + state + F64 * m.vocab * m.dim, m.weights + work
        )
    # on the CPU the weights count twice: the model's copy and the file transformers read
    # them from, which stays mapped (measured: 0.48 GiB resident for 0.30 GiB of weights)
    return Footprint(PROCESS_BYTES + ALLOCATOR_SLACK + 2 * m.weights + work)


def layer_passes(
    m: ModelShape,
    layers: Sequence,
    batch: int,
    seq_len: int,
    free: int,
    split: str = "train",
    hidden_states: int = 0,
    classes: int | None = None,
    covariance: bool = False,
    logits: bool = False,
    rows: int | None = None,
) -> list[list]:
    """``layers``, in order, cut into the fewest passes over the data whose work
    (:func:`collect_work_bytes`: the statistics of the pass's layers beside one batch)
    fits in ``free`` bytes, as even as can be: of 33 layers with room for 9 at a time,
    4 passes of 9, 8, 8 and 8. Every pass holds at least one layer; a
    :class:`UserError` when not even one fits beside a batch.

    One pass costs a forward pass over the whole data (with every hidden state, so it
    costs the same for one layer as for all), hence as few passes as fit."""
    layers = list(layers)

    def need(count: int) -> int:
        return collect_work_bytes(
            m, batch, seq_len, split, count, hidden_states, classes, covariance, logits, rows
        )

    if not layers:
        return []
    if need(1) > free:
        raise UserError(
            f"the statistics of one layer beside a batch of {batch} × {seq_len:,} tokens "
            f"need {gib(need(1))} but {gib(free)} is free; lower --batch-size or use --dtype bf16"
        )
    low, high = 1, len(layers)  # the most layers that fit together, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if need(mid) <= free else (low, mid - 1)
    count = -(-len(layers) // low)  # passes
    sizes = [len(layers) // count + (i < len(layers) % count) for i in range(count)]
    starts = [sum(sizes[:i]) for i in range(count)]
    return [layers[start : start + size] for start, size in zip(starts, sizes, strict=True)]


# ------------------------------------------------------------------- what is free


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory that can still be allocated on ``device``: for CUDA the driver's free memory
    plus what PyTorch's cache holds unused; for the CPU ``MemAvailable`` (or the free
    pages), capped by a cgroup's limit. Unknown devices count as unlimited."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached
    if device.type != "cpu":
        return 2**62
    return min(_meminfo_available(), _cgroup_available())


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # no way to tell (e.g. macOS): no check


def _cgroup_available() -> int:
    """limit − usage (less the reclaimable page cache) of this process's memory cgroup,
    v2 or v1; unlimited when there is none or it cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return 2**62
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            files = ("memory.max", "memory.current", "inactive_file")
            roots = [Path("/sys/fs/cgroup") / path.lstrip("/"), Path("/sys/fs/cgroup")]
        elif "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            roots = [
                Path("/sys/fs/cgroup/memory") / path.lstrip("/"),
                Path("/sys/fs/cgroup/memory"),
            ]
        else:
            continue
        for root in roots:
            free = _cgroup_free(root, *files)
            if free is not None:
                return free
    return 2**62


def _cgroup_free(root: Path, limit_file: str, usage_file: str, cache_key: str) -> int | None:
    try:
        limit = (root / limit_file).read_text().strip()
        usage = int((root / usage_file).read_text())
    except (OSError, ValueError):
        return None
    if limit == "max" or int(limit) >= 2**60:
        return None
    cache = 0
    try:
        for line in (root / "memory.stat").read_text().splitlines():
            key, value = line.split()
            if key == cache_key:
                cache = int(value)
    except (OSError, ValueError):
        pass
    return max(int(limit) - usage + cache, 0)


def check_fits(
    need: int, device: str | torch.device, what: str, fix: str, free: int | None = None
) -> None:
    """Raise one clear :class:`UserError` when ``need`` bytes are not free on ``device``:
    "a tile of 8192 classes needs 4.0 GiB but 1.1 GiB is free on cpu; lower --tile …"."""
    free = available_bytes(device) if free is None else free
    if need > free:
        raise UserError(f"{what} needs {gib(need)} but {gib(free)} is free on {device}; {fix}")


def is_out_of_memory(err: BaseException) -> bool:
    """A failed allocation: CUDA's OutOfMemoryError, Python's MemoryError, or the CPU
    allocator's RuntimeError (the kernel's OOM killer leaves no exception to catch)."""
    if isinstance(err, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
