"""The habits of the command line: "did you mean …?", defaults in every help, Hugging Face
spellings, a run dir wherever its stats are meant, and offline detection through
huggingface_hub (its offline mode, its endpoint, its session and so its proxies)."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from lingcollapse import hub
from lingcollapse.cli import HF_ALIASES, HF_DIFFERENT, build_parser, main
from lingcollapse.data.counts import class_counts
from lingcollapse.errors import UserError, did_you_mean
from lingcollapse.stats.files import load_stats, stats_path
from tiny import data_dir, save_model


def fails(argv, capsys) -> str:
    """The one ``error:`` line of a command that must exit 2."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2, argv
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    return lines[0]


def parsers(parser: argparse.ArgumentParser | None = None):
    """Every parser of the command line: the top one, each subcommand and each verb."""
    parser = parser or build_parser()
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def leaf(command: str) -> argparse.ArgumentParser:
    return next(p for p in parsers() if p.prog == f"lingcollapse {command}")


# ------------------------------------------------------------------ did you mean


def test_did_you_mean_names_the_closest_choice_or_nothing():
    assert did_you_mean("mesure", ["measure", "merge"]) == "; did you mean 'measure'?"
    assert did_you_mean("lama", ["llama"], str) == "; did you mean llama?"
    assert did_you_mean("zzz", ["measure", "merge"]) == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mesure"], "error: unknown command 'mesure'; did you mean 'measure'? "
         "(see `lingcollapse --help`)"),
        (["data", "prepar"], "error: unknown command 'prepar'; did you mean 'prepare'? "
         "(see `lingcollapse data --help`)"),
        (["stats", "merg"], "error: unknown command 'merg'; did you mean 'merge'? "
         "(see `lingcollapse stats --help`)"),
        (["measure", "x.safetensors", "--min-cont", "3"], "error: unknown option "
         "'--min-cont'; did you mean '--min-count'? (see `lingcollapse measure --help`)"),
    ],
)  # fmt: skip
def test_a_misspelled_command_or_option_gets_a_suggestion(argv, expected, capsys):
    assert fails(argv, capsys) == expected


def test_no_suggestion_when_nothing_is_close(capsys):
    line = fails(["frobnicate"], capsys)
    assert line == "error: unknown command 'frobnicate' (see `lingcollapse --help`)"


def test_a_misspelled_required_option_is_named_not_just_missing(capsys):
    line = fails(["collect", "m", "--dta", "d", "--out", "o"], capsys)
    assert line.startswith("error: unknown option '--dta'; did you mean '--data'?")
    assert "required: --data" in line and line.endswith("(see `lingcollapse collect --help`)")


def test_a_misspelled_choice_gets_a_suggestion(capsys):
    line = fails(["collect", "m", "--data", "d", "--out", "o", "--split", "valid"], capsys)
    assert "invalid choice 'valid'; did you mean 'validation'? (one of train, validation)" in line


def test_the_preset_registry_suggests_through_the_same_helper(capsys):
    line = fails(["measure", "x.safetensors", "--preset", "papyn"], capsys)
    assert "unknown preset 'papyn'" in line and "did you mean 'papyan'?" in line


def test_leftover_positionals_are_the_subcommands_error(capsys):
    line = fails(["report", "a", "b"], capsys)
    assert line == "error: unrecognized arguments: b (see `lingcollapse report --help`)"


# ------------------------------------------------------------------ help


def option_actions():
    for parser in parsers():
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                yield parser, action


def test_every_option_of_every_command_has_help_text():
    bare = [f"{p.prog} {a.option_strings or a.dest}" for p, a in option_actions() if not a.help]
    assert bare == []
    for parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(c.help for c in action._choices_actions), parser.prog


def test_every_default_appears_in_the_help():
    checked = 0
    for parser, action in option_actions():
        if action.nargs == 0 or action.default in (None, [], "", argparse.SUPPRESS):
            continue
        if not action.option_strings and action.nargs not in ("?", "*"):
            continue
        text = parser._get_formatter()._expand_help(action)
        assert "default" in text and str(action.default) in text, (parser.prog, text)
        checked += 1
    assert checked > 20  # the walk found the options


def test_help_shows_defaults_the_option_did_not_write_itself(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "--epochs EPOCHS passes over the train split" in text
    assert "(default: 1)" in text and "(default: 5e-05)" in text  # --epochs, --lr
    assert "--seed SEED initialisation and data order (default 42" in text  # said once
    assert "(default: 42)" not in text
    assert "Hugging Face's spellings are accepted too" in text
    assert "--learning_rate (--lr)" in text and "--output_dir (--out)" in text


def test_a_raw_description_keeps_its_lines_and_gains_defaults(capsys):
    text = leaf("data prepare").format_help()
    assert "  lingcollapse data prepare --out data/stories" in text  # the raw epilog
    assert "(default: gpt)" not in text and "(default: embedded)" in text
    assert "--block_size (--seq-len)" in " ".join(text.split())


# ------------------------------------------------------------------ Hugging Face spellings


def sample(action: argparse.Action) -> list[str]:
    """A value ``action`` accepts, as command-line words."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(list(action.choices)[-1])]
    kind = action.type if callable(action.type) else str
    value = "0.5" if kind is float else "3" if kind is int else "x"
    try:
        kind(value)
    except Exception:
        value = "3"  # a converter of its own (--logging-steps): a number will do
    return [value]


def required(parser: argparse.ArgumentParser, but: argparse.Action) -> list[str]:
    """Words that satisfy ``parser``'s required arguments without giving ``but``."""
    words = []
    for action in parser._actions:
        if action is but or isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            words += sample(action) if action.nargs != "*" else []
        elif action.required:
            words += [action.option_strings[0], *sample(action)]
    for group in parser._mutually_exclusive_groups:
        if group.required and but not in group._group_actions:
            first = group._group_actions[0]
            words += [first.option_strings[0], *sample(first)]
    return words


def same_parse(command: str, ours: str, spelling: str, form: str = "separate"):
    parser = leaf(command)
    action = parser._option_string_actions[ours]
    base = [*command.split(), *required(parser, action)]
    value = sample(action)
    given = [f"{spelling}={value[0]}"] if form == "equals" else [spelling, *value]
    top = build_parser()
    expected, found = top.parse_args([*base, ours, *value]), top.parse_args([*base, *given])
    assert vars(found) == vars(expected), (spelling, ours)
    assert getattr(found, action.dest) != action.default or action.nargs == 0


HF_TABLE = [(c, hf, ours) for c, table in HF_ALIASES.items() for hf, ours in table.items()]


@pytest.mark.parametrize(("command", "hf", "ours"), HF_TABLE)
def test_hugging_face_spellings_parse_as_ours(command, hf, ours):
    same_parse(command, ours, hf)
    same_parse(command, ours, hf, form="equals")
    same_parse(command, ours, hf.replace("_", "-"))  # as HfArgumentParser also takes it


SNAKE = [
    (p.prog.removeprefix("lingcollapse "), o)
    for p, a in option_actions()
    for o in a.option_strings
    if o.startswith("--") and "-" in o[2:]
]


@pytest.mark.parametrize(("command", "ours"), SNAKE)
def test_every_dash_option_is_accepted_in_snake_case(command, ours):
    same_parse(command, ours, "--" + ours[2:].replace("-", "_"))


def test_the_alias_tables_name_options_that_exist_and_do_not_collide():
    for command, table in HF_ALIASES.items():
        parser = leaf(command)
        for hf, ours in table.items():
            assert ours in parser._option_string_actions, (command, ours)
            assert hf not in parser._option_string_actions  # not shadowing one of ours
        assert not set(table) & set(HF_DIFFERENT.get(command, {}))
    for command, table in HF_DIFFERENT.items():
        aliases = leaf(command).aliases()
        assert not set(table) & set(aliases), command


def test_a_hugging_face_name_that_means_something_else_is_refused_with_why(capsys):
    line = fails(["train", "--data", "d", "--out", "o", "--per_device_train_batch_size", 8], capsys)
    assert "--per_device_train_batch_size is not an option of `lingcollapse train`" in line
    assert "global batch" in line
    line = fails(["data", "prepare", "--out", "o", "--validation_split_percentage", 5], capsys)
    assert "a fraction (0.05), not a percentage (5)" in line


def test_words_after_a_double_dash_are_left_as_given():
    args = build_parser().parse_args(["analyze", "--", "--class_counts"])
    assert args.inputs == [Path("--class_counts")] and args.class_counts is None


def test_an_option_added_after_the_table_is_aliased_too():
    parser = build_parser()
    train = next(p for p in parsers(parser) if p.prog == "lingcollapse train")
    train.add_argument("--brand-new-knob", type=int, help="added by a later change")
    args = parser.parse_args(["train", "--data", "d", "--out", "o", "--brand_new_knob", "7"])
    assert args.brand_new_knob == 7


# ------------------------------------------------------------------ run dirs


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run dir as `train` leaves it (model/) with the stats `collect` writes into it; the
    validation pass is given the run dir as --train-stats."""
    root = tmp_path_factory.mktemp("rundir")
    data = data_dir(root / "data")
    run = root / "run"
    save_model(run / "model", "gpt2")
    common = ["--data", data, "--device", "cpu", "--batch-size", 64]
    ok(["collect", run, *common, "--out", run / "stats" / "train.safetensors"])
    val = ["--split", "validation", "--out", run / "stats" / "validation.safetensors"]
    ok(["collect", run, *common, *val, "--train-stats", run])
    ok(["collect", run, *common, *val[:2], "--train-stats", run / "stats" / "train.safetensors",
        "--out", root / "val-by-file.st"])  # fmt: skip
    return run


def ok(argv) -> None:
    assert main([str(a) for a in argv]) == 0, argv


def test_stats_path_resolves_run_dirs_and_leaves_files(run, tmp_path):
    assert stats_path(run) == run / "stats" / "train.safetensors"
    assert stats_path(run, "validation") == run / "stats" / "validation.safetensors"
    assert stats_path(run / "stats" / "train.safetensors") == run / "stats" / "train.safetensors"
    assert stats_path(tmp_path / "missing") == tmp_path / "missing"  # its reader says so


def test_collect_train_stats_as_a_run_dir_is_the_file(run):
    by_dir = load_stats(run / "stats" / "validation.safetensors", kind="validation")
    by_file = load_stats(run.parent / "val-by-file.st", kind="validation")
    assert by_dir.val_counts.sum() > 0
    for key, value in by_dir.tensors().items():
        assert torch.equal(value, by_file.tensors()[key]), key


def measured(argv, capsys) -> dict:
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_measure_a_run_dir_is_measuring_its_stats(run, tmp_path, capsys):
    opts = ["--device", "cpu", "--json", "--classifier", run / "model"]
    by_dir = measured(["measure", run, "--out", tmp_path / "a", *opts], capsys)
    by_file = measured(
        ["measure", run / "stats" / "train.safetensors", "--out", tmp_path / "b", *opts], capsys
    )
    assert by_dir == by_file
    assert np.isfinite(by_dir["val_loss"])  # the validation stats beside were found


def test_measure_an_epoch_dir_writes_beside_its_stats(run, tmp_path, capsys):
    epoch = tmp_path / "run" / "epoch-1"
    (epoch / "stats").mkdir(parents=True)
    for name in ("train.safetensors", "validation.safetensors"):
        (epoch / "stats" / name).write_bytes((run / "stats" / name).read_bytes())
    metrics = measured(["measure", epoch, "--device", "cpu", "--json"], capsys)
    assert (epoch / "metrics.json").is_file() and (epoch / "classes.parquet").is_file()
    assert np.isfinite(metrics["val_loss"])


def test_merge_and_counts_of_a_run_dir(run, tmp_path, capsys):
    ok(["stats", "merge", run, "--out", tmp_path / "m.safetensors"])
    merged, train = load_stats(tmp_path / "m.safetensors"), load_stats(run)
    assert torch.equal(merged.counts, train.counts) and torch.equal(merged.means, train.means)
    assert np.array_equal(class_counts(run).counts, train.counts.numpy())  # analyze, counts
    by_dir = measured(["data", "counts", run, "--json"], capsys)
    assert by_dir == measured(["data", "counts", run / "stats" / "train.safetensors", "--json"],
                              capsys)  # fmt: skip
    assert by_dir["n_samples"] == int(train.counts.sum())


def bare_run(tmp_path: Path) -> Path:
    run = tmp_path / "bare"
    (run / "model").mkdir(parents=True)
    return run


@pytest.mark.parametrize(
    "argv",
    [
        lambda r, t: ["measure", r, "--device", "cpu"],
        lambda r, t: ["stats", "merge", r, "--out", t / "m.safetensors"],
        lambda r, t: ["data", "counts", r],
        lambda r, t: [
            *["collect", r, "--data", t, "--out", t / "v.st"],
            *["--split", "validation", "--train-stats", r],
        ],
    ],
    ids=["measure", "stats merge", "data counts", "collect --train-stats"],
)
def test_a_run_dir_without_stats_names_the_file_and_how_to_make_it(argv, tmp_path, capsys):
    run = bare_run(tmp_path)
    line = fails(argv(run, tmp_path), capsys)
    expected = run / "stats" / "train.safetensors"
    assert f"{run} has no train stats: expected {expected}" in line
    assert f"`lingcollapse collect {run} --data DATA_DIR --out {expected}`" in line


def test_a_stats_dir_or_data_dir_is_told_apart(run, tmp_path):
    with pytest.raises(UserError, match="is a directory: give a stats file in it"):
        stats_path(run / "stats")
    with pytest.raises(UserError, match="is a data dir, not stats"):
        stats_path(run.parent / "data")
    with pytest.raises(UserError, match=r"--split validation --train-stats .*train.safetensors"):
        stats_path(bare_run(tmp_path), "validation")


# ------------------------------------------------------------------ offline


@pytest.fixture
def fresh_hub(monkeypatch):
    """hub_reachable asked anew, through a session made from the test's environment."""
    import huggingface_hub.utils as hf_utils

    reset = getattr(hf_utils, "close_session", None) or hf_utils.reset_sessions
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    hub.hub_reachable.cache_clear()
    reset()
    yield monkeypatch
    monkeypatch.undo()  # the environment back before the next session is made
    hub.hub_reachable.cache_clear()
    reset()


class Answering(http.server.BaseHTTPRequestHandler):
    """Answers every HEAD with ``status``; records the request lines it saw."""

    status = 200
    seen: ClassVar[list[str]] = []

    def do_HEAD(self):
        type(self).seen.append(self.requestline)
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (Answering,), {"seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_offline_mode_is_offline_without_asking(fresh_hub):
    from huggingface_hub import constants

    fresh_hub.setattr(constants, "HF_HUB_OFFLINE", True)
    fresh_hub.setattr("huggingface_hub.utils.get_session", lambda: pytest.fail("asked the hub"))
    assert hub.hub_reachable() is False
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"


def test_an_endpoint_that_refuses_is_offline_quickly(fresh_hub):
    from huggingface_hub import constants

    fresh_hub.setattr(constants, "HF_HUB_OFFLINE", False)
    fresh_hub.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    assert hub.hub_reachable() is False
    assert time.perf_counter() - start < 3
    assert "http://127.0.0.1:9 does not answer" in hub.offline_reason()


def test_an_endpoint_that_answers_is_reachable_and_a_server_error_is_not(fresh_hub, server):
    from huggingface_hub import constants

    fresh_hub.setattr(constants, "HF_HUB_OFFLINE", False)
    fresh_hub.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    assert hub.hub_reachable() is True
    assert [line.split()[0] for line in server.RequestHandlerClass.seen] == ["HEAD"]
    server.RequestHandlerClass.status = 503
    hub.hub_reachable.cache_clear()
    assert hub.hub_reachable() is False


def test_the_proxy_of_the_environment_is_used(fresh_hub, server):
    """The endpoint's host does not resolve; only the proxy can answer for it."""
    import huggingface_hub.utils as hf_utils
    from huggingface_hub import constants

    fresh_hub.setattr(constants, "HF_HUB_OFFLINE", False)
    fresh_hub.setattr(constants, "ENDPOINT", "http://hub.invalid")
    fresh_hub.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
    (getattr(hf_utils, "close_session", None) or hf_utils.reset_sessions)()
    assert hub.hub_reachable() is True
    assert server.RequestHandlerClass.seen == ["HEAD http://hub.invalid/ HTTP/1.1"]


def not_cached(source, **kwargs):
    raise OSError(f"{source} is not in the cache")


def test_the_offline_hint_names_hf_download_with_the_revision(fresh_hub):
    from huggingface_hub import constants

    fresh_hub.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as err:
        hub.load_pretrained(not_cached, "EleutherAI/pythia-70m", "model", revision="step1000")
    message = str(err.value)
    assert "cannot be reached (offline). HF_HUB_OFFLINE is set;" in message
    assert "`hf download EleutherAI/pythia-70m --revision step1000 --local-dir DIR`" in message
    with pytest.raises(UserError, match=r"`hf download org/m --local-dir DIR`"):
        hub.load_pretrained(not_cached, "org/m", "model")
    hint = hub.download_hint("roneneldan/TinyStories", repo_type="dataset")
    assert hint == "hf download roneneldan/TinyStories --repo-type dataset --local-dir DIR"


def test_tinystories_offline_hint(tmp_path, capsys):
    # the suite runs offline (conftest: HF_HUB_OFFLINE, HF_DATASETS_OFFLINE)
    line = fails(["data", "prepare", "--corpus", "tinystories", "--out", tmp_path / "o"], capsys)
    assert "`hf download roneneldan/TinyStories --repo-type dataset --local-dir DIR`" in line


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "http://127.0.0.1:9 does not answer"),
    ],
    ids=["HF_HUB_OFFLINE=1", "unreachable HF_ENDPOINT"],
)
def test_collect_offline_from_the_environment(env, reason, tmp_path):
    """As a user meets it: a fresh process whose environment says offline, one line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    clean |= {"HF_HOME": str(tmp_path / "hf"), **env}  # an empty cache
    argv = ["collect", "org/not-cached", "--data", str(data_dir(tmp_path / "d")), "--out",
            str(tmp_path / "s.st"), "--revision", "step1000", "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lingcollapse", *argv], env=clean, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert reason in lines[0]
    assert "`hf download org/not-cached --revision step1000 --local-dir DIR`" in lines[0]
    assert time.perf_counter() - start < 20  # no retries: transformers' alone take 25 s
