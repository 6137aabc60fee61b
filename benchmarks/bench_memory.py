"""Peak memory of `measure` and `collect` at paper scale against lingcollapse.memory's bounds.

    python benchmarks/bench_memory.py            # measure V = 50,257, C = 29,233, d = 1,024;
                                                 # collect 2×1024 GPT-Neo, B = 4, T = 2,048
    python benchmarks/bench_memory.py --quick    # C = 4,096, d = 256; collect 1×256, T = 512
    python benchmarks/bench_memory.py --table    # the estimates at the paper's batch sizes

Each command runs as the real CLI in a fresh process (``lingcollapse measure …``,
``lingcollapse collect …``), and its peak resident set comes from ``os.wait4`` (the
kernel's ru_maxrss of that child), so imports, file loading and writing are all counted.
The estimate is ``measure_bytes(...).host`` / ``collect_bytes(...).host``: an upper bound
that should stay within 2× of the measured peak. The collection model is the paper's
architecture (Table 2: GPT-Neo, 16 heads) over V = 50,257 with random weights, and the
estimate is of the path ``collect`` runs: its attention through SDPA
(``models/attention.py``), which never builds the (B, H, T, T) scores of Hugging Face's
eager GPT-Neo. It runs over one batch of 4 × 2,048 tokens (about a minute a pass on 2
cores) rather than the paper's 16 × 2,048: the statistics (16·V·d per layer) do not
depend on the batch; ``--table`` gives the bounds at the paper's batch sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_collect import VOCAB, build, make_data
from bench_measure import make_stats

from lingcollapse.collect.passes import target_classes
from lingcollapse.memory import GIB, ModelShape, collect_bytes, gib, measure_bytes
from lingcollapse.models.attention import use_sdpa
from lingcollapse.models.gpt_neo import TABLE3_BATCH


def peak_rss(cmd: list[str]) -> tuple[float, int]:
    """Seconds and peak resident bytes of one command, as its own child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss * 1024  # KiB on Linux


def bench_measure(tmp: Path, vocab: int, classes: int, dim: int) -> dict:
    from safetensors.torch import save_file

    from lingcollapse.stats.files import save_stats

    stats, weight = make_stats(vocab, classes, dim)
    stats.cov_m2 = None  # the paper's measure: no covariance
    save_stats(tmp / "train.safetensors", stats)
    save_file({"weight": weight}, str(tmp / "classifier.safetensors"))
    del stats, weight
    cmd = [*CLI, "measure", str(tmp / "train.safetensors"), "--device", "cpu"]
    cmd += ["--classifier", str(tmp / "classifier.safetensors"), "--out", str(tmp / "m")]
    seconds, peak = peak_rss(cmd)
    estimate = measure_bytes(vocab, classes, dim).host
    return {"what": f"measure C={classes:,} d={dim:,}", "s": seconds, "peak": peak, "est": estimate}


def bench_collect(tmp: Path, width: int, depth: int, batch: int, seq_len: int, n: int) -> list:
    from transformers import AutoModelForCausalLM

    model_dir, data = tmp / f"{depth}x{width}", tmp / "data"
    build(width, depth, model_dir)
    make_data(data, n, seq_len)
    (data / "validation.npy").symlink_to(data / "train.npy")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    use_sdpa(model)  # as collect loads it: the estimate is of the path that runs
    shape = ModelShape.of(model)
    del model
    # the classes the data holds as targets: train keeps rows for these alone (R ≤ V),
    # and validation decides among them (min-count 1), as collect sizes its work
    tokens = np.load(data / "train.npy", mmap_mode="r")
    found = target_classes(tokens, range(tokens.shape[0]), shape.vocab)
    kept = shape.vocab if found is None else found.numel()
    rows = []
    for split in ("train", "validation"):
        out = tmp / f"{split}.safetensors"
        cmd = [*CLI, "collect", str(model_dir), "--data", str(data), "--split", split]
        cmd += ["--out", str(out), "--batch-size", str(batch), "--device", "cpu"]
        if split == "validation":
            cmd += ["--train-stats", str(tmp / "train.safetensors")]
        seconds, peak = peak_rss(cmd)
        sizes = {"rows": kept} if split == "train" else {"classes": kept}
        estimate = collect_bytes(shape, batch, seq_len, split, **sizes).host
        what = f"collect {split} {depth}×{width} B={batch} T={seq_len:,}"
        rows.append({"what": what, "s": seconds, "peak": peak, "est": estimate})
    return rows


def table() -> None:
    """The bounds at the paper's scale: measure, and collect at Table 3's batch sizes,
    T = 2,048, float32 (collect's default), SDPA attention (collect's), on the CPU or a
    GPU; TinyStories' 29,233 classes are the kept classes and the train rows, and
    measure's tile is its default on each device (1,024 on the CPU, 8,192 on a GPU)."""
    from lingcollapse.models.gpt_neo import gpt_neo_config

    print("| command | on the CPU | on a GPU (+ CPU) |")
    print("|---|---|---|")
    cpu, gpu = measure_bytes(VOCAB, 29233, 1024), measure_bytes(VOCAB, 29233, 1024, 8192, gpu=True)
    print(
        f"| measure, C = 29,233, d = 1,024 | {gib(cpu.host)} | {gib(gpu.gpu)} (+ {gib(gpu.host)}) |"
    )
    for depth, width in ((1, 1024), (2, 1024), (12, 1024), (2, 768)):
        config = gpt_neo_config(width, depth, VOCAB)
        batch = TABLE3_BATCH[depth][width]
        for split in ("train", "validation"):
            sizes = {"classes": 29233, "rows": 29233}
            cpu = collect_bytes(_shape(config, 4), batch, 2048, split, **sizes)
            gpu = collect_bytes(_shape(config, 4), batch, 2048, split, **sizes, gpu=True)
            print(
                f"| collect {split}, {depth}×{width}, B = {batch} | {gib(cpu.host)} | "
                f"{gib(gpu.gpu)} (+ {gib(gpu.host)}) |"
            )


def _shape(config, elem: int) -> ModelShape:
    """The shape of a GPT-Neo config without building it (weights counted, bias buffers too)."""
    d, v, depth = config.hidden_size, config.vocab_size, config.num_layers
    params = v * d + config.max_position_embeddings * d + depth * (12 * d * d + 13 * d) + 2 * d
    buffers = depth * config.max_position_embeddings**2  # the (1, 1, P, P) bool masks
    return ModelShape(params * elem + buffers, v, d, config.num_heads, 4 * d, depth, elem, False)


CLI = [sys.executable, "-m", "lingcollapse"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--table", action="store_true")
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--sequences", type=int, default=4)  # one batch: the forward is the peak
    args = p.parse_args()
    if args.table:
        table()
        return
    vocab, classes, dim = VOCAB, 29233, 1024
    if args.quick:
        classes, dim = 4096, 256
        args.width, args.depth, args.seq_len = 256, 1, 512
    print(f"threads={torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "measure").mkdir()
        (Path(tmp) / "collect").mkdir()
        rows = [bench_measure(Path(tmp) / "measure", vocab, classes, dim)]
        rows += bench_collect(
            Path(tmp) / "collect",
            args.width,
            args.depth,
            args.batch_size,
            args.seq_len,
            args.sequences,
        )
    for r in rows:
        print(
            f"  {r['what']:<42} {r['s']:6.1f} s   peak RSS {r['peak'] / GIB:5.2f} GiB   "
            f"estimate {r['est'] / GIB:5.2f} GiB   ({r['est'] / r['peak']:.2f}×)"
        )
    print(json.dumps(rows))
    if not args.quick and (args.width, args.depth, args.batch_size) == (1024, 2, 4):
        _record(args, rows)


def _record(args, rows: list[dict]) -> None:
    from results import record

    def cell(r: dict) -> str:
        return f"**{r['peak'] / GIB:.2f} GiB** (bound {r['est'] / GIB:.2f})"

    measure_row, train, validation = rows
    row = {
        "what": "peak RSS of `measure` and `collect` (CLI processes) vs the bounds of "
        "`src/lingcollapse/memory.py` (see Memory)",
        "result": f"measure {cell(measure_row)}; collect 2×1024 at 4 × 2,048 (SDPA): train "
        f"{cell(train)}, validation {cell(validation)}",
        "goal": "bound ≥ peak, ≤ 2×",
    }
    record("memory", row, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
