"""Training (Appendix C): teacher-forced cross-entropy, AdamW, linear decay without warm-up.

One seed fixes both the initialisation and the data order (a permutation of the chunks
per epoch). Every ``checkpoint_every`` steps and at each epoch's end the model,
optimizer, scheduler and position go atomically into ``RUN/checkpoint/``; running the
same command after an interruption (even ``kill -9``) resumes there and ends with the
weights an uninterrupted run ends with. The run dir holds ``model/`` (HF format,
safetensors, with the tokenizer), ``config.json`` (the resolved config and the run's
identity), ``log.jsonl`` and ``eval.json`` (token-weighted validation loss and accuracy).

Speed without changing the function: GPT-Neo's attention runs through SDPA
(:mod:`lingcollapse.models.attention`), the LM head and the float32 cross-entropy sit in
one module that ``torch.compile`` fuses on CUDA, AdamW is fused on CUDA, and the loss is
read back only every few steps. Under ``torchrun`` (or ``accelerate launch``) each rank
trains on its share of every batch with DDP; the gradient is the single-process one.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lingcollapse.device import finish, setup
from lingcollapse.errors import UserError
from lingcollapse.io import exclusive, read_json, write_json, write_text
from lingcollapse.models import registry
from lingcollapse.models.attention import use_sdpa
from lingcollapse.models.gpt_neo import TABLE3_BATCH, check_size, run_name
from lingcollapse.progress import progress
from lingcollapse.train import checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (recorded in ``config.json``)."""

    data: str
    out: str
    family: str = "gpt-neo"  # the paper's; see lingcollapse.models.registry
    width: int = 64
    depth: int = 1
    epochs: int = 1
    weight_decay: float = 0.0005
    seed: int = 0
    lr: float = 5e-5  # run_clm's default (TrainingArguments.learning_rate)
    batch_size: int | None = None  # None: Table 3's for the paper's sizes, else 16
    checkpoint_every: int = 500  # steps
    allow_any_size: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: the rank's GPU)
    attention: str = "sdpa"  # sdpa (fused, same function) | eager (Hugging Face's own)
    compile: str = "auto"  # torch.compile: auto (on CUDA) | on | off

    def __post_init__(self) -> None:
        self.family = registry.family(self.family).name  # an alias resolves to its name
        check_size(self.width, self.depth, self.allow_any_size)
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, not {self.epochs}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, not {self.lr}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be ≥ 0, not {self.weight_decay}")
        if self.batch_size is None:
            self.batch_size = TABLE3_BATCH.get(self.depth, {}).get(self.width, 16)
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise UserError("--batch-size and --checkpoint-every must be at least 1")
        for name, allowed in (("attention", ("sdpa", "eager")), ("compile", ("auto", "on", "off"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}")

    @property
    def name(self) -> str:
        name = run_name(self.depth, self.width, self.epochs, self.weight_decay, self.seed)
        return name if self.family == "gpt-neo" else f"{name}-{self.family}"

    def recorded(self) -> dict:
        """The fields that must match to resume: those that decide the weights (paths
        may move, and the device, kernels and world size only change the rounding)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME}


RUNTIME = ("data", "out", "checkpoint_every", "device", "attention", "compile")


def _load_split(data: Path, split: str, vocab: int) -> np.ndarray:
    from lingcollapse.collect.data import open_split

    return open_split(data, split, vocab)


def _meta(data: Path) -> dict:
    path = data / "meta.json"
    if not path.is_file():
        raise UserError(
            f"{data} is not a data dir (no meta.json): make one with `lingcollapse data prepare`"
        )
    fix = "prepare the data dir again with `lingcollapse data prepare`"
    meta = read_json(path, fix)
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not a data dir's meta.json (not an object): {fix}")
    for key, required in (("vocab_size", True), ("eos_token_id", False)):
        if required or key in meta:
            value = meta.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"{path} has no valid {key} (got {value!r}): {fix}")
    return meta


def train(cfg: TrainConfig) -> dict:
    """Train one model into ``cfg.out``; returns the final evaluation.

    Under ``torchrun`` every rank runs this: each takes its share of every batch (DDP),
    rank 0 writes the run dir.
    """
    run, data = Path(cfg.out), Path(cfg.data)
    meta = _meta(data)
    if (run / "eval.json").is_file():  # finished before: the same config, or refuse
        _check_config(run / "config.json", cfg)
        return read_json(run / "eval.json", f"delete it to evaluate {run} again")
    vocab = int(meta["vocab_size"])  # the splits are hashed and checked: only when training
    tokens = _load_split(data, "train", vocab)
    val_tokens = _load_split(data, "validation", vocab)
    dist = setup(cfg.device)
    try:
        if dist.rank:
            return _train(cfg, run, data, meta, tokens, val_tokens, dist)
        with exclusive(run / "checkpoint", "training run"):
            return _train(cfg, run, data, meta, tokens, val_tokens, dist)
    finally:
        finish(dist)


class _Objective(torch.nn.Module):
    """Summed next-token cross-entropy (and top-1 hits) of a causal LM on (B, T) ids.

    The LM head runs on the T−1 positions that have a next token, in one module, so
    ``torch.compile`` fuses the float32 log-softmax instead of materialising (B, T, V)
    float32 logits, and DDP sees a single forward.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, hits: bool = False):  # (B, T) → (), () or None
        hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        logits = self.model.get_output_embeddings()(hidden[:, :-1]).float()  # (B, T−1, V)
        labels = ids[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
        # top-1 only for evaluation: an argmax over V is a whole extra pass over the logits
        return loss, (logits.argmax(-1) == labels).sum() if hits else None


def _build(cfg, meta: dict, seq_len: int, dist):
    model = registry.build(
        cfg.family,
        cfg.width,
        cfg.depth,
        int(meta["vocab_size"]),
        cfg.seed,
        max_positions=seq_len,
        eos_token_id=int(meta.get("eos_token_id", 0)),
        allow_any_size=cfg.allow_any_size,
    ).to(dist.device)
    if cfg.attention == "sdpa":
        use_sdpa(model)
    net = _Objective(model)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.device.index] if dist.device.type == "cuda" else None
        net = DistributedDataParallel(net, device_ids=ids)
    compiled = cfg.compile == "on" or (cfg.compile == "auto" and dist.device.type == "cuda")
    return model, (torch.compile(net) if compiled else net)


def _train(cfg, run: Path, data: Path, meta: dict, tokens, val_tokens, dist) -> dict:
    from lingcollapse.hub import quiet

    quiet()
    seq_len = tokens.shape[1]
    model, net = _build(cfg, meta, seq_len, dist)
    steps_per_epoch = math.ceil(tokens.shape[0] / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=dist.device.type == "cuda",
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    step = _resume(run, cfg, model, optimizer, schedule, dist)
    if dist.rank == 0:
        write_json(
            run / "config.json",
            {
                **asdict(cfg),
                "model": cfg.name,
                "n_params": model.num_parameters(),
                "vocab_size": int(meta["vocab_size"]),
                "seq_len": seq_len,
                "world_size": dist.world,
            },
        )
    per_step = cfg.batch_size * seq_len  # tokens; the bar shows tokens/s and the ETA
    bar = progress(
        total=total * per_step,
        initial=step * per_step,
        desc=f"train {cfg.name}",
        unit="tok",
        unit_scale=True,
        disable=dist.rank != 0,
    )
    with bar:
        while step < total:
            epoch, index = divmod(step, steps_per_epoch)
            rows = _order(cfg.seed, epoch, tokens.shape[0])
            batch = np.sort(rows[index * cfg.batch_size : (index + 1) * cfg.batch_size])
            loss = _step(net, optimizer, schedule, tokens, batch, dist)
            step += 1
            bar.update(len(batch) * seq_len)
            if step % _REPORT_EVERY == 0 or step == total or step % steps_per_epoch == 0:
                value = _global_mean(loss, len(batch) * (seq_len - 1), dist)
                bar.set_postfix_str(f"loss {value:.3f}  step {step}/{total}", refresh=False)
                if step % 50 == 0 or step == total:
                    lr = schedule.get_last_lr()[0]
                    _log(run, dist, {"step": step, "epoch": epoch, "loss": value, "lr": lr})
            if step % steps_per_epoch == 0:
                metrics = evaluate(net, val_tokens, cfg.batch_size, dist)
                _log(run, dist, {"step": step, "epoch": epoch + 1, **metrics})
            if dist.rank == 0 and (step % cfg.checkpoint_every == 0 or step % steps_per_epoch == 0):
                checkpoint.save(
                    run / "checkpoint", step, model, optimizer, schedule, cfg.recorded()
                )
    return _finish(run, data, model, net, val_tokens, cfg, dist)


_REPORT_EVERY = 10  # steps between reading the loss back (a device sync)


def _order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The chunk order of one epoch: a function of (seed, epoch) alone, so resuming
    mid-epoch replays exactly the batches an uninterrupted run sees."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _rows(tokens, rows: np.ndarray, device) -> torch.Tensor:
    ids = torch.from_numpy(np.asarray(tokens[rows]).astype(np.int64))  # (B, T)
    return ids.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else ids


def _step(net, optimizer, schedule, tokens, batch: np.ndarray, dist) -> torch.Tensor:
    """One AdamW step on the mean loss over every (context, next token) of ``batch``.

    Each rank takes rows ``rank::world`` and scales its summed loss by
    world / (global token count); DDP's gradient average then gives exactly the
    single-process mean. A rank left without a row (a short last batch) runs row 0 with
    weight 0, so every rank joins the gradient all-reduce.
    """
    mine, weight = batch[dist.rank :: dist.world], 1.0
    if len(mine) == 0:
        mine, weight = batch[:1], 0.0
    ids = _rows(tokens, mine, dist.device)
    net.train()
    with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=dist.device.type == "cuda"):
        loss_sum, _ = net(ids)
    count = len(batch) * (ids.shape[1] - 1)
    (loss_sum * (weight * dist.world / count)).backward()
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum.detach() * weight


def _global_mean(loss_sum: torch.Tensor, count: int, dist) -> float:
    """The batch's mean loss over all ranks (every rank must call this together)."""
    if dist.world > 1:
        loss_sum = loss_sum.clone()
        torch.distributed.all_reduce(loss_sum)
    return float(loss_sum) / count


@torch.no_grad()
def evaluate(net, tokens, batch_size: int, dist) -> dict:
    """Token-weighted validation loss and top-1 accuracy over every (context, next
    token) pair of the split; under DDP each rank takes a contiguous block of rows."""
    net.eval()
    n = tokens.shape[0]
    lo, hi = n * dist.rank // dist.world, n * (dist.rank + 1) // dist.world
    sums = torch.zeros(3, dtype=torch.float64, device=dist.device)  # loss, hits, count
    for start in range(lo, hi, batch_size):
        ids = _rows(tokens, np.arange(start, min(start + batch_size, hi)), dist.device)
        with torch.autocast(dist.device.type, torch.bfloat16, enabled=dist.device.type == "cuda"):
            loss_sum, hits = net(ids, hits=True)
        sums += torch.stack([loss_sum.double(), hits.double(), sums.new_tensor(ids[:, 1:].numel())])
    if dist.world > 1:
        torch.distributed.all_reduce(sums)
    loss, hits, count = sums.tolist()
    return {
        "val_loss": loss / count,
        "val_acc": hits / count,
        "val_ppl": math.exp(min(loss / count, 700.0)),
        "val_tokens": int(count),
    }


def _finish(run: Path, data: Path, model, net, val_tokens, cfg, dist) -> dict:
    result = evaluate(net, val_tokens, cfg.batch_size, dist)
    if dist.rank:
        return result
    target = run / "model"
    tmp = run / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if (data / "tokenizer").is_dir():
        shutil.copytree(data / "tokenizer", tmp, dirs_exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _log(run, dist, {"final": True, **result})
    write_json(run / "eval.json", result)  # last: its presence marks a finished run
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    return result


def _log(run: Path, dist, record: dict) -> None:
    if dist.rank:
        return
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def _resume(run: Path, cfg, model, optimizer, schedule, dist) -> int:
    found = checkpoint.latest(run / "checkpoint")
    if found is None:
        if (run / "config.json").is_file():
            _check_config(run / "config.json", cfg)
        return 0
    path, state = found
    _check_fields(state["config"], cfg.recorded(), run)
    step = checkpoint.restore(path, state, model, optimizer, schedule)
    log.info("resuming %s at step %d", run, step)
    if dist.rank == 0:
        _trim_log(run / "log.jsonl", step)
    return step


def _trim_log(path: Path, step: int) -> None:
    """Drop the records an interrupted run wrote after its last checkpoint: the resumed
    run writes them again, so the log reads as one uninterrupted run."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [x for x in lines if _record_step(x) <= step]
    if len(kept) != len(lines):
        write_text(path, "".join(kept))


def _record_step(line: str) -> float:
    """A log line's step; a line torn by the kill counts as after every checkpoint."""
    try:
        return json.loads(line).get("step", 0)
    except ValueError:
        return math.inf


def _check_config(path: Path, cfg) -> None:
    recorded = read_json(path, f"{path.parent} is damaged: train into another --out")
    _check_fields(recorded, cfg.recorded(), path.parent)


def _check_fields(before: dict, now: dict, run: Path) -> None:
    """Refuse ``now`` unless every field equals the recorded one; a field that a run made
    before it existed does not record counts as its default (``family``: gpt-neo)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    before = {k: before.get(k, defaults.get(k)) for k in now}
    changed = sorted(k for k in now if before[k] != now[k])
    if changed:
        detail = ", ".join(f"{k}: {before[k]!r} → {now[k]!r}" for k in changed)
        raise UserError(
            f"{run} is a run with another config ({detail}); resume it with "
            "the same options or train into another --out"
        )
