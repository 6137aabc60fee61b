"""The ``lingcollapse`` command: one entry point, one module per subcommand.

Each subcommand module in :data:`COMMANDS` exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed namespace, returns an exit code).

Every parser is a :class:`Parser`, which adds the habits of the command line in one place:
a "did you mean …?" for a misspelled subcommand, option or choice; each option's default
in its help (:class:`HelpFormatter`); and Hugging Face's spellings of the options that
mean what ours mean (:data:`HF_ALIASES`), with every option also accepted in snake_case
(``--batch_size`` for ``--batch-size``). The aliases are looked up when a command line is
parsed, so they cover whatever options the subcommand modules register.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import re
import sys
import textwrap
import warnings

from lingcollapse import __version__
from lingcollapse.errors import UserError, did_you_mean

# Subcommand modules, in the order of the pipeline.
COMMANDS = [
    "lingcollapse.cli.data",
    "lingcollapse.cli.train",
    "lingcollapse.cli.collect",
    "lingcollapse.cli.stats",
    "lingcollapse.cli.measure",
    "lingcollapse.cli.analyze",
    "lingcollapse.cli.inspect",
    "lingcollapse.cli.report",
    "lingcollapse.cli.sweep",
]


# Hugging Face's spellings (TrainingArguments, run_clm.py's arguments, from_pretrained's
# keywords) of options that mean exactly what ours mean, by subcommand. Names that are
# ours in snake_case need no entry (--weight_decay, --warmup_steps, --max_grad_norm,
# --seed, --report_to, --logging_steps, --eval_steps, --revision, --trust_remote_code …):
# every option is accepted so. Each spelling is also accepted with dashes, as
# HfArgumentParser accepts it (--learning-rate).
HF_ALIASES: dict[str, dict[str, str]] = {
    "train": {
        "--output_dir": "--out",  # checkpoints and the final model, as the Trainer's
        "--learning_rate": "--lr",  # the peak of the linear decay, as the Trainer's
        "--num_train_epochs": "--epochs",  # whole epochs here (the Trainer's may be 2.5)
        "--model_name_or_path": "--init",  # run_clm: the weights to start from
        "--save_steps": "--checkpoint-every",  # optimizer steps between checkpoints
    },
    "data prepare": {
        "--block_size": "--seq-len",  # run_clm's chunk length T of group_texts
        "--preprocessing_num_workers": "--num-proc",  # run_clm's shards of the map
        "--tokenizer_name": "--tokenizer",  # run_clm: an existing tokenizer
    },
    "collect": {
        "--torch_dtype": "--dtype",  # from_pretrained's name before transformers 4.56
        "--per_device_eval_batch_size": "--batch-size",  # each rank's forward pass
    },
}
# Hugging Face spellings that look like ours but mean something else: refused with why.
HF_DIFFERENT: dict[str, dict[str, str]] = {
    "train": {
        "--per_device_train_batch_size": "our --batch-size is the global batch of a step "
        "(all GPUs together), not each GPU's: give --batch-size (per-GPU size × GPUs)",
        "--torch_compile": "give --compile on|off|auto (auto: on CUDA)",
    },
    "data prepare": {
        "--validation_split_percentage": "our --validation-fraction is a fraction (0.05), "
        "not a percentage (5)",
        "--dataset_name": "give --corpus tinystories (roneneldan/TinyStories, as the paper) "
        "or --corpus PATH for a local corpus",
    },
}
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # a negative number is a value, not an option


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with every option's default: ``(default: X)`` is appended where an
    option has one (not None, not a flag's False) and its help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _has_default(action) and not _says_default(text, action.default):
            text = f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def _has_default(action: argparse.Action) -> bool:
    """Whether ``action`` has a default worth showing: a value it takes when not given."""
    if action.help == argparse.SUPPRESS or action.nargs == 0:  # flags, --help, --version
        return False
    if not action.option_strings and action.nargs not in ("?", "*"):
        return False  # a required positional
    return action.default not in (None, argparse.SUPPRESS, "") and action.default != []


def _says_default(text: str, default) -> bool:
    """Whether a hand-written help already names the default (``… (default 1024)``)."""
    return "%(default)" in text or (
        re.search(r"\bdefault\b", text) is not None and str(default) in text
    )


@functools.cache
def _with_defaults(formatter_class: type) -> type:
    """``formatter_class`` (e.g. RawDescriptionHelpFormatter) that also shows defaults."""
    if issubclass(formatter_class, HelpFormatter):
        return formatter_class
    return type(f"Defaults{formatter_class.__name__}", (HelpFormatter, formatter_class), {})


class Parser(argparse.ArgumentParser):
    """argparse with the project's error form: one ``error: …`` line, exit 2. Bad usage
    is a :class:`UserError`, so a command line that a sweep builds fails the same way.

    Every parser is strict: an unknown option is an error of the (sub)command it was
    given to, with a "did you mean …?" from that command's options, not a leftover
    reported by the top-level parser. Hugging Face and snake_case spellings of options
    are rewritten to ours before parsing (:meth:`ours`).
    """

    def __init__(self, *args, formatter_class: type = HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=_with_defaults(formatter_class), **kwargs)

    @property
    def command(self) -> str:
        """``train``, ``data prepare`` …: the subcommand path, the key of the alias tables."""
        return self.prog.partition(" ")[2]

    def error(self, message: str):
        if message.startswith("the following arguments are required"):
            # a misspelled required option shows as missing: name the misspelling first
            unknown = self._unknown_options(getattr(self, "_argv", []))
            if unknown:
                message = f"{self._unknown_message(unknown[0])} ({message})"
        raise UserError(f"{message} (see `{self.prog} --help`)")

    def parse_known_args(self, args=None, namespace=None):
        self._argv = self.ours(sys.argv[1:] if args is None else list(args))
        namespace, extras = super().parse_known_args(self._argv, namespace)
        if extras:
            unknown = self._unknown_options(extras)
            self.error(
                self._unknown_message(unknown[0])
                if unknown
                else f"unrecognized arguments: {' '.join(extras)}"
            )
        return namespace, extras

    def _check_value(self, action: argparse.Action, value) -> None:
        """argparse's check of ``choices``, with a "did you mean …?"."""
        if action.choices is None or value in action.choices:
            return
        hint = did_you_mean(str(value), [str(c) for c in action.choices])
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(None, f"unknown command {value!r}{hint}")
        known = ", ".join(str(c) for c in action.choices)
        raise argparse.ArgumentError(action, f"invalid choice {value!r}{hint} (one of {known})")

    def aliases(self) -> dict[str, str]:
        """Accepted spellings → our option: each option of this parser in snake_case, and
        Hugging Face's names (:data:`HF_ALIASES`) of the options it has, all snake_case."""
        ours = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        found = {_snake(o): o for o in ours if _snake(o) != o}
        table = HF_ALIASES.get(self.command, {})
        found.update({_snake(hf): o for hf, o in table.items() if o in ours})
        return found

    def ours(self, args: list[str]) -> list[str]:
        """``args`` with accepted spellings of this parser's options replaced by ours
        (``--learning_rate=1e-3`` → ``--lr=1e-3``); the rest as given. Up to ``--``."""
        aliases, refused = self.aliases(), HF_DIFFERENT.get(self.command, {})
        out = list(args)
        for i, arg in enumerate(args):
            if arg == "--":
                break
            name, eq, value = arg.partition("=")
            if not name.startswith("--") or name in self._option_string_actions:
                continue
            if _snake(name) in aliases:
                out[i] = aliases[_snake(name)] + eq + value
            elif _snake(name) in refused:
                self.error(f"{name} is not an option of `{self.prog}`: {refused[_snake(name)]}")
        return out

    def _unknown_options(self, args: list[str]) -> list[str]:
        """The option-like strings of ``args`` that name no option of this parser (nor an
        abbreviation of one, which argparse accepts)."""
        known = self._option_string_actions
        unknown = []
        for arg in args:
            if arg == "--":
                break
            name = arg.partition("=")[0]
            if not name.startswith("-") or name == "-" or _NUMBER.match(name):
                continue
            if not any(option.startswith(name) for option in known):
                unknown.append(name)
        return unknown

    def _unknown_message(self, name: str) -> str:
        visible = [o for a in self._actions for o in a.option_strings]
        return f"unknown option {name!r}{did_you_mean(name, [*visible, *self.aliases()])}"

    def format_help(self) -> str:
        """argparse's help, then one line on the other spellings this parser accepts."""
        note = self._aliases_note()
        if not note:
            return super().format_help()
        epilog = self.epilog
        self.epilog = f"{epilog}\n\n{note}" if epilog else note
        try:
            return super().format_help()
        finally:
            self.epilog = epilog

    def _aliases_note(self) -> str:
        """One paragraph on the spellings :meth:`aliases` accepts ("" when none)."""
        aliases = self.aliases()
        snake = [name for name, ours in aliases.items() if name == _snake(ours)]
        hf = [f"{name} ({ours})" for name, ours in aliases.items() if name != _snake(ours)]
        parts = [f"each option in snake_case ({snake[0]} for {aliases[snake[0]]})"] if snake else []
        parts += [", ".join(hf)] if hf else []
        if not parts:
            return ""
        text = f"Hugging Face's spellings are accepted too: {', and '.join(parts)}."
        return textwrap.fill(text, width=88)


def _snake(option: str) -> str:
    """``--batch-size`` → ``--batch_size`` (the leading dashes kept)."""
    return "--" + option[2:].replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lingcollapse",
        description="Neural collapse in (large) language models: data → train → collect "
        "→ measure → analyze.",
    )
    parser.add_argument("--version", action="version", version=f"lingcollapse {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version
        return int(exit_.code or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # libraries' own DEBUG loggers stay quiet
        handler.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # libraries' notices to their own developers, not to our users
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.")
            return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
