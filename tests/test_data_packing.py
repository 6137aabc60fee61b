"""Packing: GPT (EOS-joined stream) and run_clm's group_texts, against brute force and
against ``datasets.map`` itself; the streamed ``.npy`` and its label counts."""

from itertools import chain

import numpy as np
import pytest

from lingcollapse.data.packing import (
    ChunkWriter,
    group_texts_batches,
    pack_gpt,
    pack_group_texts,
)


def random_docs(n, seed=0, vocab=50, max_len=30):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(1, vocab, size=rng.integers(0, max_len)).astype(np.int32) for _ in range(n)
    ]


def packed(tmp_path, pack, seq_len, vocab, *args):
    path = tmp_path / f"split{len(list(tmp_path.iterdir()))}.npy"  # earlier maps stay valid
    with ChunkWriter(path, seq_len, vocab) as writer:
        pack(*args, writer) if pack is pack_gpt else pack(args[0], args[1], writer, *args[2:])
        writer.close()
        counts = writer.label_counts
    return np.load(path, mmap_mode="r"), counts


@pytest.mark.parametrize("seq_len", [2, 7, 64])
def test_gpt_packing_matches_brute_force(tmp_path, seq_len):
    docs, eos = random_docs(57), 0
    chunks, counts = packed(tmp_path, pack_gpt, seq_len, 50, docs, eos)
    stream = list(chain.from_iterable([*d.tolist(), eos] for d in docs if len(d)))
    S = len(stream) // seq_len
    expected = np.array(stream[: S * seq_len], dtype=np.int32).reshape(S, seq_len)
    assert chunks.dtype == np.int32 and chunks.shape == (S, seq_len)
    np.testing.assert_array_equal(chunks, expected)
    labels = expected[:, 1:].ravel()  # N = S(T − 1) samples; C distinct labels
    assert counts.sum() == S * (seq_len - 1) == labels.size
    assert np.count_nonzero(counts) == len(set(labels.tolist()))
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=50))


def test_gpt_packing_puts_one_eos_between_documents(tmp_path):
    docs = [np.array([5, 6, 7], np.int32), np.array([], np.int32), np.array([8, 9], np.int32)]
    chunks, _ = packed(tmp_path, pack_gpt, 4, 10, docs, 0)
    np.testing.assert_array_equal(chunks, [[5, 6, 7, 0]])  # [8, 9, 0] is the remainder
    chunks, _ = packed(tmp_path, pack_gpt, 2, 10, docs, 0)
    np.testing.assert_array_equal(chunks, [[5, 6], [7, 0], [8, 9]])  # last EOS: remainder


def test_group_texts_batches_follow_datasets_sharding():
    # 2,500 documents, 2 workers: shards [0, 1250) and [1250, 2500), each cut into 1,000s.
    assert group_texts_batches(2500, 2) == [(0, 1000), (1000, 1250), (1250, 2250), (2250, 2500)]
    assert group_texts_batches(5, 2, batch_size=2) == [(0, 2), (2, 3), (3, 5)]  # 3 + 2
    assert group_texts_batches(3, 8, batch_size=2) == [(0, 1), (1, 2), (2, 3)]  # P capped at n
    assert group_texts_batches(2500, None) == [(0, 1000), (1000, 2000), (2000, 2500)]


def test_group_texts_drops_the_remainder_per_batch_and_shard(tmp_path):
    # Hand count: 2,500 documents of 3 tokens, T = 7, 2 workers. Batches of 1,000, 250,
    # 1,000, 250 documents hold 3,000 / 750 tokens → 428 / 107 chunks (4 / 1 dropped).
    docs = [np.arange(3 * i, 3 * i + 3, dtype=np.int32) for i in range(2500)]
    chunks, counts = packed(tmp_path, pack_group_texts, 7, 7500, docs, 2500, 2)
    assert chunks.shape == (2 * (428 + 107), 7)  # one stream would give 7500 // 7 = 1071
    assert chunks[427, -1] == 2995 and chunks[428, 0] == 3000  # batch 2 starts afresh
    assert chunks[535, 0] == 3750  # shard 2 starts at document 1250
    assert counts.sum() == chunks.shape[0] * 6
    one, _ = packed(tmp_path, pack_group_texts, 7, 7500, docs, 2500, 1)
    assert one.shape == (428 + 428 + 214, 7)  # 1 worker: batches of 1000, 1000, 500 docs


def test_group_texts_equals_datasets_map_with_run_clm_group_texts(tmp_path):
    datasets = pytest.importorskip("datasets")
    T, docs = 16, random_docs(2345, seed=3, max_len=40)

    def group_texts(examples):  # run_clm's, verbatim in substance
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"]) // T * T
        return {k: [t[i : i + T] for i in range(0, total, T)] for k, t in concatenated.items()}

    ds = datasets.Dataset.from_dict({"input_ids": [d.tolist() for d in docs]})
    expected = ds.map(group_texts, batched=True, num_proc=2)["input_ids"]
    chunks, _ = packed(tmp_path, pack_group_texts, T, 50, docs, len(docs), 2)
    np.testing.assert_array_equal(chunks, np.array(expected, dtype=np.int32))


def test_chunk_writer_empty_and_header(tmp_path):
    with ChunkWriter(tmp_path / "e.npy", 5, 3) as writer:
        writer.close()
    empty = np.load(tmp_path / "e.npy")
    assert empty.shape == (0, 5) and empty.dtype == np.int32
