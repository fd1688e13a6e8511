"""Chapter 07: round-trip translation (back-translation) of instructions into paraphrases.

A translation model gives P(y | x) = prod_t P(y_t | y_<t, x): it writes the target sentence one
token at a time, each conditioned on the source and on what it has written so far. Translating
an instruction into a pivot language and back (en -> zh -> en) gives a sentence that should mean
the same but may be worded differently: a paraphrase, i.e. new training phrasings for free.

Every translator here is a thin layer over the course's one model interface, ``instructlib.models.LLM``
(``complete`` / ``chat``), so batching, sampling, beams and seeds work the same for all three:

* ``CourseTranslator``: the course's own small translator (``translator.py``), offline;
* ``MarianTranslator``: Helsinki-NLP opus-mt models (Marian seq2seq), ``gpu`` profile or a local HF
  cache. opus-mt-en-zh serves several Chinese variants and needs the target token ``>>cmn_Hans<<``
  at the start of every source sentence; ``src_lang``/``tgt_lang`` arguments do nothing for Marian;
* ``PromptedTranslator``: a chat model asked to translate (SmolLM2-135M is too small to do it well,
  which chapter 07 shows, and which is why the filters of ``meaning_filters`` exist).

``round_trip`` returns one row per candidate paraphrase with its provenance (pivot sentence, both
translators, sampling settings, sample index).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
# opus-mt-en-zh is multi-target: the first source token chooses the Chinese variant.
MARIAN_TARGET_TOKENS = {("en", "zh"): ">>cmn_Hans<<"}


@dataclass
class Translator:
    """Translate ``src`` -> ``tgt`` with an ``LLM``; subclasses only say how a text becomes a prompt."""

    llm: Any
    src: str
    tgt: str
    name: str = ""
    max_new_tokens: int = 48
    generate_kwargs: dict = field(default_factory=dict)  # extra arguments for the LLM (e.g. num_beams)

    def __post_init__(self) -> None:
        for lang in (self.src, self.tgt):
            if lang not in LANGUAGE_NAMES:
                raise ValueError(f"unknown language {lang!r}; known: {sorted(LANGUAGE_NAMES)}")
        if self.src == self.tgt:
            raise ValueError(f"source and target are both {self.src!r}")
        self.name = self.name or f"{type(self).__name__}({getattr(self.llm, 'name', '?')}, {self.src}->{self.tgt})"

    def prompts(self, texts: Sequence[str]) -> list:
        """What the LLM is given for each text (a string for ``complete``)."""
        raise NotImplementedError

    def _run(self, prompts: list, **kw) -> list[str]:
        return self.llm.complete(prompts, **kw)

    def translate(self, texts: Sequence[str], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                  seed: Optional[int] = None, batch_size: int = 16, progress: bool = False) -> list[list[str]]:
        """``n`` translations per text (greedy when ``temperature == 0``; then ``n`` should be 1)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        texts = list(texts)
        if not texts:
            return []
        prompts = [p for p in self.prompts(texts) for _ in range(n)]  # samples of one text share a batch
        outs = self._run(prompts, max_new_tokens=self.max_new_tokens, temperature=temperature, top_p=top_p,
                         seed=seed, batch_size=batch_size, progress=progress, **self.generate_kwargs)
        outs = [o.strip() for o in outs]
        return [outs[i * n:(i + 1) * n] for i in range(len(texts))]


class CourseTranslator(Translator):
    """The course translator: chapter 05's chat-template prompt "Translate into Chinese." + the text."""

    def prompts(self, texts: Sequence[str]) -> list[str]:
        """Chat-template prompts of the translation Records."""
        from ..data.prompts import render_for_inference
        from .translator import translation_record

        return [render_for_inference(translation_record(t, self.src, self.tgt), "chat", self.llm.tokenizer)
                for t in texts]

    def _run(self, prompts: list, **kw) -> list[str]:
        return self.llm.complete(prompts, stop=("\n",), **kw)


class MarianTranslator(Translator):
    """A Marian (opus-mt) model: the source text, preceded by the target-language token when needed."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target_token = MARIAN_TARGET_TOKENS.get((self.src, self.tgt))

    def prompts(self, texts: Sequence[str]) -> list[str]:
        """``>>cmn_Hans<< text`` for en->zh; the bare text for zh->en (a single-target model).

        ``load_llm("opus-mt-en-zh")`` already puts the token in its ``prefix``: then it is not added twice.
        """
        if not self.target_token or self.target_token in getattr(self.llm, "prefix", ""):
            return list(texts)
        return [f"{self.target_token} {t}" for t in texts]


PROMPTED_TEMPLATE = ("Translate this {src} text into {tgt}. Reply with the translation only.\n\n{text}")


class PromptedTranslator(Translator):
    """A chat model asked to translate (one user turn per text)."""

    def prompts(self, texts: Sequence[str]) -> list:
        """One conversation per text."""
        return [[{"role": "user", "content": PROMPTED_TEMPLATE.format(
            src=LANGUAGE_NAMES[self.src], tgt=LANGUAGE_NAMES[self.tgt], text=t)}] for t in texts]

    def _run(self, prompts: list, **kw) -> list[str]:
        return [o.strip().split("\n")[0] for o in self.llm.chat(prompts, **kw)]


def course_translators(profile=None, progress: bool = True) -> tuple[CourseTranslator, CourseTranslator]:
    """(en->zh, zh->en) course translators sharing one cached model (trained on first use)."""
    from ..models import LLM
    from .translator import load_translator_model

    model, tokenizer, _ = load_translator_model(profile, progress)
    llm = LLM.wrap(model, tokenizer)
    return CourseTranslator(llm, "en", "zh", name="course en->zh"), CourseTranslator(llm, "zh", "en", name="course zh->en")


def marian_translators(device=None, num_beams: int = 1) -> tuple[MarianTranslator, MarianTranslator]:
    """(en->zh, zh->en) opus-mt translators (hub or local cache: ``gpu`` profile)."""
    from ..models import load_llm

    kw = {"num_beams": num_beams} if num_beams > 1 else {}
    return (MarianTranslator(load_llm("opus-mt-en-zh", device=device), "en", "zh", name="opus-mt-en-zh", generate_kwargs=kw),
            MarianTranslator(load_llm("opus-mt-zh-en", device=device), "zh", "en", name="opus-mt-zh-en", generate_kwargs=kw))


def round_trip(texts: Sequence[str], forward: Translator, backward: Translator, n: int = 4, *,
               ids: Optional[Sequence[str]] = None, temperature: float = 0.8, top_p: float = 0.95,
               forward_temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
               progress: bool = False) -> list[dict]:
    """Candidate paraphrases: ``texts`` -> pivot (greedy by default) -> ``n`` sampled back-translations.

    Returns one dict per candidate: ``id`` (``<source id>/rt<k>``), ``source_id``, ``source``,
    ``pivot``, ``paraphrase``, ``lang``, ``pivot_lang``, ``forward``, ``backward``, ``temperature``,
    ``top_p``, ``seed``, ``sample``.
    """
    if forward.tgt != backward.src or forward.src != backward.tgt:
        raise ValueError(f"{forward.name} then {backward.name} is not a round trip")
    texts = list(texts)
    ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
    pivots = [p[0] for p in forward.translate(texts, temperature=forward_temperature, seed=seed,
                                              batch_size=batch_size, progress=progress)]
    backs = backward.translate(pivots, n=n, temperature=temperature, top_p=top_p, seed=seed,
                               batch_size=batch_size, progress=progress)
    rows = []
    for sid, text, pivot, cands in zip(ids, texts, pivots, backs):
        for k, cand in enumerate(cands):
            rows.append({"id": f"{sid}/rt{k}", "source_id": sid, "source": text, "pivot": pivot,
                         "paraphrase": cand, "lang": forward.src, "pivot_lang": forward.tgt,
                         "forward": forward.name, "backward": backward.name, "temperature": temperature,
                         "top_p": top_p, "seed": seed, "sample": k})
    return rows
