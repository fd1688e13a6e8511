"""Byte-level BPE: exact round trips on any text, the course special tokens, save/load as a fast tokenizer."""
import json

import pytest
from hypothesis import given, settings, strategies as st
from transformers import PreTrainedTokenizerFast

from instructlib.corpus import load_corpus
from instructlib.tokenization import EOS_TOKEN, MASK_TOKEN, PAD_TOKEN, load_bpe, save_tokenizer, train_bpe

VOCAB = 400
TEXTS = [
    "Once upon a time, there was a curious fox named Mia.",
    "语言模型（language model）根据上文预测下一个词。",
    "tabs\tand  double  spaces\n\nnew lines\r\nand trailing space ",
    "  leading spaces, \u00a0no-break space, zero\u200bwidth, e\u0301 vs é, emoji 🙂🚀",
    "digits 0123456789 and 12 + 7 = 19.",
    "\x00\x01 control bytes and a lone <|endoftext bracket",
    "",
]


@pytest.fixture(scope="module")
def tok():
    return train_bpe(load_corpus("train", 300), VOCAB)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_exact(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_round_trip_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_distinct_and_atomic(tok):
    ids = {t: tok.convert_tokens_to_ids(t) for t in (EOS_TOKEN, PAD_TOKEN, MASK_TOKEN)}
    assert (tok.eos_token, tok.pad_token, tok.mask_token) == (EOS_TOKEN, PAD_TOKEN, MASK_TOKEN)
    assert len(set(ids.values())) == 3 and tok.pad_token_id != tok.eos_token_id
    for t, i in ids.items():
        assert tok.encode(f"a{t}b") == tok.encode("a") + [i] + tok.encode("b"), t
    assert tok.decode(tok.encode(f"end{EOS_TOKEN}"), skip_special_tokens=True) == "end"


def test_vocabulary_size_and_byte_alphabet(tok):
    assert 256 + 3 < len(tok) <= VOCAB
    # every single byte is a token, so no text is ever out of vocabulary
    assert all(len(tok.encode(chr(b))) == 1 for b in range(128))


def test_digits_are_split_one_per_token(tok):
    pieces = tok.convert_ids_to_tokens(tok.encode("x 2024"))
    assert pieces[-4:] == ["2", "0", "2", "4"]


def test_bpe_merges_frequent_words(tok):
    assert len(tok.encode(" the")) == 1
    heldout = " ".join(load_corpus("heldout", 300))
    assert len(heldout) / len(tok.encode(heldout)) > 1.5, "BPE should need far fewer tokens than bytes"


def test_training_is_deterministic(tok):
    again = train_bpe(load_corpus("train", 300), VOCAB)
    assert again.get_vocab() == tok.get_vocab()


def test_save_and_load_as_fast_tokenizer(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tk")
    loaded = load_bpe(tmp_path / "tk")
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert loaded.get_vocab() == tok.get_vocab() and loaded.pad_token_id == tok.pad_token_id
    for text in TEXTS:
        assert loaded.encode(text) == tok.encode(text)
    batch = loaded(["a b c", "a"], padding=True)
    assert batch["input_ids"][1][-1] == loaded.pad_token_id and batch["attention_mask"][1][-1] == 0


def test_chat_template_is_the_compact_instruction_format(tok, tmp_path):
    """The course tokenizer renders chats as "### Instruction / ### Response", saved and reloaded alike."""
    messages = [{"role": "user", "content": "Add the two numbers.\n\n2 3"}, {"role": "assistant", "content": "5"}]
    want = "### Instruction:\nAdd the two numbers.\n\n2 3\n\n### Response:\n5" + EOS_TOKEN
    save_tokenizer(tok, tmp_path / "tk")
    for t in (tok, load_bpe(tmp_path / "tk")):
        assert t.apply_chat_template(messages, tokenize=False) == want


def test_load_errors_name_the_file_and_field(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_bpe(tmp_path / "missing")
    save_tokenizer(tok, tmp_path / "tk")
    cfg = tmp_path / "tk" / "tokenizer_config.json"
    data = json.loads(cfg.read_text())
    data["pad_token"] = EOS_TOKEN
    cfg.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="pad_token"):
        load_bpe(tmp_path / "tk")


def test_too_small_vocabulary_is_refused():
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(["abc"], 100)
