"""Training throughput: `lingcollapse train` against the Hugging Face `Trainer` (run_clm).

    python benchmarks/bench_train.py                       # 2×768, V = 50,257, T = 2048, B = 16
    python benchmarks/bench_train.py --width 64 --depth 1 --seq-len 256 --batch 8 --steps 30

Every variant runs in a fresh process from the same saved model (the paper's GPT-Neo,
Table 2: both sides load the same initial weights, ours through ``--init``), the same
random packed data, batch and hardware, and the same recipe: the Trainer's defaults,
which ``train`` reproduces (AdamW (0.9, 0.999, 1e-8) decaying what
``Trainer.get_decay_parameter_names`` returns, gradient clipping at 1.0, linear decay, no
warm-up; tests/test_train_recipe.py checks the weights agree):

- ``trainer``: ``transformers.Trainer`` as ``run_clm`` drives it: default
  ``TrainingArguments`` (fused AdamW on PyTorch ≥ 2.8), bf16 on CUDA, the model's own
  loss, Hugging Face's eager GPT-Neo attention;
- ``ours-eager``: `lingcollapse train --attention eager --compile off` (the same
  function and kernels as the Trainer's);
- ``ours-sdpa``: `--attention sdpa --compile off`;
- ``ours``: the defaults (SDPA, and ``torch.compile`` on CUDA).

Throughput is tokens per second in the steady state: the wall time between the end of
step ``--warmup`` and the end of the last step, read from per-step timestamps, so
start-up and compilation are reported apart (``first_steps_s``). Goal (issue 3): ours
≥ 1.2× the Trainer. Prints a table and writes JSON with ``--json``.
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

VOCAB = 50257
VARIANTS = ("trainer", "ours-eager", "ours-sdpa", "ours")


def make_data(path: Path, rows: int, seq_len: int) -> None:
    """Packed random tokens in the data-dir format (DESIGN §2); content does not matter."""
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "train.npy", rng.integers(0, VOCAB, (rows, seq_len), dtype=np.int32))
    np.save(path / "validation.npy", rng.integers(0, VOCAB, (2, seq_len), dtype=np.int32))
    meta = {"seq_len": seq_len, "vocab_size": VOCAB, "eos_token_id": VOCAB - 1}
    (path / "meta.json").write_text(json.dumps(meta))


class _StepTimes:
    """Wall-clock time at the end of every optimizer step (synchronised on CUDA)."""

    def __init__(self):
        self.times: list[float] = []

    def mark(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def make_init(path: Path, args) -> None:
    """The initial weights both sides start from (seed 42, the Trainer's)."""
    from lingcollapse.models.registry import build

    model = build(
        "gpt-neo",
        args.width,
        args.depth,
        VOCAB,
        42,
        max_positions=args.seq_len,
        eos_token_id=VOCAB - 1,
        allow_any_size=True,
    )
    model.save_pretrained(path)


def run_trainer(args, data: Path) -> list[float]:
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    tokens = np.load(data / "train.npy")
    model = AutoModelForCausalLM.from_pretrained(data / "init", dtype=torch.float32)
    rows = [{"input_ids": r.astype(np.int64), "labels": r.astype(np.int64)} for r in tokens]
    clock = _StepTimes()

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.mark()

    training = TrainingArguments(
        output_dir=str(data / "trainer-out"),
        per_device_train_batch_size=args.batch,
        learning_rate=5e-5,
        weight_decay=0.0005,
        lr_scheduler_type="linear",
        max_steps=args.steps,
        bf16=torch.cuda.is_available(),
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training, train_dataset=rows, callbacks=[Clock()])
    clock.mark()
    trainer.train()
    return clock.times


def run_ours(args, data: Path, attention: str, compile_: str) -> list[float]:
    from lingcollapse.train import loop
    from lingcollapse.train.loop import TrainConfig, train

    clock = _StepTimes()
    step = loop._step

    def timed_step(*a, **k):
        out = step(*a, **k)
        clock.mark()
        return out

    loop._step = timed_step
    cfg = TrainConfig(
        str(data),
        str(data / f"run-{attention}-{compile_}"),
        init=str(data / "init"),
        batch_size=args.batch,
        checkpoint_every=10**9,
        attention=attention,
        compile=compile_,
    )
    clock.mark()
    train(cfg)
    return clock.times


def child(args) -> None:
    data = Path(args.data)
    if args.variant == "trainer":
        times = run_trainer(args, data)
    else:
        attention = "eager" if args.variant == "ours-eager" else "sdpa"
        times = run_ours(args, data, attention, "auto" if args.variant == "ours" else "off")
    steady = times[args.warmup : args.steps + 1]
    tokens = (len(steady) - 1) * args.batch * args.seq_len
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    print(
        json.dumps(
            {
                "variant": args.variant,
                "tokens_per_s": tokens / (steady[-1] - steady[0]),
                "first_steps_s": times[args.warmup] - times[0],
                "peak_gib": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16, help="Table 3's for 2×768")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the rate")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return child(args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_data(data, args.steps * args.batch, args.seq_len)  # one epoch = --steps
        make_init(data / "init", args)
        for variant in args.variants.split(","):
            cmd = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--variant",
                variant,
                "--data",
                str(data),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if proc.returncode:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = next((r["tokens_per_s"] for r in results if r["variant"] == "trainer"), None)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{args.depth}×{args.width}, T = {args.seq_len}, B = {args.batch}, V = {VOCAB}, {device}")
    print(f"{'variant':<12}{'tokens/s':>12}{'× trainer':>11}{'first steps':>13}{'peak GiB':>10}")
    for r in results:
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(
            f"{r['variant']:<12}{r['tokens_per_s']:>12,.0f}{ratio:>11}"
            f"{r['first_steps_s']:>12.1f}s{peak:>10}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    if torch.cuda.is_available() and base and len(results) > 1:
        _record(args, results, base, device)


def _record(args, results: list[dict], base: float, device: str) -> None:
    """The README's row: on a GPU only (the paper trained on A100s)."""
    from results import record

    ours = [r for r in results if r["variant"] != "trainer"]
    cells = ", ".join(
        f"{r['variant']} **{r['tokens_per_s'] / base:.2f}×** ({r['tokens_per_s'] / 1e3:,.1f} k "
        f"tok/s)"
        for r in ours
    )
    row = {
        "what": f"training throughput vs the HF `Trainer` at run_clm's defaults, both from one "
        f"saved init with the same recipe, {args.depth}×{args.width}, B = {args.batch}, "
        f"T = {args.seq_len:,}, V = {VOCAB:,}, bf16, **{device}**",
        "result": f"Trainer {base / 1e3:,.1f} k tok/s; {cells}; steady state after "
        f"{args.warmup} steps, compilation apart",
        "goal": "≥ 1.2×",
    }
    record(f"train_{args.depth}x{args.width}", row, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
