"""Training (Appendix C): teacher-forced cross-entropy, AdamW, linear decay without warm-up.

One seed fixes both the initialisation and the data order (a permutation of the chunks
per epoch). Every ``checkpoint_every`` steps and at each epoch's end the model,
optimizer, scheduler and position go atomically into ``RUN/checkpoint/``; running the
same command after an interruption (even ``kill -9``) resumes there and ends with the
weights an uninterrupted run ends with. The run dir holds ``model/`` (HF format,
safetensors, with the tokenizer), ``config.json`` (the resolved config and the run's
identity), ``log.jsonl`` and ``eval.json`` (token-weighted validation loss and accuracy).
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

from lingcollapse.errors import UserError
from lingcollapse.io import atomic_path, exclusive, write_json
from lingcollapse.models.gpt_neo import TABLE3_BATCH, build_model, check_size, run_name
from lingcollapse.progress import progress

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (recorded in ``config.json``)."""

    data: str
    out: str
    width: int = 64
    depth: int = 1
    epochs: int = 1
    weight_decay: float = 0.0005
    seed: int = 0
    lr: float = 5e-5  # run_clm's default (TrainingArguments.learning_rate)
    batch_size: int | None = None  # None: Table 3's for the paper's sizes, else 16
    checkpoint_every: int = 500  # steps
    allow_any_size: bool = False

    def __post_init__(self) -> None:
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

    @property
    def name(self) -> str:
        return run_name(self.depth, self.width, self.epochs, self.weight_decay, self.seed)

    def recorded(self) -> dict:
        """The fields that must match to resume (paths may move)."""
        return {
            k: v for k, v in asdict(self).items() if k not in ("data", "out", "checkpoint_every")
        }


def _load_split(data: Path, split: str, vocab: int) -> np.ndarray:
    from lingcollapse.collect.data import open_split

    return open_split(data, split, vocab)


def _meta(data: Path) -> dict:
    path = data / "meta.json"
    if not path.is_file():
        raise UserError(
            f"{data} is not a data dir (no meta.json): make one with `lingcollapse data prepare`"
        )
    return json.loads(path.read_text())


def train(cfg: TrainConfig) -> dict:
    """Train one model into ``cfg.out``; returns the final evaluation."""
    run, data = Path(cfg.out), Path(cfg.data)
    meta = _meta(data)
    vocab = int(meta["vocab_size"])
    train_tokens = _load_split(data, "train", vocab)
    val_tokens = _load_split(data, "validation", vocab)
    if (run / "eval.json").is_file():  # finished before: the same config, or refuse
        _check_config(run / "config.json", cfg)
        return json.loads((run / "eval.json").read_text())
    with exclusive(run / "checkpoint", "training run"):
        return _train(cfg, run, data, meta, train_tokens, val_tokens)


def _train(cfg, run: Path, data: Path, meta: dict, tokens, val_tokens) -> dict:
    from lingcollapse.hub import quiet

    quiet()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab, seq_len = int(meta["vocab_size"]), tokens.shape[1]
    model = build_model(
        cfg.width,
        cfg.depth,
        vocab,
        cfg.seed,
        max_positions=seq_len,
        eos_token_id=int(meta.get("eos_token_id", 0)),
        allow_any_size=cfg.allow_any_size,
    ).to(device)
    steps_per_epoch = math.ceil(tokens.shape[0] / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    step = _resume(run, cfg, model, optimizer, schedule)
    write_json(
        run / "config.json",
        {
            **asdict(cfg),
            "model": cfg.name,
            "n_params": model.num_parameters(),
            "vocab_size": vocab,
            "seq_len": seq_len,
        },
    )
    per_step = cfg.batch_size * seq_len  # tokens; the bar shows tokens/s and the ETA
    bar = progress(
        total=total * per_step,
        initial=step * per_step,
        desc=f"train {cfg.name}",
        unit="tok",
        unit_scale=True,
    )
    with bar:
        while step < total:
            epoch, index = divmod(step, steps_per_epoch)
            rows = _order(cfg.seed, epoch, tokens.shape[0])
            batch = rows[index * cfg.batch_size : (index + 1) * cfg.batch_size]
            loss = _step(model, optimizer, schedule, tokens, np.sort(batch), device)
            step += 1
            bar.update(len(batch) * seq_len)
            bar.set_postfix_str(f"loss {loss:.3f}  step {step}/{total}", refresh=False)
            if step % 50 == 0 or step == total:
                _log(
                    run,
                    {"step": step, "epoch": epoch, "loss": loss, "lr": schedule.get_last_lr()[0]},
                )
            if step % cfg.checkpoint_every == 0 or step % steps_per_epoch == 0:
                if step % steps_per_epoch == 0:
                    _log(
                        run,
                        {
                            "step": step,
                            "epoch": epoch + 1,
                            **evaluate(model, val_tokens, cfg.batch_size, device),
                        },
                    )
                _checkpoint(run, cfg, model, optimizer, schedule, step)
    return _finish(run, data, model, val_tokens, cfg, device)


def _order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The chunk order of one epoch: a function of (seed, epoch) alone, so resuming
    mid-epoch replays exactly the batches an uninterrupted run sees."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _step(model, optimizer, schedule, tokens, rows, device) -> float:
    ids = torch.from_numpy(np.asarray(tokens[rows]).astype(np.int64)).to(device)  # (B, T)
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(input_ids=ids).logits  # (B, T, V)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model, tokens, batch_size: int, device) -> dict:
    """Token-weighted validation loss and top-1 accuracy over every (context, next
    token) pair of the split."""
    model.eval()
    loss_sum, hits, count = 0.0, 0, 0
    for start in range(0, tokens.shape[0], batch_size):
        ids = torch.from_numpy(np.asarray(tokens[start : start + batch_size]).astype(np.int64))
        ids = ids.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids).logits[:, :-1].float()  # (B, T−1, V)
        labels = ids[:, 1:]
        loss_sum += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"))
        hits += int((logits.argmax(-1) == labels).sum())
        count += labels.numel()
    loss = loss_sum / count
    return {
        "val_loss": loss,
        "val_acc": hits / count,
        "val_ppl": math.exp(min(loss, 700.0)),
        "val_tokens": count,
    }


def _finish(run: Path, data: Path, model, val_tokens, cfg, device) -> dict:
    result = evaluate(model, val_tokens, cfg.batch_size, device)
    target = run / "model"
    tmp = run / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if (data / "tokenizer").is_dir():
        shutil.copytree(data / "tokenizer", tmp, dirs_exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _log(run, {"final": True, **result})
    write_json(run / "eval.json", result)  # last: its presence marks a finished run
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    return result


def _log(run: Path, record: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


# ------------------------------------------------------------------ checkpoints


def _checkpoint(run: Path, cfg, model, optimizer, schedule, step: int) -> None:
    """Model (safetensors), optimizer and scheduler state, position: written atomically."""
    from safetensors.torch import save_model

    ckpt = run / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt / "model.safetensors") as tmp:
        save_model(model, str(tmp))  # handles the tied input/output embeddings
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, tmp)
    write_json(ckpt / "state.json", {"step": step, "config": cfg.recorded()})


def _resume(run: Path, cfg, model, optimizer, schedule) -> int:
    from safetensors.torch import load_model

    state_path = run / "checkpoint" / "state.json"
    if not state_path.is_file():
        if run.exists() and (run / "config.json").is_file():
            _check_config(run / "config.json", cfg)
        return 0
    state = json.loads(state_path.read_text())
    _check_fields(state["config"], cfg.recorded(), run)
    load_model(model, str(run / "checkpoint" / "model.safetensors"))
    # our own file, never one from outside; weights_only keeps unpickling to tensors
    other = torch.load(run / "checkpoint" / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(other["optimizer"])
    schedule.load_state_dict(other["schedule"])
    log.info("resuming %s at step %d", run, state["step"])
    return int(state["step"])


def _check_config(path: Path, cfg) -> None:
    recorded = json.loads(path.read_text())
    names = {f.name for f in fields(TrainConfig)} - {"data", "out", "checkpoint_every"}
    _check_fields({k: recorded.get(k) for k in names}, cfg.recorded(), path.parent)


def _check_fields(before: dict, now: dict, run: Path) -> None:
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)!r} → {now[k]!r}" for k in changed)
        raise UserError(
            f"{run} is a run with another config ({detail}); resume it with "
            "the same options or train into another --out"
        )
