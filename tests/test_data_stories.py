"""The embedded corpus: deterministic, varied, Zipf-like, with the paper's names and
homonyms (Tables 4–5) in more than one sense."""

import collections
import re

import numpy as np
import pytest

from lingcollapse.data import lexicon
from lingcollapse.data.stories import approx_tokens, generate, plural

WORD = re.compile(r"[A-Za-z]+")


@pytest.fixture(scope="module")
def stories():
    return generate(300_000, seed=0)


def sentences(stories):
    return [s for story in stories for s in re.split(r"(?<=[.!?\"]) (?=[A-Z\"])", story)]


def test_same_seed_same_stories_other_seed_other_stories():
    a, b, c = generate(20_000, 7), generate(20_000, 7), generate(20_000, 8)
    assert a == b
    assert a != c
    assert sum(map(approx_tokens, a)) >= 20_000 > sum(map(approx_tokens, a[:-1]))


def test_every_table5_name_and_table4_homonym_appears(stories):
    words = collections.Counter(w for s in stories for w in WORD.findall(s))
    assert len(lexicon.TABLE5_NAMES) == 38
    assert all(words[name] > 0 for name in lexicon.TABLE5_NAMES)
    table4 = "row ring light well date bat left match spring bank wave close fair lead bowl"
    assert set(lexicon.HOMONYMS) == set(table4.split())
    assert all(words[h] > 0 for h in table4.split())


def test_homonyms_are_used_in_several_senses(stories):
    # The sense templates of each homonym differ; at least two must occur in the corpus.
    text = " ".join(stories)
    for word, senses in lexicon.HOMONYMS.items():
        seen = 0
        for template in senses:
            fixed = max(re.split(r"\{[npq]\}", template), key=len)  # its longest fixed part
            seen += fixed in text
        assert seen >= 2, word


def test_zipf_like_rank_frequency(stories):
    counts = collections.Counter(w.lower() for s in stories for w in WORD.findall(s))
    freq = np.sort(np.array(list(counts.values()), dtype=float))[::-1]  # (types,)
    rank = np.arange(1, len(freq) + 1)
    slope = np.polyfit(np.log(rank[9:500]), np.log(freq[9:500]), 1)[0]
    assert -1.6 < slope < -0.8  # natural language: about −1
    assert freq[0] / freq[99] > 10  # a heavy head ...
    assert freq[len(freq) // 2 :].sum() / freq.sum() < 0.06  # ... and a long, thin tail


def test_vocabulary_size_and_variety(stories):
    words = {w.lower() for s in stories for w in WORD.findall(s)}
    assert 1100 < len(words) < 2500  # "about 1,500 simple words"
    sents = sentences(stories)
    assert len(set(sents)) / len(sents) > 0.3  # not a handful of repeated sentences
    assert len(set(stories)) == len(stories)


def test_recurring_openings_with_varying_continuations(stories):
    openings = [s for s in stories if s.startswith("Once upon a time, ")]
    assert 0.3 < len(openings) / len(stories) < 0.9
    nexts = {s[len("Once upon a time, ") :].split()[0] for s in openings}
    assert len(nexts) >= 3  # an ambiguous context: several next tokens


def test_stories_have_dialogue_and_a_moral(stories):
    assert np.mean(['"' in s for s in stories]) > 0.8
    assert all(" learned that " in s or " knew that " in s for s in stories)


def test_plural():
    assert [plural(w) for w in ("cat", "box", "puppy", "mouse", "day")] == [
        "cats",
        "boxes",
        "puppies",
        "mice",
        "days",
    ]
