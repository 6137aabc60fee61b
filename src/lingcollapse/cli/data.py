"""``lingcollapse data prepare``: make a packed data dir from a corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from lingcollapse.io import to_json
from lingcollapse.progress import add_log_every


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="prepare corpora (tokenize and pack into a data dir), count their classes"
    )
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
        help="embedded: the built-in story generator (no download); tinystories: "
        "TinyStories (the paper's, via `datasets`); or a .txt file (documents separated by "
        "blank lines), a directory of .txt files (one document each), a .jsonl or .parquet file",
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
    add_log_every(m)
    c = verbs.add_parser(
        "counts",
        help="samples per class of a train split (Appendix A, Figure 4)",
        description="Appendix A's counts of a train split (S, T, N = S(T−1), V, C, samples "
        "per class: mean and std over the classes that occur) and, with --out, Figure 4: the "
        "most frequent classes' sample counts on a log scale.",
    )
    c.add_argument(
        "source", type=Path, help="a data dir, a train stats file, or a run dir with stats/"
    )
    c.add_argument("--out", type=Path, metavar="DIR", help="draw fig4_class_counts.png/.svg here")
    c.add_argument(
        "--top", type=int, default=500, metavar="K", help="classes in the figure (default 500)"
    )
    c.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    c.set_defaults(func=counts)


def counts(args: argparse.Namespace) -> int:
    from lingcollapse.data.counts import class_counts, load_tokenizer_of, top_classes
    from lingcollapse.errors import UserError

    if args.top < 1:
        raise UserError(f"--top must be positive, not {args.top}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; give a directory for the figure")
    found = class_counts(args.source)
    info = found.summary()
    tokenizer = load_tokenizer_of(found)
    top = top_classes(found, args.top, tokenizer)
    if args.out is not None:
        from lingcollapse.analysis.figures import figure_class_counts, save

        fig = figure_class_counts(found, args.top, tokenizer)
        if fig is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            info["figure"] = [str(p) for p in save(fig, args.out / "fig4_class_counts")]
    if args.json:
        print(to_json({**info, "top": [[i, n, t] for i, n, t in top]}, indent=2))
        return 0
    shown = [f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in _appendix_a(info)]
    print(", ".join(shown))
    print("most frequent: " + ", ".join(f"{t!r} {n:,}" for _, n, t in top[:10]))
    for path in info.get("figure", []):
        print(f"wrote {path}")
    return 0


def _appendix_a(info: dict) -> list[tuple[str, object]]:
    names = (
        ("corpus", "corpus"),
        ("S", "n_sequences"),
        ("T", "seq_len"),
        ("N", "n_samples"),
        ("V", "vocab_size"),
        ("C", "n_classes"),
    )
    out = [(label, info[key]) for label, key in names if key in info]
    mean, std = info["samples_per_class_mean"], info["samples_per_class_std"]
    return [*out, ("samples per class", f"{mean:,.1f} ± {std:,.1f} (mean ± std over C)")]


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
