"""Chapter 07: the course's own English<->Chinese translator, trained offline with chapter 05's loop.

No openly licensed en<->zh translation model can be installed from a package registry, so the
course builds one it can train on a laptop: a small TinyGPT (chapter 03's architecture, trained
from scratch) that is instruction-tuned by chapter 05's loop on two instructions, "Translate into
Chinese." and "Translate into English.", over the project's own parallel corpus
(``parallel/meanings.yaml``, provenance in ``parallel/README.md``).

The corpus lists *meanings*, each with several English and several Chinese renderings; every
(English, Chinese) pair of one meaning is a training pair. A translator trained on it has seen
many English sentences for one Chinese sentence, so a round trip English -> Chinese -> English can
come back as a *different* English sentence with the same meaning: a paraphrase. Its domain is
narrow (instructions like the verifiable families of chapter 05), and it says so: outside that
domain it produces fluent nonsense, which is what the filters of ``meaning_filters`` are for.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import zlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...config import Profile, cache_dir, get_device, get_profile

LANGUAGES = ("en", "zh")
INSTRUCTIONS = {("en", "zh"): "Translate into Chinese.", ("zh", "en"): "Translate into English."}
SLOT_VALUES = tuple(str(n) for n in range(2, 10))  # what ``{n}`` is filled with
CORPUS_VERSION = 1


@dataclass(frozen=True)
class Meaning:
    """One meaning of the parallel corpus: interchangeable English and Chinese renderings."""

    id: str
    family: Optional[str]
    en: tuple[str, ...]
    zh: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """One parallel sentence pair with its meaning (and the slot value, if the meaning has one)."""

    en: str
    zh: str
    meaning: str
    family: Optional[str]
    split: str  # "train" or "test" (a stable hash of the pair; test pairs are never trained on)


def meanings_path() -> Path:
    """Path of the packaged ``meanings.yaml``."""
    return Path(str(resources.files("instructlib.generate.backtranslation") / "parallel" / "meanings.yaml"))


def load_meanings(path: Optional[str | Path] = None) -> list[Meaning]:
    """The meanings of the parallel corpus; a malformed file raises ``ValueError`` naming the entry."""
    import yaml

    path = Path(path) if path else meanings_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out, seen = [], set()
    for k, m in enumerate(data.get("meanings", []) if isinstance(data, dict) else []):
        where = f"{path}: meanings[{k}]"
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            raise ValueError(f"{where}: id: missing or not a string")
        if m["id"] in seen:
            raise ValueError(f"{where}: id: duplicate {m['id']!r}")
        seen.add(m["id"])
        for lang in LANGUAGES:
            texts = m.get(lang)
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(f"{where}: {lang}: needs a non-empty list of non-empty strings")
        slotted = {("{n}" in t) for lang in LANGUAGES for t in m[lang]}
        if len(slotted) != 1:
            raise ValueError(f"{where}: {{n}}: either every rendering has the slot or none does")
        out.append(Meaning(m["id"], m.get("family"), tuple(m["en"]), tuple(m["zh"])))
    if not out:
        raise ValueError(f"{path}: meanings: no meanings found")
    return out


def _split(en: str, zh: str, test_share: float) -> str:
    return "test" if zlib.crc32(f"{en}\x00{zh}".encode()) % 1000 < test_share * 1000 else "train"


def parallel_pairs(meanings: Optional[Sequence[Meaning]] = None, test_share: float = 0.1) -> list[Pair]:
    """Every (en, zh) pair of every meaning, slots filled with 2..9; ``split`` by a stable hash."""
    pairs = []
    for m in meanings if meanings is not None else load_meanings():
        values = SLOT_VALUES if "{n}" in m.en[0] else ("",)
        for v in values:
            for en in m.en:
                for zh in m.zh:
                    e, z = en.replace("{n}", v), zh.replace("{n}", v)
                    pairs.append(Pair(e, z, m.id, m.family, _split(e, z, test_share)))
    return pairs


def corpus_digest(pairs: Sequence[Pair]) -> str:
    """A short hash of the corpus (part of the cache key of a trained translator)."""
    return hashlib.sha256(json.dumps([asdict(p) for p in pairs], ensure_ascii=False).encode()).hexdigest()[:10]


# --- prompts and training data -------------------------------------------------------------------

def translation_record(text: str, src: str, tgt: str, target: str = ""):
    """The chapter 04 Record asking to translate ``text`` from ``src`` into ``tgt``."""
    from ...data.records import Record

    if (src, tgt) not in INSTRUCTIONS:
        raise ValueError(f"no direction {src}->{tgt}; known: {sorted(INSTRUCTIONS)}")
    return Record(INSTRUCTIONS[(src, tgt)], text, target)


def training_records(pairs: Sequence[Pair], split: str = "train") -> list:
    """Both directions of every pair of ``split`` as Records."""
    out = []
    for p in pairs:
        if p.split == split:
            out.append(translation_record(p.en, "en", "zh", p.zh))
            out.append(translation_record(p.zh, "zh", "en", p.en))
    return out


@dataclass(frozen=True)
class TranslatorRecipe:
    """Everything that determines a trained course translator."""

    vocab_size: int = 1200
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    steps: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0


def translator_recipe(profile: Optional[Profile] = None) -> TranslatorRecipe:
    """The recipe per profile: seconds in ci, a couple of minutes on 2 CPU cores in cpu."""
    p = profile or get_profile()
    if p.name == "ci":
        return TranslatorRecipe()
    return TranslatorRecipe(n_layer=4, n_head=4, n_embd=128, steps=p.pick(ci=60, cpu=700, gpu=1500))


def train_translator(recipe: TranslatorRecipe, pairs: Optional[Sequence[Pair]] = None,
                     progress: bool = True, device: Optional[torch.device | str] = None):
    """Train a BPE tokenizer and a TinyGPT translator from scratch; returns (model, tokenizer, result)."""
    from ...data.collate import DataCollatorForInstructions, encode_dataset
    from ...nn.gpt import GPTConfig, TinyGPT
    from ...tokenization import train_bpe
    from ...train import TrainConfig, train

    pairs = list(pairs) if pairs is not None else parallel_pairs()
    texts = [t for p in pairs for t in (p.en, p.zh)]
    # the prompt's fixed words, as often as they occur in training, so BPE gives them whole tokens
    texts += [f"### Instruction:\n{i}\n\n### Response:\n" for i in INSTRUCTIONS.values()] * len(pairs)
    tokenizer = train_bpe(texts, recipe.vocab_size, model_max_length=recipe.block_size)
    data, _ = encode_dataset(training_records(pairs, "train"), tokenizer, recipe.block_size, "chat")
    torch.manual_seed(recipe.seed)
    model = TinyGPT(GPTConfig(vocab_size=len(tokenizer), block_size=recipe.block_size, n_layer=recipe.n_layer,
                              n_head=recipe.n_head, n_embd=recipe.n_embd))
    config = TrainConfig(max_steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                         warmup_steps=max(1, recipe.steps // 20), min_lr_ratio=0.1, weight_decay=0.01,
                         group_by_length=True, seed=recipe.seed, progress=progress)
    result = train(model, data, DataCollatorForInstructions(tokenizer), config, device=device or get_device())
    return model.cpu().eval(), tokenizer, result


def course_translator_dir(profile: Optional[Profile] = None, progress: bool = True) -> Path:
    """Cache directory of the trained course translator for ``profile`` (trained on first use)."""
    from ...files import build_once
    from ...tokenization import save_tokenizer

    p = profile or get_profile()
    recipe, pairs = translator_recipe(p), parallel_pairs()
    key = hashlib.sha256(json.dumps([CORPUS_VERSION, asdict(recipe), corpus_digest(pairs)]).encode()).hexdigest()[:10]

    def build(out: Path) -> None:
        model, tokenizer, result = train_translator(recipe, pairs, progress=progress)
        torch.save(model.state_dict(), out / "model.pt")
        save_tokenizer(tokenizer, out / "tokenizer")
        meta = {"gpt_config": model.config_dict(), "recipe": asdict(recipe), "profile": p.name,
                "pairs": len(pairs), "train_examples": 2 * sum(x.split == "train" for x in pairs),
                "parameters": model.num_parameters(), "seconds": result.seconds,
                "final_loss": result.history.train[-1]["loss"], "history": result.history.train}
        (out / "meta.json").write_text(json.dumps(meta, indent=1))

    return build_once(cache_dir() / f"translator-{p.name}-{key}", build)


def load_translator_model(profile: Optional[Profile] = None, progress: bool = True):
    """(model, tokenizer, meta) of the cached course translator, trained on first use."""
    from ...nn.gpt import GPTConfig, TinyGPT
    from ...tokenization import load_bpe

    path = course_translator_dir(profile, progress)
    meta = json.loads((path / "meta.json").read_text())
    model = TinyGPT(GPTConfig(**meta["gpt_config"]))
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), load_bpe(path / "tokenizer"), meta


def sample_pairs(pairs: Sequence[Pair], n: int, split: str = "test", seed: int = 0) -> list[Pair]:
    """Up to ``n`` pairs of ``split``, drawn reproducibly."""
    pool = [p for p in pairs if p.split == split]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def meaning_key(meaning: Meaning) -> str:
    """What counts as "the same meaning": the verifiable family if any (its renderings are one task), else the id."""
    return meaning.family or meaning.id


def nearest_meaning(text: str, lang: str = "en", meanings: Optional[Sequence[Meaning]] = None) -> tuple[str, float]:
    """(meaning key, similarity) of the corpus sentence closest to ``text`` (ROUGE-L; 1.0 for an exact copy).

    The course translator can only write what its corpus taught it, so the nearest corpus sentence
    is a good reading of what a round trip *means*: chapter 07 uses it as the ground truth against
    which the filters are graded. Slots are compared with their digits filled in.
    """
    from ...text import rouge_l_tokens, tokenize

    table = _sentences(lang) if meanings is None else _expand(meanings, lang)
    if text in table[0]:
        return table[0][text], 1.0
    tokens = tokenize(text)
    best, score = "", -1.0
    for key, sentence_tokens in table[1]:
        s = rouge_l_tokens(sentence_tokens, tokens)
        if s > score:
            best, score = key, s
    return best, score


def _expand(meanings: Sequence[Meaning], lang: str) -> tuple[dict, list]:
    """({sentence: key}, [(key, tokens)]) of every rendering in ``lang``, slots filled."""
    from ...text import tokenize

    exact, tokenized = {}, []
    for m in meanings:
        for sentence in getattr(m, lang):
            for c in ([sentence.replace("{n}", v) for v in SLOT_VALUES] if "{n}" in sentence else [sentence]):
                exact.setdefault(c, meaning_key(m))
                tokenized.append((meaning_key(m), tokenize(c)))
    return exact, tokenized


@functools.lru_cache(maxsize=2)
def _sentences(lang: str) -> tuple[dict, list]:
    return _expand(load_meanings(), lang)
