"""``lingcollapse train``: one GPT-Neo of the paper's grid on a data dir (Appendix C)."""

from __future__ import annotations

import argparse
import os

from lingcollapse.io import to_json
from lingcollapse.models.ids import DEFAULT_SEED
from lingcollapse.progress import add_log_every
from lingcollapse.train.config import DEFAULT_LOGGING_STEPS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model of the paper's grid, or continue a Hugging Face model (resumable)",
        description="Teacher-forced cross-entropy with the recipe of the Hugging Face Trainer "
        "at its defaults, as the paper's run_clm.py ran it (Appendix C): AdamW (0.9, 0.999, "
        "1e-8) with weight decay on all but biases and norm weights, gradient clipping at "
        "1.0, a linear learning-rate decay without warm-up. Re-running the same command "
        "after an interruption resumes from the last checkpoint. Data-parallel on several "
        "GPUs or nodes: `torchrun --nproc-per-node N --no-python lingcollapse train …` (or "
        "`accelerate launch`).",
    )
    p.add_argument("--data", required=True, help="data dir from `data prepare`")
    p.add_argument("--out", required=True, help="run dir to write")
    p.add_argument(
        "--init",
        metavar="MODEL",
        help="start from this Hugging Face causal LM (dir or hub id): its weights and "
        "architecture, instead of a fresh GPT-Neo of --width × --depth",
    )
    p.add_argument(
        "--family",
        help="gpt-neo (the paper's, Table 2; default) | gpt2 | gpt-neox | llama, "
        "at the same width × depth",
    )
    p.add_argument("--width", type=int, help="d ∈ {64, …, 1024} (Table 2; default 64)")
    p.add_argument("--depth", type=int, help="L ∈ {1, 2, 4, 8, 12} (default 1)")
    p.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="passes over the train split (the learning rate decays linearly over all)",
    )
    p.add_argument(
        "--weight-decay", type=float, default=0.0005, help="β (the paper: 0.0005 or 0.1)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"initialisation and data order (default {DEFAULT_SEED}, the Trainer's)",
    )
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (run_clm's)")
    p.add_argument("--batch-size", type=int, help="sequences per step (default: Table 3)")
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="clip the global gradient norm (the Trainer's 1.0; 0: off)",
    )
    p.add_argument(
        "--warmup-steps", type=int, default=0, help="linear warm-up steps (the Trainer's 0)"
    )
    p.add_argument(
        "--save-epochs",
        metavar="LIST",
        help="keep the model after these epochs (e.g. 1,3,6, counted from 1, or all) as "
        "RUN/epoch-E/, a model dir for collect, measure and inspect",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="optimizer steps between resumable checkpoints",
    )
    p.add_argument(
        "--allow-any-size",
        action="store_true",
        help="widths/depths outside the paper's grid (tiny CPU models)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--attention",
        choices=("sdpa", "eager"),
        default="sdpa",
        help="sdpa: fused kernels computing GPT-Neo's unscaled attention (default); "
        "eager: Hugging Face's own",
    )
    p.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile the model and loss (auto: on CUDA)",
    )
    p.add_argument(
        "--report-to",
        action="append",
        metavar="BACKENDS",
        help="also send the log's values to none (default) | tensorboard (RUN/tb/) | wandb | "
        "mlflow | all (every one installed): comma-separated or repeated; each needs its "
        "extra, e.g. pip install 'lingcollapse[tensorboard]'",
    )
    p.add_argument(
        "--logging-steps",
        type=_steps,
        default=DEFAULT_LOGGING_STEPS,
        metavar="N",
        help=f"log loss (mean since the last log), lr, gradient norm and tokens/s every N "
        f"steps (default {DEFAULT_LOGGING_STEPS}; below 1: that share of all steps, as "
        "the Trainer takes it)",
    )
    p.add_argument(
        "--eval-steps",
        type=_steps,
        metavar="N",
        help="also evaluate every N steps (default: only at each epoch's end; below 1: "
        "that share of all steps)",
    )
    p.set_defaults(func=run)
    add_log_every(p)


def _steps(value: str) -> int | float:
    """``--logging-steps`` / ``--eval-steps``: a whole number, or a share below 1
    (checked with the rest of the config)."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of steps, not {value!r}") from None


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from lingcollapse.train.loop import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # once under torchrun / accelerate
        print(to_json(result))
    return 0
