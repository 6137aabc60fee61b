"""``data prepare`` end to end: the data dir of DESIGN §2, determinism, the CLI's bad
inputs (exit 2, one ``error:`` line, nothing lost) and atomic output."""

import json

import numpy as np
import pytest

from lingcollapse.cli import main
from lingcollapse.data import prepare as prepare_module
from lingcollapse.data.prepare import PrepareConfig, prepare, prepare_embedded
from lingcollapse.data.stories import generate

SMALL = ["--tokens", "30000", "--seq-len", "32", "--vocab-size", "400"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_embedded(
        tmp_path_factory.mktemp("d") / "data", tokens=30_000, seq_len=32, vocab_size=400, seed=0
    )


def files(path):
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def leftovers(path):
    """Hidden files beside an output, but for the advisory lock (io.exclusive keeps it)."""
    return [p.name for p in path.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]


def test_data_dir_layout_and_meta(data_dir):
    from transformers import AutoTokenizer

    meta = json.loads((data_dir / "meta.json").read_text())
    tok = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == meta["eos_token_id"] == 0
    assert meta["vocab_size"] == len(tok) <= 400 and meta["seq_len"] == meta["T"] == 32
    for split in ("train", "validation"):
        tokens = np.load(data_dir / f"{split}.npy", mmap_mode="r")
        info = meta["splits"][split]
        assert tokens.dtype == np.int32 and tokens.shape == (info["S"], 32)
        assert info["N"] == info["S"] * 31
        assert info["C"] == len(np.unique(tokens[:, 1:]))  # distinct labels, brute force
        assert tokens.max() < meta["vocab_size"]
    assert (meta["S"], meta["N"], meta["C"]) == tuple(meta["splits"]["train"][k] for k in "SNC")
    assert meta["splits"]["validation"]["documents"] > 0


def test_chunks_are_the_documents_joined_with_eos(data_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
    train_seed, _ = np.random.SeedSequence(0).spawn(2)
    first, second = generate(28_500, train_seed)[:2]  # the train split's stories
    head = np.load(data_dir / "train.npy")[:40].ravel()  # (40 T,) a few stories
    assert tok.decode(head).startswith(f"{first}<|endoftext|>{second}<|endoftext|>")


def test_same_seed_same_files_other_seed_other_files(tmp_path, data_dir):
    again = prepare_embedded(tmp_path / "a", tokens=30_000, seq_len=32, vocab_size=400, seed=0)
    other = prepare_embedded(tmp_path / "b", tokens=30_000, seq_len=32, vocab_size=400, seed=1)
    assert files(again) == files(data_dir)
    assert files(other)["train.npy"] != files(data_dir)["train.npy"]


def test_group_texts_packing_and_an_existing_tokenizer(tmp_path, data_dir):
    corpus = tmp_path / "c.jsonl"
    docs = generate(20_000, 5)
    corpus.write_text("".join(json.dumps({"story": d}) + "\n" for d in docs))
    cfg = PrepareConfig(
        out=tmp_path / "g",
        corpus=str(corpus),
        tokenizer=str(data_dir / "tokenizer"),
        seq_len=64,
        packing="group-texts",
        num_proc=2,
        text_column="story",
        validation_fraction=0.0,
    )
    meta = prepare(cfg).meta
    assert meta["tokenizer"] == {"name": str(data_dir / "tokenizer"), "trained": False}
    assert meta["packing"] == "group-texts" and meta["num_proc"] == 2
    tokens = np.load(tmp_path / "g" / "train.npy")
    assert not np.any(tokens == 0)  # group_texts adds no EOS
    # Under 1,000 documents: one batch per shard, so one remainder dropped per shard.
    from transformers import AutoTokenizer

    lengths = [
        len(ids) for ids in AutoTokenizer.from_pretrained(data_dir / "tokenizer")(docs)["input_ids"]
    ]
    half = (len(docs) + 1) // 2  # datasets gives the first shard the extra document
    expected = sum(lengths[:half]) // 64 + sum(lengths[half:]) // 64
    assert meta["S"] == expected == tokens.shape[0] and len(docs) < 1000
    assert meta["splits"]["train"]["tokens"] == sum(lengths)
    assert meta["splits"]["validation"]["S"] == 0


def test_cli_prints_a_summary_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "prepare", "--out", str(out), *SMALL]) == 0
    assert "S = " in capsys.readouterr().out
    before = files(out)
    assert main(["data", "prepare", "--out", str(out), *SMALL, "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--overwrite" in err[0]
    assert files(out) == before  # nothing lost
    assert main(["data", "prepare", "--out", str(out), *SMALL, "--seed", "3", "--overwrite"]) == 0
    assert files(out)["train.npy"] != before["train.npy"]
    assert leftovers(tmp_path) == []  # no temporary or old dirs left


def test_overwrite_never_replaces_a_dir_that_is_not_a_data_dir(tmp_path, capsys):
    keep = tmp_path / "home"
    keep.mkdir()
    (keep / "thesis.tex").write_text("precious")
    assert main(["data", "prepare", "--out", str(keep), *SMALL, "--overwrite"]) == 2
    assert "not a data dir" in capsys.readouterr().err
    assert (keep / "thesis.tex").read_text() == "precious"


def test_an_interrupted_run_leaves_no_data_dir(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module.packing, "pack_gpt", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_embedded(tmp_path / "d", tokens=5_000, seq_len=16, vocab_size=300)
    assert not (tmp_path / "d").exists() and leftovers(tmp_path) == []


def bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    (tmp_path / "c.jsonl").write_text('{"story": "a tale"}\n')
    (tmp_path / "tiny.txt").write_text("too short")
    out = ["--out", str(tmp_path / "out")]
    return {
        "empty": (["--corpus", str(tmp_path / "empty.txt"), *out], "empty"),
        "column": (["--corpus", str(tmp_path / "c.jsonl"), *out], "no column 'text'"),
        "seq_len": ([*out, "--seq-len", "1"], "T ≥ 2"),
        "missing": (["--corpus", str(tmp_path / "nope.txt"), *out], "not found"),
        "too_small": (
            ["--corpus", str(tmp_path / "tiny.txt"), *out, "--vocab-size", "300"],
            "too small for one chunk",
        ),
        "vocab": ([*out, "--vocab-size", "100"], "at least 257"),
        "fraction": ([*out, "--validation-fraction", "1.5"], "0 ≤ F < 1"),
        "tinystories": (["--corpus", "tinystories", *out], "hf download roneneldan/TinyStories"),
        "both": ([*out, "--vocab-size", "500", "--tokenizer", "gpt2"], "not allowed with"),
        "tokens": (["--corpus", str(tmp_path / "tiny.txt"), *out, "--tokens", "9"], "--tokens"),
        "hub_tokenizer": (
            [*out, "--tokens", "2000", "--tokenizer", "EleutherAI/gpt-neo-125M"],
            "cannot be reached (offline)",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "column",
        "seq_len",
        "missing",
        "too_small",
        "vocab",
        "fraction",
        "tinystories",
        "both",
        "tokens",
        "hub_tokenizer",
    ],
)
def test_bad_input_exits_2_with_one_error_line(tmp_path, capsys, case):
    argv, message = bad_inputs(tmp_path)[case]
    assert main(["data", "prepare", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_tinystories_from_a_local_copy_with_group_texts(tmp_path, data_dir, caplog):
    # The layout of the hub repo (data/{split}-*.parquet), read by `datasets` offline.
    import pandas as pd

    (tmp_path / "ts" / "data").mkdir(parents=True)
    docs = {"train": generate(40_000, 11), "validation": generate(4_000, 12)}
    for split, texts in docs.items():
        pd.DataFrame({"text": texts}).to_parquet(
            tmp_path / "ts" / "data" / f"{split}-00000-of-00001.parquet"
        )
    cfg = PrepareConfig(
        out=tmp_path / "d",
        corpus="tinystories",
        dataset_dir=tmp_path / "ts",
        tokenizer=str(data_dir / "tokenizer"),
        seq_len=128,
        packing="group-texts",
        num_proc=2,
    )
    meta = prepare(cfg).meta
    assert "not the paper's 2119719" in caplog.text  # a different version is flagged
    assert meta["source"]["corpus"] == "tinystories"
    assert meta["splits"]["train"]["documents"] == len(docs["train"])
    tokens = np.load(tmp_path / "d" / "train.npy")
    assert tokens.shape == (meta["S"], 128) and meta["N"] == meta["S"] * 127
