"""Chapter 03: byte-level BPE for the course model, trained with `tokenizers`, used as a transformers fast tokenizer.

* Byte level: text is first turned into its UTF-8 bytes (each shown as a printable character), so
  every string, Chinese or emoji or odd whitespace, encodes and decodes back exactly; there is no
  unknown token.
* Digits are split one per token before BPE (as Llama and many later models do): ``123`` is
  ``1 2 3``, so the model sees the same digit tokens in every number, which helps arithmetic.
* Special tokens: ``<|endoftext|>`` separates documents (and ends generations), ``<|pad|>`` pads
  batches (a different id, so padding is never confused with a real end of text), ``<|mask|>``
  replaces hidden tokens in masked-LM training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Union

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
MASK_TOKEN = "<|mask|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, MASK_TOKEN]  # ids 0, 1, 2

# The course model's chat template: Alpaca's "### Instruction / ### Response" markers without its
# 40-word preamble, which alone would take ~75 of TinyGPT's 128 positions. Chapters 05-09 train and
# evaluate with it through ``render_for_training/render_for_inference(template="chat")``.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "### Response:\n{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}")


def bpe_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE `tokenizers.Tokenizer` with digit splitting."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def wrap(tok: Tokenizer, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer around a trained `tokenizers.Tokenizer`, with the course specials."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, mask_token=MASK_TOKEN,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False, chat_template=CHAT_TEMPLATE)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` tokens (256 bytes + specials + merges) on ``texts``."""
    n_base = 256 + len(SPECIAL_TOKENS)
    if vocab_size < n_base:
        raise ValueError(f"vocab_size must be at least {n_base} (256 bytes + {len(SPECIAL_TOKENS)} specials), "
                         f"got {vocab_size}")
    tok = bpe_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok, model_max_length)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Union[str, Path]) -> Path:
    """``save_pretrained`` into the directory ``path`` (tokenizer.json + configs); returns it."""
    path = Path(path)
    tokenizer.save_pretrained(path)
    return path


def load_bpe(path: Union[str, Path]) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer` and check the course's special tokens."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path / 'tokenizer.json'}: no saved tokenizer here")
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    for field, want in (("eos_token", EOS_TOKEN), ("pad_token", PAD_TOKEN), ("mask_token", MASK_TOKEN)):
        if getattr(tok, field) != want:
            raise ValueError(f"{path}: tokenizer field {field} is {getattr(tok, field)!r}, expected {want!r}")
    tok.chat_template = CHAT_TEMPLATE  # also for tokenizers saved before the template existed
    return tok
