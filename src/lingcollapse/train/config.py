"""What one training run is: :class:`TrainConfig`, checked in one place, recorded whole.

Defaults are the paper's recipe, i.e. ``run_clm.py``'s ``TrainingArguments`` defaults
(learning rate 5e-5, seed 42, gradient clipping at 1.0, no warm-up; Appendix C) and the
architecture of Table 2 (GPT-Neo) at Table 3's batch size. With ``init`` the model's
architecture (width, depth, family) comes from that Hugging Face model instead; a flag
that disagrees with it is an error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from lingcollapse.errors import UserError
from lingcollapse.models import ids, registry
from lingcollapse.models.gpt_neo import TABLE3_BATCH, check_size
from lingcollapse.train.tracking import parse_report_to

# What may differ between a run and its resumption: paths move, and the device,
# kernels and world size change only the rounding. What is logged, how often and
# where is no part of the recipe either.
REPORTING = ("report_to", "logging_steps", "eval_steps")
RUNTIME = (
    "data", "out", "init", "checkpoint_every", "device", "attention", "compile", *REPORTING
)  # fmt: skip
DEFAULT_LOGGING_STEPS = 50  # the Trainer's is 500: too few points for a short run's curve
# The recipe's version. Runs that predate the field decayed every parameter and never
# clipped: they cannot be resumed under the Trainer's recipe.
RECIPE = "hf-trainer"
DEFAULT_WIDTH, DEFAULT_DEPTH, DEFAULT_FAMILY = 64, 1, "gpt-neo"
PREDATES = {"recipe": "decay-all-no-clip", "max_grad_norm": 0.0, "family": DEFAULT_FAMILY}


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (recorded in ``config.json``)."""

    data: str
    out: str
    family: str | None = None  # gpt-neo (the paper's); with init: the model's
    width: int | None = None  # 64; with init: the model's
    depth: int | None = None  # 1; with init: the model's
    epochs: int = 1
    weight_decay: float = 0.0005
    seed: int = ids.DEFAULT_SEED  # TrainingArguments.seed: initialisation and data order
    lr: float = 5e-5  # TrainingArguments.learning_rate
    batch_size: int | None = None  # None: Table 3's for the paper's sizes, else 16
    max_grad_norm: float = 1.0  # TrainingArguments.max_grad_norm; 0: no clipping
    warmup_steps: int = 0  # TrainingArguments.warmup_steps
    save_epochs: str | list[int] | None = None  # "all", "1,3,6" or a list; epochs from 1
    init: str | None = None  # a Hugging Face model (dir or hub id) to start from
    checkpoint_every: int = 500  # steps
    allow_any_size: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: the rank's GPU)
    attention: str = "sdpa"  # sdpa (fused, same function) | eager (Hugging Face's own)
    compile: str = "auto"  # torch.compile: auto (on CUDA) | on | off
    report_to: str | list[str] | None = None  # none | tensorboard, wandb, mlflow (several)
    logging_steps: int | float = DEFAULT_LOGGING_STEPS  # < 1: that share of the steps
    eval_steps: int | float | None = None  # also evaluate every N steps (None: epoch ends)

    def __post_init__(self) -> None:
        if self.init is not None:
            self._take_architecture_from_init()
        else:
            self.family = registry.family(self.family or DEFAULT_FAMILY).name
            self.width = DEFAULT_WIDTH if self.width is None else self.width
            self.depth = DEFAULT_DEPTH if self.depth is None else self.depth
            check_size(self.width, self.depth, self.allow_any_size)
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, not {self.epochs}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, not {self.lr}")
        for name in ("weight_decay", "max_grad_norm", "warmup_steps"):
            if not getattr(self, name) >= 0:  # also NaN
                flag = name.replace("_", "-")
                raise UserError(f"--{flag} must be ≥ 0, not {getattr(self, name)}")
        if self.batch_size is None:
            self.batch_size = TABLE3_BATCH.get(self.depth, {}).get(self.width, 16)
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise UserError("--batch-size and --checkpoint-every must be at least 1")
        for name, allowed in (("attention", ("sdpa", "eager")), ("compile", ("auto", "on", "off"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name} must be one of {', '.join(allowed)}")
        self.save_epochs = parse_epochs(self.save_epochs, self.epochs)
        self.report_to = parse_report_to(self.report_to)
        for name in ("logging_steps", "eval_steps"):
            check_interval(name, getattr(self, name), optional=name == "eval_steps")

    def every(self, name: str, total: int) -> int | None:
        """``logging_steps`` or ``eval_steps`` in steps of a run of ``total`` steps (the
        Trainer's reading: a value below 1 is that share of them, rounded up)."""
        value = getattr(self, name)
        if value is None:
            return None
        return max(1, math.ceil(value * total)) if value < 1 else int(value)

    def _take_architecture_from_init(self) -> None:
        """Width, depth and family of the ``init`` model; an explicit flag must agree."""
        config = init_config(self.init)
        found = {
            "family": registry.family_of(config),
            "width": _config_int(config, "hidden_size", self.init),
            "depth": _config_int(config, "num_hidden_layers", self.init),
        }
        if self.family is not None:
            self.family = registry.resolve_name(self.family)
        differ = [k for k, v in found.items() if getattr(self, k) not in (None, v)]
        if differ:
            detail = ", ".join(
                f"--{k} {getattr(self, k)} but the model's is {found[k]}" for k in differ
            )
            raise UserError(
                f"--init {self.init} fixes the architecture ({detail}): drop those flags"
            )
        self.family, self.width, self.depth = found["family"], found["width"], found["depth"]

    def recorded(self) -> dict:
        """The fields that must match to resume: those that decide the weights, and the
        epochs kept as models (a resumed run cannot keep an epoch it has passed)."""
        kept = {k: v for k, v in asdict(self).items() if k not in RUNTIME}
        return {**kept, "recipe": RECIPE}

    def names(self, corpus: str) -> tuple[str, str]:
        """The run's name and its final model's id (:mod:`lingcollapse.models.ids`)."""
        args = (self.depth, self.width, self.epochs, self.weight_decay, self.seed)
        run = ids.run_name(*args, family=self.family, corpus=corpus)
        return run, ids.model_id(*args, self.epochs, family=self.family)


def check_interval(name: str, value, optional: bool = False) -> None:
    """``--logging-steps`` / ``--eval-steps``: a whole number of steps ≥ 1, or a share
    of the run's steps in (0, 1), as ``TrainingArguments`` takes them."""
    if value is None and optional:
        return
    flag = "--" + name.replace("_", "-")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (0 < value < 1 or (value >= 1 and float(value).is_integer())):
        raise UserError(
            f"{flag} must be a whole number of steps ≥ 1 or a share of the run's steps "
            f"in (0, 1), not {value!r}"
        )


def init_config(source: str):
    """The ``--init`` model's config; a model that is not a causal LM is refused here,
    before anything is loaded or written."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from lingcollapse.hub import load_pretrained

    config = load_pretrained(AutoConfig.from_pretrained, source, "--init model config")
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(
            f"--init {source} is a {config.model_type!r} model, not a causal LM: give a "
            "model that AutoModelForCausalLM loads (GPT-Neo, GPT-2, Llama, …)"
        )
    return config


def _config_int(config, key: str, source: str) -> int:
    value = getattr(config, key, None)
    if not isinstance(value, int) or value < 1:
        raise UserError(f"--init {source}: its config has no {key}; is it a causal LM?")
    return value


def parse_epochs(spec: str | list[int] | None, epochs: int) -> list[int]:
    """``--save-epochs``: ``all``, ``1,3,6`` (or a list), each in 1 … ``epochs``."""
    if spec is None or spec == "" or spec == []:
        return []
    if spec == "all":
        return list(range(1, epochs + 1))
    parts = spec.split(",") if isinstance(spec, str) else spec
    values = []
    for part in parts:
        try:
            value = int(str(part).strip())
        except ValueError:
            raise UserError(
                f"--save-epochs: {part!r} is not an epoch number (give e.g. 1,3,6 or all)"
            ) from None
        if not 1 <= value <= epochs:
            raise UserError(
                f"--save-epochs: epoch {value} is out of range: the run trains "
                f"{epochs} epoch(s), counted from 1"
            )
        values.append(value)
    return sorted(set(values))


def check_fields(before: dict, now: dict, run) -> None:
    """Refuse ``now`` unless every field equals the recorded one. A field a run made
    before it existed counts as its default (``family``: gpt-neo), except the recipe's:
    those runs were trained another way (:data:`PREDATES`)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    defaults.update(PREDATES)
    before = {k: before.get(k, defaults.get(k)) for k in now}
    changed = sorted(k for k in now if before[k] != now[k])
    if changed:
        detail = ", ".join(f"{k}: {before[k]!r} → {now[k]!r}" for k in changed)
        raise UserError(
            f"{run} is a run with another config ({detail}); resume it with "
            "the same options or train into another --out"
        )
