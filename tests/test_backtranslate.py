"""Chapter 07: the parallel corpus, the translators (course, Marian, prompted) and the round trip."""
import json
import warnings

import pytest
import torch

from instructlib.data.verifiable import FAMILIES
from instructlib.generate.backtranslation.roundtrip import (CourseTranslator, MarianTranslator, PromptedTranslator,
                                                round_trip)
from instructlib.generate.backtranslation.translator import (TranslatorRecipe, load_meanings, parallel_pairs, train_translator,
                                             training_records)
from instructlib.models import LLM
from instructlib.models.llm import ScriptedLLM
from instructlib.text import cjk_share, rouge_l


# --- the parallel corpus ---------------------------------------------------------------------------

def test_corpus_has_every_training_phrasing_and_no_heldout_one():
    meanings = load_meanings()
    english = {t: m for m in meanings for t in m.en}
    for name, fam in FAMILIES.items():
        for phrasing in fam.train_phrasings:
            assert phrasing in english and english[phrasing].family == name, phrasing
        for phrasing in fam.heldout_phrasings:
            assert phrasing not in english
            # no corpus sentence is a near copy of a held-out phrasing (chapter 07's experiment tests on them)
            closest = max(rouge_l(phrasing, t) for t in english)
            assert closest < 0.7, (phrasing, closest)


def test_corpus_sides_are_in_their_language_and_slots_match():
    pairs = parallel_pairs()
    assert len(pairs) > 400 and {p.split for p in pairs} == {"train", "test"}
    for p in pairs:
        assert cjk_share(p.zh) > 0.6 and cjk_share(p.en) == 0.0, p
        assert "{n}" not in p.en and "{n}" not in p.zh
    slotted = [p for p in pairs if p.meaning == "repeat_n"]
    assert len(slotted) == 8 * 2 * 2
    assert all([c for c in p.en if c.isdigit()] == [c for c in p.zh if c.isdigit()] for p in slotted)
    assert parallel_pairs() == pairs  # the split is a stable hash, not a random draw


def test_training_records_cover_both_directions_of_train_pairs_only():
    pairs = parallel_pairs()
    records = training_records(pairs)
    assert len(records) == 2 * sum(p.split == "train" for p in pairs)
    test_en = {p.en for p in pairs if p.split == "test"}
    held = [(p.en, p.zh) for p in pairs if p.split == "test"]
    trained = {(r.input, r.output) for r in records} | {(r.output, r.input) for r in records}
    assert not any(pair in trained for pair in held) and test_en


@pytest.mark.parametrize("bad, field", [
    ("meanings:\n- id: a\n  en: [x]\n", "zh"),
    ("meanings:\n- id: a\n  en: [x]\n  zh: [y]\n- id: a\n  en: [x]\n  zh: [y]\n", "duplicate"),
    ("meanings:\n- id: a\n  en: ['{n} x']\n  zh: [y]\n", "{n}"),
    ("meanings: []\n", "no meanings"),
])
def test_malformed_corpus_names_the_entry(tmp_path, bad, field):
    path = tmp_path / "m.yaml"
    path.write_text(bad)
    with pytest.raises(ValueError, match="m.yaml") as err:
        load_meanings(path)
    assert field in str(err.value)


# --- Marian (opus-mt) path: a tiny random Marian model and a SentencePiece model trained here -------

@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    tmp = tmp_path_factory.mktemp("marian")
    pairs = parallel_pairs()[:300]
    for name, texts in (("source", [p.en for p in pairs]), ("target", [p.zh for p in pairs])):
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(tmp / name), vocab_size=150,
                                       model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                       unk_id=0, pad_id=-1, minloglevel=2, hard_vocab_limit=False)
        (tmp / f"{name}.model").rename(tmp / f"{name}.spm")
    pieces = ["</s>", "<unk>", "<pad>", ">>cmn_Hans<<"]
    for name in ("source", "target"):
        sp = spm.SentencePieceProcessor(model_file=str(tmp / f"{name}.spm"))
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    (tmp / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(dict.fromkeys(pieces))}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses" (not needed here)
        tok = MarianTokenizer(str(tmp / "source.spm"), str(tmp / "target.spm"), str(tmp / "vocab.json"))
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                       decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, max_position_embeddings=64)
    return MarianMTModel(cfg).eval(), tok


class GenerateSpy:
    """Records the encoder input ids and keyword arguments of every ``generate`` call."""

    def __init__(self, model):
        self.model, self.calls, self.inner = model, [], model.generate

    def __call__(self, *args, **kwargs):
        self.calls.append({"input_ids": kwargs["input_ids"].tolist(), **{k: v for k, v in kwargs.items()
                                                                         if k not in ("input_ids", "attention_mask")}})
        return self.inner(*args, **kwargs)


TEXTS = ["Sort the numbers from smallest to largest.", "Add the two numbers.", "Find the largest number.",
         "Name the capital city.", "Insert commas between the words."]


def test_marian_en_zh_puts_the_language_token_first(marian, one_thread, monkeypatch):
    model, tok = marian
    spy = GenerateSpy(model)
    monkeypatch.setattr(model, "generate", spy)
    lang_id = tok.convert_tokens_to_ids(">>cmn_Hans<<")
    out = MarianTranslator(LLM.wrap(model, tok), "en", "zh", max_new_tokens=6).translate(TEXTS[:2])
    assert len(out) == 2 and all(len(o) == 1 for o in out)
    assert all(row[0] == lang_id for row in spy.calls[0]["input_ids"])
    # zh->en (a single-target model) gets no token; a prefix already set by load_llm is not doubled
    spy.calls.clear()
    MarianTranslator(LLM.wrap(model, tok), "zh", "en", max_new_tokens=6).translate(["把两个数相加。"])
    assert lang_id not in spy.calls[0]["input_ids"][0]
    spy.calls.clear()
    MarianTranslator(LLM.wrap(model, tok, prefix=">>cmn_Hans<< "), "en", "zh", max_new_tokens=6).translate(TEXTS[:1])
    assert spy.calls[0]["input_ids"][0].count(lang_id) == 1


def test_marian_batches_and_beams(marian, one_thread, monkeypatch):
    model, tok = marian
    spy = GenerateSpy(model)
    monkeypatch.setattr(model, "generate", spy)
    llm = LLM.wrap(model, tok)
    one_by_one = [MarianTranslator(llm, "en", "zh", max_new_tokens=8).translate([t])[0] for t in TEXTS]
    spy.calls.clear()
    batched = MarianTranslator(llm, "en", "zh", max_new_tokens=8).translate(TEXTS, batch_size=2)
    assert batched == one_by_one and [len(c["input_ids"]) for c in spy.calls] == [2, 2, 1]
    spy.calls.clear()
    beams = MarianTranslator(llm, "en", "zh", max_new_tokens=8, generate_kwargs={"num_beams": 3}).translate(TEXTS)
    assert {c["num_beams"] for c in spy.calls} == {3}
    enc = tok([">>cmn_Hans<< " + t for t in TEXTS], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = spy.inner(**enc, max_new_tokens=8, num_beams=3, do_sample=False)
    expected = [tok.decode(r[1:], skip_special_tokens=True).strip() for r in ref.tolist()]
    assert [b[0] for b in beams] == expected


# --- round trip ------------------------------------------------------------------------------------

def test_round_trip_rows_carry_provenance():
    forward = ScriptedLLM(lambda p: {"Add the numbers.": "把数相加。", "Sort them.": "排序。"}[p.split("<< ")[-1]])
    back = ScriptedLLM(lambda p: "Sum the numbers." if "相加" in p else "Put them in order.")
    fw = MarianTranslator(forward, "en", "zh", name="fw")
    bw = MarianTranslator(back, "zh", "en", name="bw")
    rows = round_trip(["Add the numbers.", "Sort them."], fw, bw, n=3, ids=["a", "b"], seed=7)
    assert [r["id"] for r in rows] == ["a/rt0", "a/rt1", "a/rt2", "b/rt0", "b/rt1", "b/rt2"]
    expected = {"source_id": "a", "source": "Add the numbers.", "pivot": "把数相加。", "paraphrase": "Sum the numbers.",
                "lang": "en", "pivot_lang": "zh", "forward": "fw", "backward": "bw", "seed": 7, "sample": 0}
    assert {k: rows[0][k] for k in expected} == expected
    assert forward.calls == [">>cmn_Hans<< Add the numbers.", ">>cmn_Hans<< Sort them."]
    assert len(back.calls) == 6  # n samples of each pivot
    with pytest.raises(ValueError, match="not a round trip"):
        round_trip(["x"], fw, fw)


def test_prompted_translator_asks_for_the_translation_only():
    llm = ScriptedLLM(lambda p: "把两个数相加。\nI hope this helps!")
    out = PromptedTranslator(llm, "en", "zh").translate(["Add the two numbers."])
    assert out == [["把两个数相加。"]]
    assert "Translate this English text into Chinese" in llm.calls[0] and "Add the two numbers." in llm.calls[0]


def test_round_trip_on_a_course_translator(one_thread):
    pairs = [p for p in parallel_pairs() if p.family in ("add", "sort_numbers")]
    recipe = TranslatorRecipe(vocab_size=600, n_layer=1, n_head=2, n_embd=32, steps=4, batch_size=8)
    model, tok, result = train_translator(recipe, pairs, progress=False)
    assert result.step == 4 and result.history.train[-1]["loss"] < result.history.train[0]["loss"] + 1.0
    llm = LLM.wrap(model, tok)
    en_zh, zh_en = CourseTranslator(llm, "en", "zh", max_new_tokens=8), CourseTranslator(llm, "zh", "en", max_new_tokens=8)
    assert "Translate into Chinese." in en_zh.prompts(["Add the two numbers."])[0]
    rows = round_trip(["Add the two numbers.", "Sort the numbers from smallest to largest."], en_zh, zh_en,
                      n=2, seed=1)
    again = round_trip(["Add the two numbers.", "Sort the numbers from smallest to largest."], en_zh, zh_en,
                       n=2, seed=1)
    assert len(rows) == 4 and [r["paraphrase"] for r in rows] == [r["paraphrase"] for r in again]
    assert all("\n" not in r["paraphrase"] for r in rows)  # cut at the first newline


def test_nearest_meaning_reads_what_a_sentence_means():
    from instructlib.generate.backtranslation.translator import nearest_meaning

    assert nearest_meaning("Put these numbers in ascending order.") == ("sort_numbers", 1.0)
    assert nearest_meaning("Sort the numbers from largest to smallest.")[0] == "sort_descending"
    assert nearest_meaning("把这些数字从大到小排序。", "zh") == ("sort_descending", 1.0)
    assert nearest_meaning("Repeat the word 7 times.") == ("repeat_n", 1.0)
    key, score = nearest_meaning("Pick the largest number out")
    assert key == "max_of_list" and 0.3 < score < 1.0
