"""``lingcollapse train``: one GPT-Neo of the paper's grid on a data dir (Appendix C)."""

from __future__ import annotations

import argparse
import json
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model of the paper's grid (resumable)",
        description="Teacher-forced cross-entropy with AdamW and a linear learning-rate decay "
        "without warm-up (the paper's Appendix C). Re-running the same command after an "
        "interruption resumes from the last checkpoint. Data-parallel on several GPUs or "
        "nodes: `torchrun --nproc-per-node N $(which lingcollapse) train …` (or "
        "`accelerate launch`).",
    )
    p.add_argument("--data", required=True, help="data dir from `data prepare`")
    p.add_argument("--out", required=True, help="run dir to write")
    p.add_argument(
        "--family",
        default="gpt-neo",
        help="gpt-neo (the paper's, Table 2) | gpt2 | gpt-neox | llama, at the same width × depth",
    )
    p.add_argument("--width", type=int, default=64, help="d ∈ {64, …, 1024} (Table 2)")
    p.add_argument("--depth", type=int, default=1, help="L ∈ {1, 2, 4, 8, 12}")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--weight-decay", type=float, default=0.0005, help="β (the paper: 0.0005 or 0.1)"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (run_clm's)")
    p.add_argument("--batch-size", type=int, help="sequences per step (default: Table 3)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lingcollapse.train.loop import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        family=args.family,
        width=args.width,
        depth=args.depth,
        epochs=args.epochs,
        weight_decay=args.weight_decay,
        seed=args.seed,
        lr=args.lr,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        allow_any_size=args.allow_any_size,
        device=args.device,
        attention=args.attention,
        compile=args.compile,
    )
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # once under torchrun / accelerate
        print(json.dumps(result))
    return 0
