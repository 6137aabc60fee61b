"""``lingcollapse collect``: one pass of a causal LM over a split into stats."""

from __future__ import annotations

import argparse

from lingcollapse.collect.device_map import STRATEGIES
from lingcollapse.collect.run import CollectConfig, collect
from lingcollapse.progress import add_log_every


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="stream a causal LM over a split into class statistics",
        description="One pass of MODEL (a run dir, a local HF model dir or a hub id) over "
        "DATA_DIR/{split}.npy. Train split: per-class counts, means and variances of the "
        "embeddings feeding the output layer. Validation split (--train-stats): loss, "
        "accuracy and the NC4 decisions. Re-running the same command resumes; under "
        "torchrun each rank takes a disjoint shard and rank 0 writes the merged file.",
    )
    p.add_argument("model", help="run dir, a run's epoch-E/, local HF model dir or hub id")
    p.add_argument("--data", required=True, help="data dir with {split}.npy")
    p.add_argument(
        "--split",
        default="train",
        choices=["train", "validation"],
        help="which split of the data dir to stream",
    )
    p.add_argument("--out", required=True, help="stats file to write (.safetensors)")
    p.add_argument(
        "--train-stats",
        help="train stats for --split validation (NCC means): a file, or a run dir for its "
        "stats/train.safetensors",
    )
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1024,
        help="sequences between resumable checkpoints (default 1024)",
    )
    p.add_argument("--shard", help="I/N: take the I-th of N disjoint blocks of sequences")
    p.add_argument(
        "--layers",
        default="last",
        help="last (default), all, or indices like 0,3,last (0 = token "
        "embeddings, i = output of block i); one stats file per layer",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        help="model dtype: float32, bf16 or fp16 (statistics are float64 regardless)",
    )
    p.add_argument("--revision", help="hub revision, e.g. a Pythia checkpoint 'step1000'")
    p.add_argument(
        "--covariance",
        action="store_true",
        help="also keep the d×d within-class scatter (Papyan's NC1)",
    )
    p.add_argument(
        "--min-count",
        type=int,
        default=1,
        help="validation: NC4 decides among classes with ≥ N train samples",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present), cpu or cuda; with --device-map where the statistics "
        "live (auto: the device of the output layer's input; cpu; cuda:N)",
    )
    p.add_argument(
        "--device-map",
        choices=STRATEGIES,
        help="split a model larger than one GPU over the GPUs, the CPU (and the disk, with "
        "--offload-folder) with accelerate: auto/balanced (even over the GPUs), "
        "balanced_low_0 (GPU 0 light) or sequential (fill GPU 0 first); under torchrun "
        "each rank takes its own group of GPUs",
    )
    p.add_argument(
        "--max-memory",
        metavar="DEV=SIZE,…",
        help="with --device-map, the budget per device, e.g. 0=20GiB,1=40GiB,cpu=64GiB (GPU "
        "indices within the rank's group under torchrun; default: 90%% of what is free)",
    )
    p.add_argument(
        "--offload-folder",
        metavar="DIR",
        help="with --device-map, let layers beyond --max-memory stay on disk and be read in "
        "every batch (slow; weights not in safetensors are written to DIR)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the hub (never on by default)",
    )
    p.set_defaults(func=run)
    add_log_every(p)


def run(args: argparse.Namespace) -> int:
    cfg = CollectConfig(
        model=args.model,
        data=args.data,
        split=args.split,
        out=args.out,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        shard=args.shard,
        layers=args.layers,
        dtype=args.dtype,
        revision=args.revision,
        train_stats=args.train_stats,
        min_count=args.min_count,
        covariance=args.covariance,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
        max_memory=args.max_memory,
        offload_folder=args.offload_folder,
    )
    for path in collect(cfg):
        print(f"wrote {path}")
    return 0
