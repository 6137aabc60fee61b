"""Training (Appendix C): teacher-forced cross-entropy with the ``Trainer``'s recipe.

The optimizer, schedule and clipping are those of ``transformers.Trainer`` with default
``TrainingArguments``, as the paper's ``run_clm.py`` ran them (:mod:`.optim`). One seed
fixes both the initialisation and the data order (a permutation of the chunks per
epoch); ``init`` starts from a Hugging Face model's weights instead. Every
``checkpoint_every`` steps and at each epoch's end the model, optimizer, scheduler and
position go atomically into ``RUN/checkpoint/``; running the same command after an
interruption (even ``kill -9``) resumes there and ends with the weights an
uninterrupted run ends with. The run dir holds ``model/`` (a Hugging Face model dir,
:mod:`lingcollapse.models.saved`), ``config.json`` (the resolved config, the recipe and
the run's identity), ``log.jsonl`` and ``eval.json`` (token-weighted validation loss and
accuracy); with ``save_epochs``, ``epoch-E/`` keeps the model after epoch E, a model dir
with its own ``eval.json``.

``log.jsonl`` has a row every ``logging_steps`` (the mean loss of the steps since the
row before, the learning rate, the gradient norm before clipping, tokens/s) and one per
evaluation (at each epoch's end and every ``eval_steps``), each with its ``step`` and
its ``epoch`` as a fraction (step / steps per epoch, as the Trainer logs it: the
evaluation at the end of epoch 1 is at epoch 1.0); the same values go to the
``report_to`` backends (:mod:`.tracking`).

Speed without changing the function: GPT-Neo's attention runs through SDPA
(:mod:`lingcollapse.models.attention`), the LM head and the float32 cross-entropy sit in
one module that ``torch.compile`` fuses on CUDA, AdamW is fused, and the loss and the
gradient norm are read back only at logging steps. Under ``torchrun`` (or ``accelerate
launch``) each rank trains on its share of every batch with DDP; the gradient is the
single-process one.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lingcollapse.device import Dist, finish, setup
from lingcollapse.errors import UserError
from lingcollapse.io import exclusive, file_sha256, read_json, to_json, write_json, write_text
from lingcollapse.models import ids, registry
from lingcollapse.models.attention import use_sdpa
from lingcollapse.models.saved import write_model_dir
from lingcollapse.progress import progress
from lingcollapse.train import checkpoint, optim, tracking
from lingcollapse.train.config import TrainConfig, check_fields, init_config

log = logging.getLogger(__name__)
__all__ = ["TrainConfig", "evaluate", "train"]


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


@dataclass
class _Run:
    """One training run: its config, where it reads and writes, and its names."""

    cfg: TrainConfig
    dir: Path
    data: Path
    meta: dict
    dist: Dist
    init_sha256: str | None = None  # of the --init model's weights, once loaded

    @property
    def corpus(self) -> str:
        return ids.corpus_label(self.meta.get("source"))

    @property
    def name(self) -> str:
        return self.cfg.names(self.corpus)[0]

    def recorded(self) -> dict:
        """What must match to resume (the init's weights too, when there is one)."""
        extra = {"init_sha256": self.init_sha256} if self.init_sha256 else {}
        return {**self.cfg.recorded(), **extra}

    def identity(self, epoch: int, n_params: int) -> dict:
        """Who the model after ``epoch`` is: the authors'-style id and what it encodes."""
        cfg = self.cfg
        run_name, _ = cfg.names(self.corpus)
        args = (cfg.depth, cfg.width, cfg.epochs, cfg.weight_decay, cfg.seed, epoch)
        return {
            "model": ids.model_id(*args, family=cfg.family),
            "run": run_name,
            "epoch": epoch,
            "epochs": epoch,  # trained when measured (the results tables' column)
            "schedule_epochs": cfg.epochs,
            "checkpoint": epoch - 1,  # the authors' k
            "family": cfg.family,
            "width": cfg.width,
            "depth": cfg.depth,
            "n_params": n_params,
            "weight_decay": cfg.weight_decay,
            "seed": cfg.seed,
            "lr": cfg.lr,
            "corpus": self.corpus,
            "data_sha256": file_sha256(self.data / "meta.json"),
            **({"init_sha256": self.init_sha256} if self.init_sha256 else {}),
        }


def train(cfg: TrainConfig) -> dict:
    """Train one model into ``cfg.out``; returns the final evaluation.

    Under ``torchrun`` every rank runs this: each takes its share of every batch (DDP),
    rank 0 writes the run dir.
    """
    run, data = Path(cfg.out), Path(cfg.data)
    meta = _meta(data)
    if (run / "eval.json").is_file():  # finished before: the same config, or refuse
        _check_finished(run, cfg)
        return read_json(run / "eval.json", f"delete it to evaluate {run} again")
    vocab = int(meta["vocab_size"])  # the splits are hashed and checked: only when training
    tokens = _load_split(data, "train", vocab)
    val_tokens = _load_split(data, "validation", vocab)
    if cfg.init is not None:
        _check_init_fits(cfg.init, vocab, tokens.shape[1])
    job = _Run(cfg, run, data, meta, setup(cfg.device))
    try:
        if job.dist.rank:
            return _train(job, tokens, val_tokens)
        with exclusive(run / "checkpoint", "training run"):
            return _train(job, tokens, val_tokens)
    finally:
        finish(job.dist)


class _Objective(torch.nn.Module):
    """Summed next-token cross-entropy (and top-1 hits) of a causal LM on (B, T) ids.

    The LM head runs on the T−1 positions that have a next token, in one module, so
    ``torch.compile`` fuses the float32 log-softmax instead of materialising (B, T, V)
    float32 logits, and DDP sees a single forward. A model that transforms ``W h + b``
    before its softmax (Gemma-2's soft-capping, Cohere's and Granite's scales, from an
    ``--init`` model) is trained on its own loss: the transform is applied here too.
    """

    def __init__(self, model):
        from lingcollapse.metrics.classifier import logit_transform

        super().__init__()
        self.model = model
        self.transform = logit_transform(model)

    def forward(self, ids, hits: bool = False):  # (B, T) → (), () or None
        hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        logits = self.model.get_output_embeddings()(hidden[:, :-1]).float()  # (B, T−1, V)
        if not self.transform.identity:
            logits = self.transform(logits)
        labels = ids[:, 1:]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
        # top-1 only for evaluation: an argmax over V is a whole extra pass over the logits
        return loss, (logits.argmax(-1) == labels).sum() if hits else None


def _model(job: _Run, seq_len: int):
    """A fresh model of the config's family and size, or the ``--init`` model; on the
    run's device, with the asked-for attention."""
    cfg = job.cfg
    eager = cfg.attention == "eager"
    if cfg.init is None:
        attn = (
            {} if cfg.family == "gpt-neo" else {"attn_implementation": "eager" if eager else "sdpa"}
        )
        model = registry.build(
            cfg.family,
            cfg.width,
            cfg.depth,
            int(job.meta["vocab_size"]),
            cfg.seed,
            max_positions=seq_len,
            eos_token_id=int(job.meta.get("eos_token_id", 0)),
            allow_any_size=cfg.allow_any_size,
            **attn,
        )
    else:
        model = _load_init(job)
    model.to(job.dist.device)
    if cfg.family == "gpt-neo" and not eager:
        use_sdpa(model)
    return model


def _check_init_fits(source: str, data_vocab: int, seq_len: int) -> None:
    """The ``--init`` model must embed every token id and position of the data: checked
    from its config, before anything is written."""
    config = init_config(source)
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab < data_vocab:
        raise UserError(
            f"--init {source} has a vocabulary of {vocab:,} tokens but the data's tokenizer "
            f"has {data_vocab:,}: prepare the data with the model's tokenizer "
            f"(`lingcollapse data prepare --tokenizer {source}`)"
        )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions < seq_len:
        raise UserError(
            f"--init {source} takes at most {positions:,} positions but the data's "
            f"sequences have {seq_len:,}: prepare the data with --seq-len {positions}"
        )


def _load_init(job: _Run):
    """The ``--init`` model in float32, its weights hashed (recorded, and compared when
    the run resumes)."""
    from transformers import AutoModelForCausalLM

    from lingcollapse.hub import load_pretrained
    from lingcollapse.stats.files import tensors_sha256

    cfg = job.cfg
    kwargs = {"dtype": torch.float32}
    if cfg.family != "gpt-neo":  # GPT-Neo has only eager attention (SDPA is ours, below)
        kwargs["attn_implementation"] = "eager" if cfg.attention == "eager" else "sdpa"
    model = load_pretrained(
        AutoModelForCausalLM.from_pretrained, cfg.init, "--init model", **kwargs
    )
    job.init_sha256 = tensors_sha256(dict(model.state_dict()))
    return model


def _wrap(job: _Run, model):
    """The objective, under DDP across ranks, compiled where that pays."""
    net = _Objective(model)
    dist = job.dist
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        devices = [dist.device.index] if dist.device.type == "cuda" else None
        net = DistributedDataParallel(net, device_ids=devices)
    compiled = job.cfg.compile == "on" or (job.cfg.compile == "auto" and dist.device.type == "cuda")
    return torch.compile(net) if compiled else net


def _train(job: _Run, tokens, val_tokens) -> dict:
    from lingcollapse.hub import quiet

    quiet()
    cfg, run, dist = job.cfg, job.dir, job.dist
    seq_len = tokens.shape[1]
    model = _model(job, seq_len)
    net = _wrap(job, model)
    steps_per_epoch = math.ceil(tokens.shape[0] / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = optim.adamw(model, cfg.lr, cfg.weight_decay)
    schedule = optim.linear_schedule(optimizer, cfg.warmup_steps, total)
    step, window = _resume(job, model, optimizer, schedule)
    if dist.rank == 0:
        _write_config(job, model, seq_len, steps_per_epoch)
    reporters = tracking.Reporters(cfg.report_to if dist.rank == 0 else [], run, job.name, step)
    try:
        reporters.config(_reported_config(job, model, seq_len, steps_per_epoch))
        loop = _Loop(job, model, net, optimizer, schedule, steps_per_epoch, reporters)
        evaluation = loop.run(step, tokens, val_tokens, tracking.Meter(dist.device, window))
        result = _finish(job, model, net, val_tokens, evaluation, loop.total)
    except BaseException:
        reporters.finish(failed=True)
        raise
    reporters.finish()
    return result


@dataclass
class _Loop:
    """The training loop's parts, and what it does at a step's end: log (every
    ``logging_steps``), evaluate (at epoch ends and every ``eval_steps``), checkpoint."""

    job: _Run
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    steps_per_epoch: int
    reporters: tracking.Reporters

    @property
    def total(self) -> int:
        return self.steps_per_epoch * self.job.cfg.epochs

    def run(self, step: int, tokens, val_tokens, meter: tracking.Meter) -> dict | None:
        """Train from ``step`` to the end; returns the last epoch's evaluation (``None``
        when the run resumed after it)."""
        cfg, dist, total = self.job.cfg, self.job.dist, self.total
        seq_len = tokens.shape[1]
        logging_steps = cfg.every("logging_steps", total)
        eval_steps = cfg.every("eval_steps", total)
        per_step = cfg.batch_size * seq_len  # tokens; the bar shows tokens/s and the ETA
        bar = progress(
            total=total * per_step,
            initial=step * per_step,
            desc=f"train {self.job.name}",
            unit="tok",
            unit_scale=True,
            disable=dist.rank != 0,
        )
        evaluation = None
        with bar:
            while step < total:
                epoch, index = divmod(step, self.steps_per_epoch)
                rows = epoch_order(cfg.seed, epoch, tokens.shape[0])
                batch = np.sort(rows[index * cfg.batch_size : (index + 1) * cfg.batch_size])
                logs = (step + 1) % logging_steps == 0 or step + 1 == total
                loss, norm = _step(self.net, self.model, self.optimizer, self.schedule, tokens,
                                   batch, cfg.max_grad_norm, dist, norm=logs)  # fmt: skip
                step += 1
                meter.add(loss / (len(batch) * (seq_len - 1)), len(batch) * seq_len)
                bar.update(len(batch) * seq_len)
                if logs:
                    row = self._log_training(step, meter, norm)
                    bar.set_postfix_str(f"loss {row['loss']:.3f}  step {step}/{total}")
                ends_epoch = step % self.steps_per_epoch == 0
                if ends_epoch or (eval_steps and step % eval_steps == 0):
                    with meter.paused():
                        found = self._evaluate(step, val_tokens, ends_epoch)
                    evaluation = found if ends_epoch else evaluation
                if step % cfg.checkpoint_every == 0 or ends_epoch:
                    with meter.paused():
                        self._checkpoint(step, meter)
        return evaluation

    def _log_training(self, step: int, meter: tracking.Meter, norm) -> dict:
        """A training row: the window's mean loss and throughput, the learning rate and
        gradient norm after this step, the epoch as a fraction (every rank calls it)."""
        row = {"step": step, "epoch": step / self.steps_per_epoch, **meter.read(self.job.dist)}
        row["lr"] = self.schedule.get_last_lr()[0]
        if norm is not None:
            row["grad_norm"] = float(norm)
        self._log(row)
        return row

    def _evaluate(self, step: int, val_tokens, ends_epoch: bool) -> dict:
        """Evaluate; at an epoch's end, keep the model as ``epoch-E/`` when asked. Before
        the training checkpoint: a run killed between the two redoes the epoch's end and
        writes the same dir again."""
        job, model = self.job, self.model
        evaluation = evaluate(self.net, val_tokens, job.cfg.batch_size, job.dist)
        self._log({"step": step, "epoch": step / self.steps_per_epoch, **evaluation})
        epoch = step // self.steps_per_epoch  # names the epoch dir
        if ends_epoch and epoch in job.cfg.save_epochs and job.dist.rank == 0:
            identity = job.identity(epoch, model.num_parameters())
            where = job.dir / f"epoch-{epoch}"
            write_model_dir(where, model, _tokenizer(job), evaluation, identity)
        return evaluation

    def _checkpoint(self, step: int, meter: tracking.Meter) -> None:
        window = meter.state(self.job.dist)  # every rank: the ranks' sums meet on rank 0
        if self.job.dist.rank == 0:
            checkpoint.save(
                self.job.dir / "checkpoint", step, self.model, self.optimizer, self.schedule,
                self.job.recorded(), extra={"log_window": window},
            )  # fmt: skip

    def _log(self, row: dict) -> None:
        """Into ``log.jsonl`` and to the ``--report-to`` backends (rank 0)."""
        _log(self.job.dir, self.job.dist, row)
        self.reporters.log(tracking.scalars(row), row["step"])


def _tokenizer(job: _Run) -> Path | None:
    path = job.data / "tokenizer"
    return path if path.is_dir() else None


def _write_config(job: _Run, model, seq_len: int, steps_per_epoch: int) -> None:
    """``config.json``: the resolved config, the recipe in force, and the run's names."""
    run_name, final = job.cfg.names(job.corpus)
    write_json(
        job.dir / "config.json",
        {
            **asdict(job.cfg),
            **job.recorded(),
            "run": run_name,
            "model": final,
            "n_params": model.num_parameters(),
            "vocab_size": int(job.meta["vocab_size"]),
            "seq_len": seq_len,
            "steps_per_epoch": steps_per_epoch,
            "world_size": job.dist.world,
            "optimizer": {
                "name": "adamw_torch_fused",
                "betas": list(optim.BETAS),
                "eps": optim.EPS,
                "schedule": "linear",
                "undecayed": optim.undecayed_names(model),
            },
        },
    )


def _reported_config(job: _Run, model, seq_len: int, steps_per_epoch: int) -> dict:
    """What the backends record of the run: what decides its weights and its names
    (the same when it resumes, whatever else changed)."""
    run_name, final = job.cfg.names(job.corpus)
    return {
        **job.recorded(),
        "run": run_name,
        "model": final,
        "n_params": model.num_parameters(),
        "seq_len": seq_len,
        "steps_per_epoch": steps_per_epoch,
    }


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The chunk order of one epoch: a function of (seed, epoch) alone, so resuming
    mid-epoch replays exactly the batches an uninterrupted run sees."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def _rows(tokens, rows: np.ndarray, device) -> torch.Tensor:
    ids = torch.from_numpy(np.asarray(tokens[rows]).astype(np.int64))  # (B, T)
    return ids.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else ids


def _step(
    net, model, optimizer, schedule, tokens, batch: np.ndarray, max_grad_norm: float, dist,
    norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """One AdamW step on the mean loss over every (context, next token) of ``batch``,
    its global gradient norm clipped first (the Trainer's order: clip, step, schedule).
    Returns this rank's summed loss and the global gradient norm before clipping (a
    device tensor, not read back here: no sync), which clipping computes anyway; without
    clipping it is computed only when ``norm`` asks for it (a logging step).

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
    total_norm = optim.clip_gradients(model, max_grad_norm)  # DDP has all-reduced: global
    if total_norm is None and norm:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        total_norm = torch.nn.utils.get_total_norm(grads)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum.detach() * weight, total_norm


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


def _finish(job: _Run, model, net, val_tokens, evaluation: dict | None, total: int) -> dict:
    """Write ``model/`` and ``eval.json`` (last: its presence marks a finished run).
    ``evaluation`` is the last epoch's, unless a resumed run has not made it yet; the
    log's last row repeats it (``final``), at the last of the ``total`` steps."""
    cfg, run, dist = job.cfg, job.dir, job.dist
    result = evaluation or evaluate(net, val_tokens, cfg.batch_size, dist)
    if dist.rank:
        return result
    identity = job.identity(cfg.epochs, model.num_parameters())
    write_model_dir(run / "model", model, _tokenizer(job), result, identity)
    _log(run, dist, {"step": total, "epoch": float(cfg.epochs), "final": True, **result})
    write_json(run / "eval.json", result)
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    return result


def _log(run: Path, dist, record: dict) -> None:
    if dist.rank:
        return
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "log.jsonl", "a") as f:
        f.write(to_json({"time": round(time.time(), 3), **record}) + "\n")


def _resume(job: _Run, model, optimizer, schedule) -> tuple[int, dict | None]:
    """The step to start from, and the loss window open at that checkpoint."""
    run = job.dir
    found = checkpoint.latest(run / "checkpoint")
    if found is None:
        if (run / "config.json").is_file():
            _check_config(run / "config.json", job.recorded())
        return 0, None
    path, state = found
    check_fields(state["config"], job.recorded(), run)
    step = checkpoint.restore(path, state, model, optimizer, schedule)
    log.info("resuming %s at step %d", run, step)
    if job.dist.rank == 0:
        _trim_log(run / "log.jsonl", step)
    window = state.get("extra", {}).get("log_window")
    if window and job.dist.rank:  # the window's loss is whole on rank 0
        window = {**window, "loss": 0.0}
    return step, window


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
    """A log line's step; the final row (written again when the run finishes) and a line
    torn by the kill count as after every checkpoint."""
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf
    return math.inf if record.get("final") else record.get("step", 0)


def _check_config(path: Path, now: dict) -> None:
    recorded = read_json(path, f"{path.parent} is damaged: train into another --out")
    check_fields(recorded, now, path.parent)


def _check_finished(run: Path, cfg: TrainConfig) -> None:
    """A finished run answers for the same config (its init's weights are not hashed
    again), and must hold every epoch model asked for."""
    _check_config(run / "config.json", cfg.recorded())
    for epoch in cfg.save_epochs:
        if not (run / f"epoch-{epoch}" / "eval.json").is_file():
            raise UserError(
                f"{run} is finished but its model after epoch {epoch} ({run}/epoch-{epoch}) "
                "is gone: train the run again into another --out"
            )
