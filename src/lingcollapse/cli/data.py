"""``lingcollapse data prepare``: make a packed data dir (DESIGN §2) from a corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from lingcollapse.io import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare corpora (tokenize and pack into a data dir)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    m = verbs.add_parser(
        "prepare",
        help="tokenize and pack a corpus into a data dir",
        description="Tokenize a corpus and pack it into DATA_DIR: train.npy and\n"
        "validation.npy (int32 [S, T] chunks), tokenizer/ and meta.json (T, S,\n"
        "N = S(T−1), vocabulary size V, empirical vocabulary C). Written to a temporary\n"
        "dir and renamed at the end; an existing DATA_DIR is kept unless --overwrite.",
        epilog="examples:\n"
        "  lingcollapse data prepare --out data/stories              # embedded, ~3 M tokens\n"
        "  lingcollapse data prepare --corpus notes.txt --out data/notes --vocab-size 8192\n"
        "  # the paper's counts (S = 229,367, N = 469,514,249, C = 29,233):\n"
        "  lingcollapse data prepare --corpus tinystories --packing group-texts --num-proc 2 "
        "--out data/tinystories",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument(
        "--corpus",
        default="embedded",
        metavar="embedded|tinystories|PATH",
        help="the built-in story generator (default, no download), TinyStories (the paper's, "
        "via `datasets`), or a .txt file (documents separated by blank lines), a directory "
        "of .txt files (one document each), a .jsonl or .parquet file",
    )
    m.add_argument("--out", type=Path, required=True, metavar="DATA_DIR", help="data dir to make")
    tok = m.add_mutually_exclusive_group()
    tok.add_argument(
        "--tokenizer",
        metavar="HUB_ID_OR_PATH",
        help="an existing HF tokenizer (default for tinystories: EleutherAI/gpt-neo-125M); "
        "without it a byte-level BPE is trained on the train split",
    )
    tok.add_argument("--vocab-size", type=int, metavar="N", help="size of the trained BPE (4096)")
    m.add_argument(
        "--seq-len", type=int, metavar="T", help="chunk length T (256 embedded, else 2048)"
    )
    m.add_argument(
        "--packing",
        choices=("gpt", "group-texts"),
        default="gpt",
        help="gpt: documents joined with EOS, cut into chunks of T (default); group-texts: "
        "run_clm's group_texts exactly (no EOS, remainder dropped per 1,000-document batch "
        "of each of --num-proc shards), as the paper's counts were made",
    )
    m.add_argument(
        "--num-proc",
        type=int,
        metavar="N",
        help="workers: tokenizer threads, and with group-texts the number of shards, which "
        "changes the result (default 1, as run_clm; the paper used 2)",
    )
    m.add_argument(
        "--tokens",
        type=int,
        metavar="N",
        help="embedded corpus size in tokens, about (default 3,000,000)",
    )
    m.add_argument("--seed", type=int, default=0, help="generator and split seed (default 0)")
    m.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="share of documents held out for validation, embedded and local corpora (0.05)",
    )
    m.add_argument(
        "--text-column",
        default="text",
        metavar="NAME",
        help="column holding the text in .jsonl/.parquet (default text)",
    )
    m.add_argument(
        "--dataset-dir",
        type=Path,
        metavar="DIR",
        help="a local copy of roneneldan/TinyStories (for --corpus tinystories offline)",
    )
    m.add_argument("--overwrite", action="store_true", help="replace an existing data dir")
    m.add_argument("--json", action="store_true", help="print meta.json and timings as JSON")
    m.set_defaults(func=prepare)


def prepare(args: argparse.Namespace) -> int:
    from lingcollapse.data.prepare import PrepareConfig
    from lingcollapse.data.prepare import prepare as run

    cfg = PrepareConfig(
        out=args.out,
        corpus=args.corpus,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        seq_len=args.seq_len,
        packing=args.packing,
        num_proc=args.num_proc,
        tokens=args.tokens,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        text_column=args.text_column,
        dataset_dir=args.dataset_dir,
        overwrite=args.overwrite,
    )
    done = run(cfg)
    if args.json:
        print(to_json({"meta": done.meta, "timings_s": done.timings}, indent=2))
        return 0
    meta, times = done.meta, done.timings
    for split, info in meta["splits"].items():
        print(
            f"{split}: {info['documents']:,} documents, {info['tokens']:,} tokens → "
            f"S = {info['S']:,} chunks of T = {meta['seq_len']}, N = {info['N']:,}, "
            f"C = {info['C']:,}"
        )
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    print(f"vocabulary V = {meta['vocab_size']:,}; wrote {done.path} ({stages})")
    return 0
