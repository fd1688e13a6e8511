"""Chapter 07: training data phrased with round-trip paraphrases of the training phrasings.

Every training phrasing of the verifiable families ("Add the two numbers.", ...) goes through the
course translator English -> Chinese (greedy) -> English (``n`` samples), the candidates go through
chapter 07's meaning filters (``meaning_filters.default_checks``: script, vocabulary, length ratio,
numbers, chrF fidelity, novelty), and what survives is the family's *paraphrase pool*.
``paraphrased_examples`` then gives the inputs of a split (``verifiable.make_examples``) with each
instruction replaced by a paraphrase from its family's pool; chapters 07 and 09 train on the pool
itself through chapter 06's testbed (``unfiltered_paraphrases`` is the pool before any filter).

The pool is built once per profile and recipe and cached under ``config.cache_dir()``
(``paraphrases-<profile>-<key>/``: ``candidates.jsonl`` with every candidate, kept or not and why,
and ``pool.json`` with the kept paraphrases and the funnel). It does not depend on the ``seed`` of
``paraphrased_examples``, which only chooses the inputs and which paraphrase each one gets.

Two choices make the pool larger and cleaner than the defaults of ``run_backtranslate``:
more samples per phrasing (the translator's faithful rewordings repeat, so ``n`` must be large to
meet the rarer ones) and *fidelity first*: candidates meet the novelty filter in order of
decreasing chrF, so of two near-copies the more faithful one enters the pool and the garbled one
is the duplicate. In the ``ci`` profile the translator is trained for seconds: its pool is empty
or nearly so, and families without a kept paraphrase are left out (see ``paraphrased_examples``).
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ...config import Profile, as_profile, cache_dir
from ...data.records import Record
from ...data.verifiable import FAMILIES, Example, Split, make_examples
from ..funnel import Funnel

POOL_VERSION = 1
BACKTRANSLATION, UNFILTERED = "+ back-translation", "+ back-translation, unfiltered"   # pool labels (ch07-09)
ORDERS = ("fidelity", "source")


@dataclass(frozen=True)
class PoolRecipe:
    """Everything that decides the paraphrase pool besides the translator (part of the cache key)."""

    n: int = 32                # back-translations sampled per training phrasing
    temperature: float = 0.8   # of the way back (the way there is greedy)
    top_p: float = 0.95
    min_chrf: float = 50.0     # fidelity: chrF against the source phrasing
    max_rouge: float = 0.8     # novelty: ROUGE-L against the source and the family's pool
    order: str = "fidelity"    # "fidelity": best chrF meets the novelty filter first; "source": in source order
    seed: int = 0              # of the round trips' sampling


def pool_recipe(profile: "Optional[str | Profile]" = None) -> PoolRecipe:
    """The recipe per profile (``ci``: few samples, seconds)."""
    p = as_profile(profile)
    return PoolRecipe(n=p.pick(ci=4, cpu=32, gpu=32))


@dataclass
class ParaphrasePool:
    """The kept paraphrases per family, the funnel that kept them and every candidate with its fate."""

    paraphrases: dict[str, list[str]]
    funnel: Funnel
    candidates: list[dict]
    recipe: PoolRecipe
    path: Optional[Path] = None

    def __len__(self) -> int:
        return sum(map(len, self.paraphrases.values()))


def training_phrasings(families: Optional[Sequence[str]] = None) -> list[tuple[str, str]]:
    """(family, phrasing) for every training phrasing of ``families`` (default: all), in FAMILIES order."""
    names = list(FAMILIES) if families is None else list(families)
    return [(name, p) for name in names for p in FAMILIES[name].train_phrasings]


def build_pool(forward, backward, recipe: PoolRecipe = PoolRecipe(), families: Optional[Sequence[str]] = None,
               vocabulary: Optional[Sequence[str]] = None, batch_size: int = 64,
               progress: bool = False) -> ParaphrasePool:
    """Round-trip every training phrasing with ``forward``/``backward`` and filter; nothing cached.

    ``vocabulary``: the texts whose words the paraphrases may use (the translator's English corpus
    sentences for the course translator; ``None`` drops the vocabulary check, e.g. for opus-mt).
    Every candidate row gets ``family``, ``chrf``, ``kept`` and, when rejected, ``filter``/``reason``.
    """
    from .roundtrip import round_trip

    if recipe.order not in ORDERS:
        raise ValueError(f"order={recipe.order!r} is not one of {ORDERS}")
    phrasings = training_phrasings(families)
    rows = round_trip([p for _, p in phrasings], forward, backward, n=recipe.n, temperature=recipe.temperature,
                      top_p=recipe.top_p, seed=recipe.seed, batch_size=batch_size, progress=progress,
                      ids=[f"{name}/{k}" for k, (name, _) in enumerate(phrasings)])
    for row in rows:
        row["family"] = row["source_id"].split("/")[0]
    kept, funnel = filter_candidates(rows, recipe, vocabulary)
    return ParaphrasePool(kept, funnel, rows, recipe)


def filter_candidates(rows: Sequence[dict], recipe: PoolRecipe = PoolRecipe(), vocabulary: Optional[Sequence[str]] = None,
                      with_checker: bool = False) -> tuple[dict[str, list[str]], Funnel]:
    """Chapter 07's filters over round-trip rows that carry a ``family``: (kept paraphrases per family, funnel).

    The rows meet the filters in ``recipe.order`` (the novelty pool starts from each family's training
    phrasings); each row is marked in place (``chrf``, ``kept``, ``filter``, ``reason``), so pass
    copies to compare settings. ``with_checker`` adds the checker filter (rows need the scores of
    ``meaning_filters.add_checker_scores``).
    """
    from .roundtrip import apply_checks
    from .meaning_filters import chrf, default_checks

    if recipe.order not in ORDERS:
        raise ValueError(f"order={recipe.order!r} is not one of {ORDERS}")
    for row in rows:
        row.pop("filter", None), row.pop("reason", None)
        if "chrf" not in row:
            row["chrf"] = round(chrf(row["source"], row["paraphrase"]), 3)
    families = list(dict.fromkeys(row["family"] for row in rows))
    pool = {name: list(FAMILIES[name].train_phrasings) for name in families if name in FAMILIES}
    checks = default_checks(pool=pool, min_chrf=recipe.min_chrf, max_rouge=recipe.max_rouge, vocabulary=vocabulary,
                            with_checker=with_checker)
    ordered = sorted(rows, key=lambda r: -r["chrf"]) if recipe.order == "fidelity" else list(rows)  # stable sort
    funnel = Funnel()
    apply_checks(ordered, checks, funnel)
    kept: dict[str, list[str]] = {name: [] for name in families}
    for row in ordered:
        if row["kept"]:
            kept[row["family"]].append(row["paraphrase"])
    return kept, funnel


def _pool_key(recipe: PoolRecipe, translator_dir: Path) -> str:
    phrasings = training_phrasings()
    blob = json.dumps([POOL_VERSION, asdict(recipe), translator_dir.name, phrasings])
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def paraphrase_pool(profile: "Optional[str | Profile]" = None, recipe: Optional[PoolRecipe] = None,
                    progress: bool = False) -> ParaphrasePool:
    """The cached pool of the course translator for ``profile`` (built on first use: translator included)."""
    from ...files import atomic_write_json, atomic_write_jsonl, build_once
    from .roundtrip import course_translators
    from .translator import course_translator_dir, load_meanings

    p = as_profile(profile)
    recipe = recipe or pool_recipe(p)
    translator_dir = course_translator_dir(p, progress)
    target = cache_dir() / f"paraphrases-{p.name}-{_pool_key(recipe, translator_dir)}"

    def build(out: Path) -> None:
        forward, backward = course_translators(p, progress)
        vocabulary = [t for m in load_meanings() for t in m.en]
        pool = build_pool(forward, backward, recipe, vocabulary=vocabulary, progress=progress)
        atomic_write_jsonl(out / "candidates.jsonl", pool.candidates)
        atomic_write_json(out / "pool.json", {"recipe": asdict(recipe), "profile": p.name,
                                              "translator": translator_dir.name, "paraphrases": pool.paraphrases,
                                              "funnel": pool.funnel.to_dict()})

    path = build_once(target, build)
    meta = json.loads((path / "pool.json").read_text(encoding="utf-8"))
    with open(path / "candidates.jsonl", encoding="utf-8") as f:
        candidates = [json.loads(line) for line in f if line.strip()]
    return ParaphrasePool(meta["paraphrases"], Funnel.from_dict(meta["funnel"]), candidates, recipe, path)


def unfiltered_paraphrases(pool: ParaphrasePool, families: Sequence[str]) -> dict[str, list[str]]:
    """Every distinct non-empty round trip of each family that differs from its source: the pool before any filter."""
    from ...data.wordings import distinct

    return {f: distinct(r["paraphrase"] for r in pool.candidates if r["family"] == f and r["paraphrase"].strip()
                        and r["paraphrase"] != r["source"]) for f in families}


def rephrase(examples: Sequence[Example], paraphrases: Mapping[str, Sequence[str]], seed: int = 0) -> list[Example]:
    """``examples`` with each instruction replaced by a paraphrase of its family (input and output kept).

    Each family's paraphrases are used in turn, in an order shuffled by ``seed``, so every one of
    them is used about equally often. A family with no paraphrase is a ``ValueError``.
    """
    cycles: dict[str, list[str]] = {}
    used: dict[str, int] = {}
    out = []
    for e in examples:
        if e.family not in cycles:
            options = sorted(set(paraphrases.get(e.family, ())))
            if not options:
                raise ValueError(f"no paraphrase of family {e.family!r}")
            random.Random(f"{seed}/{e.family}/rephrase").shuffle(options)
            cycles[e.family], used[e.family] = options, 0
        text = cycles[e.family][used[e.family] % len(cycles[e.family])]
        used[e.family] += 1
        out.append(Example(Record(text, e.record.input, e.record.output), e.family))
    return out


def paraphrased_examples(split: Split, n_per_family: int, *, seed: int = 0, families: Optional[Sequence[str]] = None,
                         profile: "Optional[str | Profile]" = None, progress: bool = False) -> list[Example]:
    """The inputs of ``make_examples(split, n_per_family, seed)``, phrased with kept round-trip paraphrases.

    Deterministic: the pool is cached per profile (``paraphrase_pool``), ``seed`` chooses the inputs
    and the paraphrase of each. Families whose pool is empty are left out (so the result can be
    shorter than ``n_per_family`` x families, and empty in the ``ci`` profile, whose seconds-trained
    translator writes nothing that passes the filters); ``paraphrase_pool(profile).paraphrases``
    says which families have paraphrases. Unknown family names raise ``KeyError``.
    """
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    pool = paraphrase_pool(profile, progress=progress).paraphrases
    have = [n for n in names if pool.get(n)]
    if not have:
        return []
    return rephrase(make_examples(split, n_per_family, seed, families=have), pool, seed)
