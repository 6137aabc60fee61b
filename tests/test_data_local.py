"""Local corpora: .txt (blank-line separated), a directory of .txt, .jsonl, .parquet."""

import json

import pandas as pd
import pytest

from lingcollapse.data.corpus import split_documents
from lingcollapse.data.local import read_documents
from lingcollapse.errors import UserError


def test_txt_documents_are_separated_by_blank_lines(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("One story.\nSame story.\n\nTwo.\n  \t\n\n\nThree\n\n")
    assert read_documents(path) == ["One story.\nSame story.", "Two.", "Three"]


def test_a_directory_holds_one_document_per_txt_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second\n\nstill second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub" / "c.txt").write_text("third")
    (tmp_path / "ignored.md").write_text("not text")
    assert read_documents(tmp_path) == ["first", "second\n\nstill second", "third"]


def test_jsonl_and_parquet_read_the_named_column(tmp_path):
    rows = [{"text": "a b", "story": "x"}, {"text": "c", "story": "y"}, {"story": "z"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_documents(tmp_path / "c.jsonl") == ["a b", "c"]
    assert read_documents(tmp_path / "c.jsonl", "story") == ["x", "y", "z"]
    pd.DataFrame({"text": ["p", " ", None, "q"], "n": [1, 2, 3, 4]}).to_parquet(
        tmp_path / "c.parquet"
    )
    assert read_documents(tmp_path / "c.parquet") == ["p", "q"]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_missing_column_names_the_columns_there(tmp_path, suffix):
    path = tmp_path / f"c.{suffix}"
    if suffix == "jsonl":
        path.write_text('{"story": "x"}\n')
    else:
        pd.DataFrame({"story": ["x"]}).to_parquet(path)
    with pytest.raises(UserError, match=r"no column 'text' \(columns: story\)"):
        read_documents(path)


def test_empty_and_missing_inputs_are_user_errors(tmp_path):
    (tmp_path / "e.txt").write_text("\n \n\n")
    with pytest.raises(UserError, match="empty"):
        read_documents(tmp_path / "e.txt")
    with pytest.raises(UserError, match="not found"):
        read_documents(tmp_path / "nope.txt")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="line 1"):
        read_documents(tmp_path / "bad.jsonl")


def test_validation_split_is_seeded_and_keeps_order():
    docs = [f"d{i}" for i in range(100)]
    train, val = split_documents(docs, 0.1, seed=0)
    assert len(val) == 10 and len(train) == 90 and sorted(train + val) == sorted(docs)
    assert val == sorted(val, key=docs.index)
    assert split_documents(docs, 0.1, seed=0) == (train, val)
    assert split_documents(docs, 0.1, seed=1)[1] != val
    assert split_documents(["only"], 0.5, seed=0) == (["only"], [])
