"""``lingcollapse inspect``: chosen tokens beside the average token (paper Tables 4–5)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="per-token NC values of a measured run",
        description="Show per-class rows of RUN/classes.parquet for chosen tokens (or the "
        "top/bottom K by a column) next to the average token; for one token, also its most "
        "interfering and most separated tokens.",
    )
    p.add_argument("run", type=Path, help="run dir holding classes.parquet (from measure)")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument(
        "--tokens",
        nargs="+",
        metavar="WORD",
        help="token texts: the exact text first (' the'), else up to a leading space; a "
        "number that is no token's text is taken as an id",
    )
    pick.add_argument("--ids", nargs="+", type=int, metavar="ID", help="token ids")
    pick.add_argument("--top", type=int, metavar="K", help="the K largest values of --by")
    pick.add_argument("--bottom", type=int, metavar="K", help="the K smallest values of --by")
    p.add_argument(
        "--by", default="count", metavar="COLUMN", help="column to rank by (default count)"
    )
    p.add_argument(
        "--neighbours", type=int, default=10, metavar="K", help="neighbours shown for one token"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from lingcollapse.analysis import inspect
    from lingcollapse.errors import UserError
    from lingcollapse.metrics.job import local_tokenizer
    from lingcollapse.metrics.sampled import NAN_COLUMNS

    if args.neighbours < 1:
        raise UserError(f"--neighbours must be positive, not {args.neighbours}")
    classes = inspect.with_scaled_norm(inspect.load_classes(args.run), args.run)
    if args.tokens or args.ids:
        rows = (
            inspect.find_tokens(classes, args.tokens, lambda: local_tokenizer(args.run))
            if args.tokens
            else inspect.find_ids(classes, args.ids)
        )
        title = f"{len(rows)} token(s) of {args.run}"
    else:
        k = args.top if args.top is not None else args.bottom
        rows = inspect.extremes(classes, args.by, k, largest=args.top is not None)
        if rows.empty and len(classes):
            why = (
                " (measure --sample-pairs leaves it out: a row mean needs every pair of its class)"
                if args.by in NAN_COLUMNS
                else ""
            )
            raise UserError(
                f"column {args.by!r} of {args.run}'s classes.parquet has no value{why}; "
                "rank by another column"
            )
        title = f"{'top' if args.top is not None else 'bottom'} {k} by {args.by} in {args.run}"
    cols = [c for c in inspect.SHOWN if c in classes.columns]
    extra = [args.by] if args.by in classes.columns and args.by not in cols else []
    shown = pd.concat([rows[cols + extra], inspect.average_row(classes).to_frame().T[cols + extra]])
    print(f"{title} ({len(classes):,} classes; last row: the average token)")
    print(inspect.format_table(shown))
    if (args.tokens or args.ids) and len(rows) == 1:
        _print_neighbours(args, int(rows["token_id"].iloc[0]), classes)
    elif args.tokens or args.ids:
        print(f"\n(neighbours are listed for one token at a time; {len(rows)} were chosen)")
    return 0


def _print_neighbours(args, token_id: int, classes) -> None:
    from lingcollapse.analysis import inspect

    try:
        near = inspect.neighbours(args.run, token_id, classes, args.neighbours)
    except FileNotFoundError as missing:
        print(f"\n(no {missing}: neighbours need the train stats; table only)")
        return
    print(f"\nmost interfering with token {token_id} (largest cos of centred means, Eq. 6):")
    print(inspect.format_table(near.interfering))
    print(f"\nmost separated from token {token_id} (smallest cos, Eq. 6; pair CDNV Eq. 4):")
    print(inspect.format_table(near.separated))
