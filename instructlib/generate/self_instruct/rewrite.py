"""Chapter 08: instruction rewriting — a language model writes new wordings of tasks it is shown.

Self-Instruct asks a model for new *tasks*; for the course's testbed we need new *wordings* of
known tasks (the variant the Self-Instruct and Unnatural Instructions papers call instruction
rephrasing). The prompt is a numbered list of wordings of one task, left open at the next number:

    Here are different ways to ask for the same task.
    1. Separate the words with commas.
    ...
    7.

As in Self-Instruct, each prompt mixes human seeds with wordings the model wrote earlier
(``RewriteRecipe.machine`` of them once there are any), the model samples one line, and the
candidate goes through filters (``rewrite_checks``): finished, length, no numbers, task words,
no leak into the test wordings, and ROUGE-L novelty against everything already kept.

``build_rewrites`` does the sampling for any ``LLM``; ``rewrite_pool`` caches the pool of the
profile's model (SmolLM2-135M-Instruct offline) for the testbed families.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ...config import Profile, as_profile, cache_dir
from ...data.wordings import content_words, guard_wordings, load_wordings
from ...text import rouge_l, words
from ..dedup import DedupIndex
from ..funnel import Funnel

REWRITE_VERSION = 1
SELF_INSTRUCT = "+ self-instruct"   # the pool label chapters 08-09 train under
PROMPT_HEAD = "Here are different ways to ask for the same task.\n"


@dataclass(frozen=True)
class RewriteRecipe:
    """Everything that decides a rewrite pool besides the model and the seeds (part of the cache key)."""

    samples: int = 192          # candidates sampled per family
    batch: int = 32             # prompts per generation call (one family per call)
    demos: int = 6              # wordings listed in each prompt ...
    machine: int = 2            # ... of which up to this many are earlier kept rewrites
    temperature: float = 0.9
    top_p: float = 0.95
    max_new_tokens: int = 24
    min_words: int = 3
    max_words: int = 25
    max_rouge: float = 0.7      # novelty: ROUGE-L F against seeds and kept rewrites (Self-Instruct's 0.7)
    leak_rouge: float = 0.7     # a candidate this close to a test wording is dropped
    seed: int = 0


def rewrite_recipe(profile: "Optional[str | Profile]" = None) -> RewriteRecipe:
    """The recipe per profile (``ci``: a handful of samples)."""
    p = as_profile(profile)
    return RewriteRecipe(samples=p.pick(ci=8, cpu=192, gpu=384), batch=p.pick(ci=4, cpu=32, gpu=64))


def rewrite_prompt(demos: Sequence[str]) -> str:
    """The numbered list of ``demos``, open at the next number."""
    return PROMPT_HEAD + "".join(f"{i}. {d}\n" for i, d in enumerate(demos, 1)) + f"{len(demos) + 1}."


def rewrite_checks(seeds: Sequence[str], guard: Sequence[str], recipe: RewriteRecipe,
                   novelty: DedupIndex) -> list[tuple[str, Callable[[dict], Optional[str]]]]:
    """The filters of one family, in order; each takes a candidate row (``text``, ``finish``)."""
    task_words = set().union(*(content_words(s) for s in seeds))

    def complete(row):
        return "cut at the token limit" if row["finish"] == "length" else None

    def length(row):
        n = len(words(row["text"]))
        return "too short" if n < recipe.min_words else "too long" if n > recipe.max_words else None

    def form(row):
        text = row["text"]
        if re.search(r"\d", text):
            return "has a number"       # "Repeat steps 5-6": list debris, or a changed task
        return None if text[:1].isupper() else "not a sentence"

    def on_task(row):
        return None if content_words(row["text"]) & task_words else "no task word"

    def leak(row):
        hit = any(rouge_l(g, row["text"]) >= recipe.leak_rouge for g in guard)
        return "close to a test wording" if hit else None

    def novel(row):
        return None if novelty.add_if_new(row["text"]) else "near-duplicate"

    return [("complete", complete), ("length", length), ("form", form), ("task words", on_task),
            ("leak", leak), ("novelty", novel)]


@dataclass
class RewritePool:
    """The kept rewrites per family, the funnel that kept them and every candidate with its fate."""

    rewrites: dict[str, list[str]]
    funnel: Funnel
    candidates: list[dict]
    recipe: RewriteRecipe
    path: Optional[Path] = None


def build_rewrites(llm, seeds: dict[str, Sequence[str]], recipe: RewriteRecipe = RewriteRecipe(),
                   guard: Optional[dict[str, Sequence[str]]] = None, progress: bool = False) -> RewritePool:
    """Sample ``recipe.samples`` rewrites per family from ``llm`` and filter them; nothing cached.

    ``seeds``: the human wordings per family; ``guard``: per family, the test wordings a kept
    rewrite must not reproduce (ROUGE-L >= ``recipe.leak_rouge``).
    """
    from tqdm.auto import tqdm

    from ..backtranslation.roundtrip import apply_checks

    funnel, candidates, kept = Funnel(), [], {}
    rng = random.Random(recipe.seed)
    bar = tqdm(total=recipe.samples * len(seeds), desc="rewrites", disable=not progress)
    for family, human in seeds.items():
        novelty = DedupIndex(threshold=recipe.max_rouge)
        for s in human:
            novelty.add(s)
        checks = rewrite_checks(human, (guard or {}).get(family, ()), recipe, novelty)
        kept[family] = []
        for start in range(0, recipe.samples, recipe.batch):
            n = min(recipe.batch, recipe.samples - start)
            prompts = []
            for _ in range(n):
                machine = rng.sample(kept[family], min(recipe.machine, len(kept[family])))
                demos = rng.sample(list(human), min(len(human), recipe.demos - len(machine))) + machine
                rng.shuffle(demos)
                prompts.append(rewrite_prompt(demos))
            outs = llm.complete(prompts, max_new_tokens=recipe.max_new_tokens, temperature=recipe.temperature,
                                top_p=recipe.top_p, stop=["\n"], seed=rng.randrange(2**31), batch_size=recipe.batch,
                                return_finish=True)
            rows = [{"family": family, "text": " ".join(text.split()), "finish": finish} for text, finish in outs]
            kept[family] += [row["text"] for row in apply_checks(rows, checks, funnel)]
            candidates += rows
            bar.update(n)
    bar.close()
    return RewritePool(kept, funnel, candidates, recipe)


def rewrite_pool(families: Sequence[str], profile: "Optional[str | Profile]" = None,
                 recipe: Optional[RewriteRecipe] = None, progress: bool = False) -> RewritePool:
    """The cached pool of the profile's self-instruct model for ``families``, seeded with chapter 05's wordings."""
    from ...data.io import read_jsonl
    from ...files import atomic_write_json, atomic_write_jsonl, build_once
    from ...models import SMOLLM2, load_llm

    p = as_profile(profile)
    recipe = recipe or rewrite_recipe(p)
    seeds = {f: list(load_wordings(f).human[:6]) for f in families}   # chapter 05's training phrasings
    blob = json.dumps([REWRITE_VERSION, asdict(recipe), SMOLLM2, seeds])
    target = cache_dir() / f"rewrites-{p.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    def build(out: Path) -> None:
        pool = build_rewrites(load_llm(SMOLLM2), seeds, recipe, {f: guard_wordings(f) for f in families}, progress)
        atomic_write_jsonl(out / "candidates.jsonl", pool.candidates)
        atomic_write_json(out / "pool.json", {"recipe": asdict(recipe), "model": SMOLLM2, "seeds": seeds,
                                              "rewrites": pool.rewrites, "funnel": pool.funnel.to_dict()})

    path = build_once(target, build)
    data = json.loads((path / "pool.json").read_text(encoding="utf-8"))
    rows = read_jsonl(path / "candidates.jsonl")
    return RewritePool(data["rewrites"], Funnel.from_dict(data["funnel"]), rows, recipe, path)
