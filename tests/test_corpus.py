"""The pretraining corpus: deterministic, split cleanly, true statements, every byte from the project."""
import os
import re
import subprocess
import sys
from importlib import resources

import pytest

from instructlib import corpus
from instructlib.corpus import generate

N = 600  # generated documents used by most tests


@pytest.fixture(scope="module")
def docs():
    return corpus.documents(N)


def test_same_documents_after_clearing_the_cache(docs):
    corpus._documents.cache_clear()
    assert corpus.documents(N) == docs


def test_digest_does_not_depend_on_hash_seed():
    code = "from instructlib.corpus import corpus_digest; print(corpus_digest(200))"
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
               for seed in ("1", "2")}
    assert digests == {corpus.corpus_digest(200)}


def test_smaller_corpus_is_a_prefix_and_digest_changes(docs):
    small = corpus.documents(100)
    assert docs[:len(small)] == small
    assert corpus.corpus_digest(100) != corpus.corpus_digest(101)


def test_splits_are_disjoint_and_sized(docs):
    by_split = {s: [d for d in docs if d.split == s] for s in corpus.SPLITS}
    assert len({d.source for d in docs}) == len(docs), "sources identify documents"
    n_para = len(corpus.paragraphs())
    expected_heldout = N // corpus.HELDOUT_EVERY + n_para // corpus.PARAGRAPH_HELDOUT_EVERY
    assert len(by_split["heldout"]) == expected_heldout
    assert corpus.load_corpus("heldout", N) == [d.text for d in by_split["heldout"]]
    assert corpus.load_corpus("train", N) == [d.text for d in by_split["train"]]
    assert corpus.build_corpus(N) == [d.text for d in docs]


def test_profile_sizes_and_bad_arguments():
    assert len(corpus.build_corpus("ci")) == corpus.SIZES["ci"] + len(corpus.paragraphs())
    with pytest.raises(ValueError, match="split"):
        corpus.load_corpus("validation", 10)
    with pytest.raises(ValueError, match="profile"):
        corpus.build_corpus("laptop")
    with pytest.raises(ValueError, match="non-negative"):
        corpus.build_corpus(-1)


def test_provenance_of_every_document(docs):
    """Paragraph sources point at the file's own lines; generated ones regenerate exactly."""
    lines = resources.files("instructlib.corpus").joinpath("paragraphs.txt").read_text("utf-8").splitlines()
    kinds = set()
    for d in docs:
        origin, _, where = d.source.partition(":")
        if origin == "paragraphs.txt":
            start = int(where) - 1
            end = next(i for i in range(start, len(lines) + 1) if i == len(lines) or not lines[i].strip())
            assert d.text == " ".join(l.strip() for l in lines[start:end])
        else:
            assert origin == "generated", d.source
            kind, i = where.split(":")
            kinds.add(kind)
            assert corpus.generated(int(i)) == d
    assert kinds == set(generate.GENERATORS)


def test_generated_words_come_from_the_project_sources(docs):
    """Every word of generated text is written in generate.py / words.py (or reversed, plural, upper case)."""
    source = "".join(resources.files(package).joinpath(name).read_text("utf-8") for package, name in [
        ("instructlib.corpus", "generate.py"), ("instructlib.corpus", "words.py"),
        ("instructlib.data", "verifiable.py")]).lower()  # the task suite's word lists and facts
    known = set(re.findall(r"[a-z]+", source))
    for d in docs:
        if d.source.startswith("generated"):
            text = re.sub(r'"[a-z0-9]*\d[a-z0-9]*"', "", d.text)  # extract_digits' random letter jumbles
            for w in re.findall(r"[A-Za-z]+", text):
                w = w.lower()
                stems = {w, w[::-1], w[:-1], w[:-2], w[:-3] + "y"}  # reversed or plural forms too
                assert len(w) == 1 or stems & known, f"{w!r} in {d.source}"


def test_statements_are_true(docs):
    """Arithmetic, reversal, uppercasing and sorting statements are computed, hence correct."""
    text = "\n".join(d.text for d in docs)
    sums = re.findall(r"(\d+) \+ (\d+) = (\d+)", text)
    assert sums and all(int(a) + int(b) == int(c) for a, b, c in sums)
    prods = re.findall(r"(\d+) \* (\d+) = (\d+)", text)
    assert prods and all(int(a) * int(b) == int(c) for a, b, c in prods)
    rev = re.findall(r'"(\w+)" reversed is "(\w+)"', text)
    assert rev and all(a[::-1] == b for a, b in rev)
    up = re.findall(r'"(\w+)" in capital letters is "(\w+)"', text)
    assert up and all(a.upper() == b for a, b in up)
    lists = re.findall(r"numbers: ([\d, ]+)\. Sorted from smallest to largest: ([\d, ]+)\.", text)
    for raw, srt in lists:
        assert sorted(map(int, raw.split(", "))) == list(map(int, srt.split(", ")))


def test_contains_the_formats_chapter_05_uses(docs):
    text = " ".join(d.text for d in docs)
    for needle in ("reversed is", "in capital letters", "Sorted from smallest to largest",
                   "alphabetical order", "letters", "+", "=", "times", "Once upon a time"):
        assert needle in text, needle


def test_task_sentences_never_use_a_held_out_input():
    """Outside the lookup families every task input in the corpus hashes to its family's train split."""
    import random

    from instructlib.data.verifiable import FAMILIES, split_of

    rng = random.Random(0)
    for name in FAMILIES:
        splits = {split_of(name, generate._corpus_instance(name, rng)[0]) for _ in range(200)}
        assert splits == ({"train", "validation", "test"} if name in generate.KNOWLEDGE_FAMILIES else {"train"}), name


def test_cpu_corpus_states_every_fact_of_the_lookup_families():
    """Chapter 05 tests capitals and antonyms on held-out inputs: pretraining must have seen them all."""
    from instructlib.data.verifiable import ANTONYMS, CAPITALS

    sentences = [s for d in corpus.documents("cpu") if ":tasks:" in d.source for s in d.text.split(". ")]
    for facts in (CAPITALS, ANTONYMS):
        for key, value in facts.items():
            assert any(key in s and value in s for s in sentences), (key, value)
