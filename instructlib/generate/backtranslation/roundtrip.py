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
        from ...data.prompts import render_for_inference
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
    from ...models import LLM
    from .translator import load_translator_model

    model, tokenizer, _ = load_translator_model(profile, progress)
    llm = LLM.wrap(model, tokenizer)
    return CourseTranslator(llm, "en", "zh", name="course en->zh"), CourseTranslator(llm, "zh", "en", name="course zh->en")


def marian_translators(device=None, num_beams: int = 1) -> tuple[MarianTranslator, MarianTranslator]:
    """(en->zh, zh->en) opus-mt translators (hub or local cache: ``gpu`` profile)."""
    from ...models import load_llm

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


# --- a resumable pipeline: records in, paraphrased records out ----------------------------------

def source_id(text: str) -> str:
    """A stable id for a source sentence (crc32 of its text)."""
    import zlib

    return f"s{zlib.crc32(text.encode()):08x}"


def apply_checks(rows: Sequence[dict], checks: Sequence[tuple], funnel) -> list[dict]:
    """Run ``checks`` on each row (first failure stops it) counting in ``funnel``; mark rows in place.

    Every row gets ``kept`` (bool) and, when rejected, ``filter`` and ``reason``; returns the kept rows.
    """
    kept = []
    for row in rows:
        row["kept"] = True
        for name, check in checks:
            reason = check(row)
            funnel.count(name, reason)
            if reason is not None:
                row.update(kept=False, filter=name, reason=reason)
                break
        if row["kept"]:
            kept.append(row)
    return kept


def funnel_from_rows(rows: Sequence[dict], names: Sequence[str]):
    """The Funnel that ``apply_checks`` counted, rebuilt from marked rows (e.g. after a resumed run)."""
    from ..funnel import Funnel

    funnel = Funnel()
    for row in rows:
        for name in names:
            if row.get("filter") == name:
                funnel.count(name, row["reason"])
                break
            funnel.count(name)
    return funnel


def run_backtranslate(records: Sequence, out: str, forward: Translator, backward: Translator, *, n: int = 4,
                      seed: int = 0, temperature: float = 0.8, top_p: float = 0.95, min_chrf: float = 30.0,
                      max_rouge: float = 0.8, chunk: int = 16, batch_size: int = 16, progress: bool = True):
    """Paraphrase the instructions of ``records`` by round trip, filter, write records; resumable.

    Candidates (kept or not, with the reason) go to ``<out>.candidates.jsonl`` through a ``JSONLStage``,
    ``chunk`` source instructions at a time: a killed run loses at most one chunk and a rerun goes on
    where it stopped. At the end ``out`` is written atomically: one Alpaca record per input record and
    kept paraphrase of its instruction, with ``source_instruction``, ``pivot`` and ``id``. Returns the Funnel.
    ``out`` is always rebuilt from the candidates, so deleting or cutting it loses nothing; a source
    counts as done only when all ``n`` of its candidates are in the file.
    """
    from pathlib import Path

    from tqdm.auto import tqdm

    from ...files import atomic_write_jsonl
    from ..funnel import Funnel
    from .meaning_filters import default_checks
    from ..stage import JSONLStage

    out = Path(out)
    sources = list(dict.fromkeys(r.instruction for r in records))
    ids = {s: source_id(s) for s in sources}
    with JSONLStage(out.with_name(out.stem + ".candidates.jsonl")) as stage:
        previous = stage.rows()
        pool = {"all": sources + [r["paraphrase"] for r in previous if r.get("kept")]}
        # one novelty pool for the whole file: the instructions themselves, then every kept paraphrase
        checks = default_checks(pool=pool, min_chrf=min_chrf, max_rouge=max_rouge, group=lambda row: "all")
        # a source is done when all its n candidates are (a torn last line loses one: its source is redone)
        todo = [s for s in sources if any(f"{ids[s]}/rt{k}" not in stage.done for k in range(n))]
        scratch = Funnel()  # this run's part only; the returned funnel counts every candidate
        for i in tqdm(range(0, len(todo), chunk), desc="round trips", disable=not progress or not todo):
            part = todo[i:i + chunk]
            rows = round_trip(part, forward, backward, n=n, ids=[ids[s] for s in part], temperature=temperature,
                              top_p=top_p, seed=seed + i, batch_size=batch_size)
            rows = [row for row in rows if row["id"] not in stage.done]   # check only what will be written
            apply_checks(rows, checks, scratch)
            stage.extend(rows)
        rows = stage.rows()
    funnel = funnel_from_rows(rows, [name for name, _ in checks])
    by_source: dict = {}
    for row in rows:
        if row.get("kept"):
            by_source.setdefault(row["source"], []).append(row)
    result = [{"instruction": row["paraphrase"], "input": rec.input, "output": rec.output,
               "source_instruction": rec.instruction, "pivot": row["pivot"], "id": f"{row['id']}/{k}"}
              for k, rec in enumerate(records) for row in by_source.get(rec.instruction, [])]
    atomic_write_jsonl(out, result)
    return funnel


def _translators(name: str, profile=None) -> tuple[Translator, Translator]:
    if name == "course":
        return course_translators(profile)
    if name == "opus-mt":
        return marian_translators()
    raise ValueError(f"unknown translator {name!r}")


def register_cli(subparsers) -> None:
    """Add ``instructlib generate backtranslate`` (round-trip paraphrases of a record file's instructions)."""
    p = subparsers.add_parser(
        "backtranslate", help="paraphrase instructions by round-trip translation en->zh->en (chapter 07)",
        description="Translate every distinct instruction of an Alpaca/JSONL record file into Chinese and back "
                    "(n samples), keep the paraphrases that pass the meaning filters, and write one record per "
                    "input record and kept paraphrase. Candidates and reasons go to OUT.candidates.jsonl; "
                    "a killed run resumes where it stopped.")
    p.add_argument("--input", required=True, metavar="FILE", help="Alpaca records (JSON array or JSONL)")
    p.add_argument("--out", required=True, metavar="FILE", help="output JSONL of paraphrased records")
    p.add_argument("-n", type=int, default=4, help="back-translations sampled per instruction (default 4)")
    p.add_argument("--translator", choices=("course", "opus-mt"), default="course",
                   help="course: the offline course translator; opus-mt: Helsinki-NLP models (hub or HF cache)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--min-chrf", type=float, default=30.0, help="fidelity: minimum chrF against the source")
    p.add_argument("--max-rouge", type=float, default=0.8, help="novelty: maximum ROUGE-L against source and pool")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    import sys

    from ...data.io import load_records
    from ...data.records import DataError

    try:
        records = load_records(args.input)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: {args.input}: no records", file=sys.stderr)
        return 2
    if args.n < 1:
        print("error: -n must be at least 1", file=sys.stderr)
        return 2
    forward, backward = _translators(args.translator)
    funnel = run_backtranslate(records, args.out, forward, backward, n=args.n, seed=args.seed,
                               temperature=args.temperature, min_chrf=args.min_chrf, max_rouge=args.max_rouge)
    print(funnel)
    print(f"wrote {args.out}")
    return 0
