"""``lingcollapse measure``: stats → metrics.json + classes.parquet (DESIGN §3, §5)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import warnings
from pathlib import Path

from lingcollapse.device import pick_device
from lingcollapse.errors import UserError
from lingcollapse.io import atomic_path, write_json
from lingcollapse.memory import is_out_of_memory
from lingcollapse.metrics import conventions
from lingcollapse.metrics.classifier import load_classifier
from lingcollapse.metrics.compute import measure
from lingcollapse.metrics.report import metrics_table
from lingcollapse.stats.files import load_stats

log = logging.getLogger(__name__)
IDENTITY = ("model", "width", "depth", "n_params", "epochs", "weight_decay", "seed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="compute every NC metric from stats files",
        description="Compute the NC metrics of DESIGN §3 from train stats "
        "(and optionally a classifier and validation stats).",
    )
    p.add_argument("train_stats", type=Path, help="train stats (.safetensors) from collect")
    p.add_argument(
        "--validation",
        type=Path,
        help="validation stats for NC4 and val_loss "
        "(default: validation.safetensors beside TRAIN_STATS, if present)",
    )
    p.add_argument(
        "--classifier",
        help="model dir, run dir, hub id or safetensors file "
        "with 'weight' (and 'bias') for NC3 (default: the run's model/, if present)",
    )
    p.add_argument("--ood", type=Path, help="train stats of an out-of-distribution corpus (NC5)")
    p.add_argument(
        "--preset",
        help=f"conventions: {', '.join(conventions.PRESETS)} (default wu-papyan, the paper's)",
    )
    p.add_argument(
        "--min-count", type=int, help="leave out classes with fewer train samples (default 1)"
    )
    p.add_argument("--cdnv-power", type=float, help="k of Eq. 4 (default 2; 0 = Galanti's)")
    p.add_argument("--tokenizer", help="tokenizer to decode token ids (default: the run's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument(
        "--tile",
        type=int,
        help="classes per tile of the pairwise pass (default 1024, or less to fit free memory)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output dir (default: the run dir, i.e. the "
        "parent of stats/, else the stats file's dir)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.notes = []  # said after success, so a failure prints exactly one line
    conv = conventions.resolve(args.preset, min_count=args.min_count, cdnv_power=args.cdnv_power)
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile must be positive, not {args.tile}")
    run_dir = _run_dir(args.train_stats)
    out = args.out or run_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a dir for metrics.json and classes.parquet")
    train = load_stats(args.train_stats, kind="train")
    validation = _optional_validation(args)
    classifier = _classifier(args.classifier, run_dir, args.notes)
    ood = load_stats(args.ood, kind="train") if args.ood else None
    device = pick_device(args.device)
    with warnings.catch_warnings(record=True) as caught, _out_of_memory(device):
        warnings.simplefilter("always")
        result = measure(
            train,
            conv,
            classifier,
            validation,
            ood,
            tokens=_tokens(args.tokenizer, run_dir, train.vocab_size),
            device=device,
            tile=args.tile,
        )
    for note in args.notes:
        log.info("%s", note)
    for w in caught:
        log.warning("warning: %s", w.message)
    if result.metrics["n_degenerate_pairs"]:
        log.warning(
            "warning: %d pair(s) of classes have coinciding means; they are left out "
            "of the CDNV (Eq. 4) and log-kernel (Eq. 7) means",
            result.metrics["n_degenerate_pairs"],
        )
    metrics = {
        **_identity(run_dir, train.metadata),
        **result.metrics,
        "preset": args.preset or "wu-papyan",
        **conv.as_dict(),
    }
    with atomic_path(out / "classes.parquet") as tmp:
        result.classes.to_parquet(tmp, index=False)
    # last, with its checksum: a metrics.json newer than the stats marks a finished measure
    write_json(out / "metrics.json", metrics, checksum=True)
    print(json.dumps(metrics, indent=2) if args.json else metrics_table(metrics))
    return 0


@contextlib.contextmanager
def _out_of_memory(device):
    """A failed allocation the estimates did not foresee is one error line too."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        other = " or use --device cpu" if device.type == "cuda" else ""
        raise UserError(
            f"out of memory on {device} while measuring: lower --tile or raise --min-count{other}"
        ) from None


def _run_dir(train_stats: Path) -> Path:
    parent = train_stats.resolve().parent
    return parent.parent if parent.name == "stats" else parent


def _optional_validation(args):
    path = args.validation
    if path is None:
        sibling = args.train_stats.parent / "validation.safetensors"
        if sibling.is_file() and sibling.resolve() != args.train_stats.resolve():
            args.notes.append(f"using validation stats {sibling}")
            path = sibling
    return None if path is None else load_stats(path, kind="validation")


def _classifier(source: str | None, run_dir: Path, notes: list[str]):
    if source is None and (run_dir / "model" / "config.json").is_file():
        source = str(run_dir / "model")
        notes.append(f"using the classifier of {source}")
    return None if source is None else load_classifier(source)


def _identity(run_dir: Path, meta: dict) -> dict:
    """model, width, depth, … from the run's config.json, else from the stats metadata."""
    ident = {"model": meta.get("model", run_dir.name)}
    if "layer" in meta:
        ident["layer"] = meta["layer"]
    config = run_dir / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except ValueError:
            data = {}
        ident.update({k: data[k] for k in IDENTITY if k in data})
    return ident


def _tokens(source: str | None, run_dir: Path, vocab_size: int) -> dict[int, str] | None:
    """Decoded text of every token id, if a tokenizer can be found offline."""
    candidates = [source] if source else [str(run_dir / "model"), str(run_dir / "tokenizer")]
    for cand in candidates:
        if not cand or (not source and not Path(cand).is_dir()):
            continue
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(cand)
        except Exception:  # no tokenizer files there: fall back to ids
            if source:
                raise UserError(f"cannot load tokenizer {source!r}; pass a tokenizer dir") from None
            continue
        n = min(vocab_size, len(tok))
        return {i: tok.decode([i]) for i in range(n)}
    return None
