"""Chapter 08: Self-Instruct — a language model grows an instruction set from a seed pool.

One *round* does what the reference pipeline does for one request batch:

1. build ``batch_size`` prompts of 8 instructions each (6 from the seed pool, 2 from the machine
   pool once it has some), shuffled, and let the model continue the numbered list;
2. split the continuations into candidate instructions and filter them (not cut off at
   ``max_new_tokens``, 3 < words <= 150, keyword blacklist, no "Write a program", no punctuation
   first, ROUGE-L <= 0.7 against the seeds and every instruction kept so far), counting every drop
   by reason in a ``Funnel``;
3. ask the model whether each kept instruction is a classification task, then generate instances
   output-first (classification) or input-first (the rest), parse and filter them (the last example
   of an output that ran out of tokens is dropped);
4. append the kept instructions to the machine pool and their instances to the output, as Alpaca
   records whose ``provenance`` names the model, the demos and every sampling parameter.

Variants: ``method="alpaca"`` (Alpaca: 3 seed demos with input and output, the model writes up to 20
whole tasks per prompt, ``<noinput>``), ``method="magpie"`` (Magpie: the chat template up to the user
turn and nothing else; the model writes a user query, then answers it).

Files, all append-only JSONL (``JSONLStage``), so a run killed at any point resumes exactly:
``out`` (the records), ``<out>.pool.jsonl`` (the machine pool, one row per kept instruction) and
``<out>.rounds.jsonl`` (one row per finished round: its funnel and every rejected candidate with
the reason). Round ``r`` samples its demos from the pool rows of rounds ``< r`` and seeds its
generation with ``seed + r``, so a rerun repeats an unfinished round identically and the stages
skip the rows that were already written. A round is logged after its pool rows and records, with their
counts; a resume first checks that the three files agree (``check_resume``: every logged round's
instructions and records all there, nothing from a round after the next one) and otherwise refuses,
naming the files to delete to start over, instead of resuming from state the output no longer matches;
a repeated round must also reproduce whatever rows of it a killed run had written.

``faithful=True`` reproduces the reference's handling of Chinese (and its ``capitalize()``) to
show what it does; the default counts CJK characters as words and compares them in ROUGE-L.

Cut-off outputs (``drop_truncated=True``, the default): ``LLM.complete(return_finish=True)`` says
when a text stopped at ``max_new_tokens`` ("length") instead of ending by itself. Its last piece is
then probably cut mid-sentence, so the filter ``complete`` drops it ("output cut at
max_new_tokens"): the last instruction of a numbered-list continuation (``faithful=True``: every
instruction of it, as the reference drops the whole response), the last task of an Alpaca response,
a Magpie query; and the funnel row ``complete example`` drops the last example of an instance
output (Self-Instruct's rule) and a cut Magpie answer.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ...data.io import load_tasks
from ...data.records import Task
from ...data.seeds import load_seed_tasks
from ...files import PathLike, read_jsonl_lenient
from ...text import has_cjk, tokenize
from . import prompts as P
from ..dedup import THRESHOLD, DedupIndex
from ..filters import ALPACA_BLACKLIST, SELF_INSTRUCT_BLACKLIST, instruction_checks, normalize_instruction
from ..funnel import Funnel
from ..stage import JSONLStage

METHODS = ("self-instruct", "alpaca", "magpie")
CUT = "output cut at max_new_tokens"   # the funnel's reason for a piece of text that ran out of tokens


@dataclass
class Sampling:
    """Generation settings for one kind of request; recorded in every record's provenance."""

    temperature: float
    top_p: float
    max_new_tokens: int
    stop: tuple[str, ...] = ()

    def kwargs(self) -> dict:
        """Keyword arguments for ``LLM.complete``."""
        return {"temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "stop": self.stop}


def default_sampling(method: str) -> dict[str, Sampling]:
    """The references' settings (token budgets scaled down; presence penalties have no HF equivalent)."""
    if method == "self-instruct":   # bootstrap_instructions.py: T 0.7, top_p 0.5; instances greedy
        return {"instruction": Sampling(0.7, 0.5, 256, P.INSTRUCTION_STOP),
                "classification": Sampling(0.0, 1.0, 3, ("\n", "Task")),
                "instances": Sampling(0.0, 1.0, 256, P.instance_stop(5))}
    if method == "alpaca":          # generate_instruction.py: T 1.0, top_p 1.0
        return {"instruction": Sampling(1.0, 1.0, 1024, P.ALPACA_STOP)}
    if method == "magpie":          # Magpie: T 1.0, top_p 1.0 for the query; greedy response
        return {"query": Sampling(1.0, 1.0, 96, ("\n\n",)), "response": Sampling(0.0, 1.0, 256)}
    raise ValueError(f"method={method!r} is not one of {METHODS}")


@dataclass
class SelfInstructConfig:
    """Everything that decides what a run generates (stored with each round; a resume must match)."""

    num_instructions: int = 100
    method: str = "self-instruct"
    batch_size: int = 8            # prompts per round (the reference's request batch: 5)
    num_prompt_instructions: int = 8
    num_machine_instructions: int = 2
    faithful: bool = False
    threshold: float = THRESHOLD
    max_instances: int = 5
    language: Optional[str] = None  # "en" / "zh": only seeds of that language in the prompts
    seed: int = 0
    max_rounds: Optional[int] = None  # stop after this many rounds even if short (a weak model)
    patience: int = 10              # ... or after this many rounds in a row that keep nothing
    llm_batch_size: int = 16        # prompts per forward pass (sampled text depends on it: recorded)
    sampling: dict[str, Sampling] = field(default_factory=dict)
    drop_truncated: bool = True     # drop what was cut at max_new_tokens (filter "complete")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {METHODS}")
        if self.language not in (None, "en", "zh"):
            raise ValueError(f"language={self.language!r} must be None, 'en' or 'zh'")
        if self.num_instructions < 1 or self.batch_size < 1 or self.llm_batch_size < 1:
            raise ValueError("num_instructions, batch_size and llm_batch_size must be at least 1")
        if not 0 <= self.num_machine_instructions <= self.num_prompt_instructions:
            raise ValueError("num_machine_instructions must be between 0 and num_prompt_instructions")
        self.sampling = {**default_sampling(self.method), **self.sampling}

    def identity(self) -> dict:
        """The settings that must not change between a run and its resume."""
        d = asdict(self)
        for key in ("num_instructions", "max_rounds", "patience"):
            d.pop(key)
        if not d["drop_truncated"]:   # runs logged before the option existed kept cut outputs: they still resume
            d.pop("drop_truncated")
        d["sampling"] = {k: {**v, "stop": list(v["stop"])} for k, v in d["sampling"].items()}
        return d


@dataclass
class RunResult:
    """What a (possibly resumed) run produced, totals over all its rounds."""

    funnel: Funnel
    machine_instructions: int
    records: int
    rounds: int
    candidates: int
    generation_seconds: float
    out: Path
    rejected: list[dict] = field(default_factory=list)   # {"instruction", "filter", "reason", "round"}

    @property
    def instructions_per_minute(self) -> float:
        """Kept machine instructions per minute of model time (all requests of the run)."""
        return 60 * self.machine_instructions / self.generation_seconds if self.generation_seconds else 0.0


def load_seed_pool(path: Optional[PathLike] = None, language: Optional[str] = None) -> list[Task]:
    """The seed pool: the course's 131 tasks, or any file in Self-Instruct's format (file:line errors)."""
    tasks = load_seed_tasks() if path is None else load_tasks(path)
    if language is not None:
        tasks = [t for t in tasks if has_cjk(t.instruction) == (language == "zh")]
    if not tasks:
        raise ValueError(f"no seed tasks{f' in language {language!r}' if language else ''}"
                         f"{f' in {path}' if path else ''}")
    return tasks


def sidecar_paths(out: PathLike) -> tuple[Path, Path, Path]:
    """(records, machine pool, rounds log) for output file ``out``."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out, out.with_name(stem + ".pool.jsonl"), out.with_name(stem + ".rounds.jsonl")


def _round_of(row: Any, records: bool) -> Optional[int]:
    """The round a pool row (``round``) or a record (``provenance.round``) belongs to; None if it has none."""
    holder = (row.get("provenance") if records else row) if isinstance(row, dict) else None
    r = holder.get("round") if isinstance(holder, dict) else None
    return r if isinstance(r, int) and not isinstance(r, bool) and r >= 0 else None


class ResumeError(ValueError):
    """An output whose files disagree (or a repeat that differs): resuming it would report what is not there."""


def _restart(paths: Sequence[Path]) -> str:
    """``; to start over delete A, B and C`` for those of ``paths`` that exist."""
    names = [str(p) for p in paths if p.exists()]
    return "; to start over delete " + " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def check_resume(out: PathLike, config: SelfInstructConfig) -> None:
    """ResumeError (``path: problem; to start over delete ...``) unless ``out``, its pool and its rounds log agree.

    Every round in the log must have all its instructions in the pool and all its records in ``out``
    (the log row is written after both, with their counts); rows of the round after the last logged
    one are a round a kill interrupted, which the resume repeats; anything later, or rows without a
    round, mean a file was lost, cut or replaced, and resuming would report rounds the output lacks.
    A torn last line is ignored here, as ``JSONLStage`` cuts it and redoes its row.
    """
    paths = sidecar_paths(out)
    if not any(p.exists() for p in paths):
        return
    restart = _restart(paths)
    rows = []
    for p in paths:
        try:
            rows.append(read_jsonl_lenient(p))
        except ValueError as err:
            raise ResumeError(f"{p}: not JSON Lines ({err}){restart}") from None
        except OSError as err:
            raise ResumeError(f"{p}: cannot read: {err.strerror or err}") from None
    records, pool, rounds = rows
    log = paths[2].name
    if not all(isinstance(row, dict) and isinstance(row.get("kept"), int) and isinstance(row.get("records"), int)
               for row in rounds) or [row.get("round") for row in rounds] != list(range(len(rounds))):
        raise ResumeError(f"{paths[2]}: not the rounds log of one run (rounds 0, 1, 2, ... with counts){restart}")
    if rounds and rounds[0].get("config") != config.identity():
        raise ResumeError(f"{paths[2]}: config: this output was started with different settings "
                          f"({rounds[0].get('config')}); use a new --out or the same settings")
    logged = ("missing" if not paths[2].exists() else
              f"{len(rounds)} finished round{'s' * (len(rounds) != 1)}" if rounds else "no finished round")
    for path, have, what, field_ in ((paths[1], pool, "instructions", "kept"),
                                     (paths[0], records, "records", "records")):
        counts = Counter(_round_of(row, path == paths[0]) for row in have)
        if None in counts:
            raise ResumeError(f"{path}: {counts[None]} rows without a round (not written by self-instruct){restart}")
        if rounds and not path.exists():
            total = sum(row[field_] for row in rounds)
            raise ResumeError(f"{path}: missing, but {log} logs {logged} with {total} {what}{restart}")
        for row in rounds:
            if counts[row["round"]] != row[field_]:
                raise ResumeError(f"{path}: {counts[row['round']]} {what} of round {row['round']}, "
                                  f"but {log} logs {row[field_]}{restart}")
        later = sorted(r for r in counts if r > len(rounds))
        if later:
            raise ResumeError(f"{paths[2]}: {logged}, but {path.name} has {what} of round {later[0]}{restart}")


def sample_demos(rng: random.Random, seed_items: Sequence[Any], machine_items: Sequence[Any],
                 n: int = 8, n_machine: int = 2) -> list[Any]:
    """``n`` prompt demos: up to ``n_machine`` from the machine pool, the rest from the seeds, shuffled."""
    demos = rng.sample(list(machine_items), min(n_machine, len(machine_items)))
    demos += rng.sample(list(seed_items), min(n - len(demos), len(seed_items)))
    rng.shuffle(demos)
    return demos


def _task_key(task: Task, index: int) -> str:
    return task.id or task.name or f"seed-{index}"


class SelfInstruct:
    """A Self-Instruct / Alpaca / Magpie run writing to ``out``; ``run()`` resumes where a previous one stopped."""

    def __init__(self, llm, seeds: Sequence[Task], out: PathLike, config: SelfInstructConfig):
        self.llm, self.config = llm, config
        self.seeds = list(seeds)
        if not self.seeds:
            raise ValueError("the seed pool is empty")
        self.seed_ids = [_task_key(t, i) for i, t in enumerate(self.seeds)]
        self.paths = sidecar_paths(out)
        check_resume(out, config)   # before the stages open (and create) the files
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.records = JSONLStage(self.paths[0])
        self.pool = JSONLStage(self.paths[1])
        self.rounds = JSONLStage(self.paths[2])
        blacklist = ALPACA_BLACKLIST if config.method == "alpaca" else SELF_INSTRUCT_BLACKLIST
        self.checks = instruction_checks(config.faithful, blacklist)
        self.tokenizer = (lambda s: tokenize(s, cjk=False)) if config.faithful else tokenize

    # ---- state -------------------------------------------------------------------------------
    def _finished_rounds(self) -> list[dict]:
        return sorted(self.rounds.rows(), key=lambda row: row["round"])

    def _pool_before(self, r: int) -> list[dict]:
        return [row for row in self.pool.rows() if row["round"] < r]

    def _sampling(self, name: str, r: int) -> dict:
        s = self.config.sampling[name]
        return {**asdict(s), "stop": list(s.stop), "seed": self.config.seed + r}

    def _complete(self, prompts: list[str], name: str, r: int, timer: dict) -> list[tuple[str, bool]]:
        """(text, cut) per prompt: ``cut`` when the text ran out of ``max_new_tokens`` and the run drops such text."""
        start = time.perf_counter()
        out = self.llm.complete(prompts, **self.config.sampling[name].kwargs(), seed=self.config.seed + r,
                                batch_size=self.config.llm_batch_size, progress=False, return_finish=True)
        timer["seconds"] = timer.get("seconds", 0.0) + time.perf_counter() - start
        return [(text, self.config.drop_truncated and finish == "length") for text, finish in out]

    # ---- one round ---------------------------------------------------------------------------
    def _propose(self, r: int, machine: list[dict], funnel: Funnel, timer: dict) -> list[dict]:
        """Candidate tasks of round ``r``: dicts with instruction (+ input/output) and demo ids."""
        cfg, rng = self.config, random.Random(f"{self.config.seed}-{r}")
        candidates: list[dict] = []
        if cfg.method == "self-instruct":
            seed_items = list(zip(self.seed_ids, (t.instruction for t in self.seeds)))
            machine_items = [(row["id"], row["instruction"]) for row in machine]
            demo_sets = [sample_demos(rng, seed_items, machine_items, cfg.num_prompt_instructions,
                                      cfg.num_machine_instructions) for _ in range(cfg.batch_size)]
            prompts = [P.encode_instruction_prompt([inst for _, inst in demos]) for demos in demo_sets]
            for p, (text, cut) in enumerate(self._complete(prompts, "instruction", r, timer)):
                pieces = [s for s in P.parse_instruction_completion(text, cfg.faithful)]
                funnel.count("model output", None if any(pieces) else "no instruction in output")
                for k, piece in enumerate(pieces):   # a cut output: its last piece (faithful: all of them)
                    candidates.append({"instruction": normalize_instruction(piece, cfg.faithful),
                                       "demos": [i for i, _ in demo_sets[p]], "prompt": p,
                                       "cut": cut and (cfg.faithful or k == len(pieces) - 1)})
        elif cfg.method == "alpaca":
            order = list(range(len(self.seeds)))
            demo_sets = [rng.sample(order, min(3, len(order))) for _ in range(cfg.batch_size)]
            prompts = [P.encode_alpaca_prompt([self.seeds[i] for i in demos]) for demos in demo_sets]
            for p, (text, cut) in enumerate(self._complete(prompts, "instruction", r, timer)):
                tasks = P.parse_alpaca_completion(text, len(demo_sets[p]))
                funnel.count("model output", None if tasks else "no complete task in output")
                # a cut output: the task parsed from its last "###" piece, if that piece parsed (Alpaca's rule)
                whole = len(P.parse_alpaca_completion(text[:text.rfind("###")], len(demo_sets[p]))) \
                    if cut and "###" in text else (0 if cut else len(tasks))
                for k, (inst, inp, out) in enumerate(tasks):
                    candidates.append({"instruction": inst, "input": inp, "output": out, "prompt": p,
                                       "demos": [self.seed_ids[i] for i in demo_sets[p]], "cut": k >= whole})
        else:  # magpie
            prefix = P.pre_query_prefix(self.llm.chat_prompt)
            for p, (text, cut) in enumerate(self._complete([prefix] * cfg.batch_size, "query", r, timer)):
                query = text.strip()
                funnel.count("model output", None if query else "empty query")
                if query:
                    candidates.append({"instruction": query, "demos": [], "prompt": p, "cut": cut})
        return candidates

    def _filter(self, candidates: list[dict], index: DedupIndex, funnel: Funnel) -> tuple[list[dict], list[dict]]:
        """(kept, rejected): each candidate stops at its first failing filter, counted in the funnel."""
        checks = [(name, (lambda item, c=check: c(item["instruction"]))) for name, check in self.checks]
        if self.config.drop_truncated:
            checks.insert(0, ("complete", lambda item: CUT if item.get("cut") else None))
        checks.append((f"ROUGE-L <= {self.config.threshold}",
                       lambda item: None if index.add_if_new(item["instruction"]) else "near-duplicate"))
        kept, rejected = [], []
        for item in candidates:
            for name, check in checks:
                reason = check(item)
                funnel.count(name, reason)
                if reason is not None:
                    rejected.append({"instruction": item["instruction"], "filter": name, "reason": reason})
                    break
            else:
                kept.append(item)
        return kept, rejected

    def _instances(self, kept: list[dict], r: int, funnel: Funnel, timer: dict) -> None:
        """Fill ``is_classification`` and ``instances`` of each kept task (in place)."""
        cfg = self.config
        if cfg.method == "alpaca":
            for item in kept:
                item["is_classification"] = None
                item["instances"] = [(item["input"], item["output"])] if item["output"].strip() else []
        elif cfg.method == "magpie":
            answers = self._chat([item["instruction"] for item in kept], r, timer)
            for item, (answer, cut) in zip(kept, answers):
                item["is_classification"] = None
                item["instances"] = [("", answer.strip())] if answer.strip() and not cut else []
                if answer.strip() and cfg.drop_truncated:
                    funnel.count("complete example", CUT if cut else None)
        else:
            prompts = [P.encode_classification_prompt(item["instruction"], self.seeds) for item in kept]
            flags = [P.parse_classification_answer(a, cfg.faithful)   # a 3-token Yes/No: never judged as cut
                     for a, _ in self._complete(prompts, "classification", r, timer)] if kept else []
            prompts = [P.encode_instance_prompt(item["instruction"], flag, self.seeds)
                       for item, flag in zip(kept, flags)]
            raws = self._complete(prompts, "instances", r, timer) if kept else []
            for item, flag, (raw, cut) in zip(kept, flags, raws):
                parse = P.parse_classification_instances if flag else P.parse_generation_instances
                item["is_classification"] = flag
                instances = parse(raw, cfg.faithful, drop_last=cut)
                if cfg.drop_truncated:   # examples the cut removed (0 when the last one was invalid anyway)
                    funnel.count("complete example", None, len(instances))
                    dropped = len(parse(raw, cfg.faithful)) - len(instances)
                    if dropped > 0:
                        funnel.count("complete example", CUT, dropped)
                item["instances"] = instances[: cfg.max_instances]
        for item in kept:
            funnel.count("instances", None if item["instances"] else "no valid instance")

    def _chat(self, queries: list[str], r: int, timer: dict) -> list[tuple[str, bool]]:
        if not queries:
            return []
        start = time.perf_counter()
        out = self.llm.chat([[{"role": "user", "content": q}] for q in queries],
                            **self.config.sampling["response"].kwargs(), seed=self.config.seed + r,
                            batch_size=self.config.llm_batch_size, progress=False, return_finish=True)
        timer["seconds"] = timer.get("seconds", 0.0) + time.perf_counter() - start
        return [(text, self.config.drop_truncated and finish == "length") for text, finish in out]

    def _provenance(self, item: dict, task_id: str, r: int) -> dict:
        cfg = self.config
        prov = {"method": cfg.method, "model": getattr(self.llm, "name", type(self.llm).__name__),
                "task_id": task_id, "round": r, "prompt": item["prompt"], "demos": item["demos"],
                "faithful": cfg.faithful, "threshold": cfg.threshold,
                "sampling": {name: self._sampling(name, r) for name in cfg.sampling}}
        if cfg.method == "self-instruct":
            prov["instance_order"] = "output-first" if item["is_classification"] else "input-first"
        return prov

    def run_round(self, r: int) -> dict:
        """Run round ``r`` (or repeat it after a kill: rows already written are skipped); its log row."""
        machine = self._pool_before(r)
        index = DedupIndex(self.config.threshold, self.tokenizer)
        for text in [t.instruction for t in self.seeds] + [row["instruction"] for row in machine]:
            index.add(text)
        funnel, timer = Funnel(), {}
        candidates = self._propose(r, machine, funnel, timer)
        kept, rejected = self._filter(candidates, index, funnel)
        self._instances(kept, r, funnel, timer)
        pool_rows, record_rows = [], []
        for k, item in enumerate(kept):
            task_id = f"{self.config.method}-r{r:05d}-{k:02d}"
            prov = self._provenance(item, task_id, r)
            pool_rows.append({"id": task_id, "round": r, "instruction": item["instruction"],
                              "is_classification": item["is_classification"],
                              "n_instances": len(item["instances"]), "provenance": prov})
            for j, (inp, out) in enumerate(item["instances"]):
                record_rows.append({"id": f"{task_id}-{j}", "instruction": item["instruction"], "input": inp,
                                    "output": out, "is_classification": item["is_classification"],
                                    "provenance": prov})
        self._check_repeat(r, pool_rows, record_rows)
        self.pool.extend(pool_rows)
        self.records.extend(record_rows)
        row = {"id": r, "round": r, "candidates": len(candidates), "kept": len(kept), "rejected": rejected,
               "records": len(record_rows), "generation_seconds": timer.get("seconds", 0.0),
               "funnel": funnel.to_dict(), "config": self.config.identity()}
        self.rounds.append(row)
        return row

    def _check_repeat(self, r: int, pool_rows: list[dict], record_rows: list[dict]) -> None:
        """ResumeError if a killed run wrote rows of round ``r`` that this repeat of it does not reproduce."""
        prefix, fields = f"{self.config.method}-r{r:05d}-", ("instruction", "input", "output")
        for path, stage, rows in ((self.paths[1], self.pool, pool_rows), (self.paths[0], self.records, record_rows)):
            if not any(isinstance(key, str) and key.startswith(prefix) for key in stage.done):
                continue   # the usual case: nothing of this round was written before
            new = {row["id"]: [row.get(f) for f in fields] for row in rows}
            for old in (row for row in stage.rows() if _round_of(row, stage is self.records) == r):
                if new.get(old.get("id")) != [old.get(f) for f in fields]:
                    raise ResumeError(f"{path}: {old.get('id')}: round {r}, cut short by a kill, came out differently "
                                      f"when repeated (the model's sampling is not reproducible){_restart(self.paths)}")

    def run(self, progress: bool = True) -> RunResult:
        """Rounds until the machine pool holds ``num_instructions`` (or ``max_rounds``); resumes a killed run."""
        from tqdm.auto import tqdm

        cfg = self.config
        finished = self._finished_rounds()
        r = finished[-1]["round"] + 1 if finished else 0
        n_machine = len(self._pool_before(r))
        bar = tqdm(total=cfg.num_instructions, initial=min(n_machine, cfg.num_instructions),
                   desc=f"{cfg.method}: instructions", unit="inst", disable=not progress)
        idle = 0
        for row in reversed(finished):   # rounds in a row that kept nothing, before this resume
            if row["kept"]:
                break
            idle += 1
        with bar:   # closed before any error is reported
            while (n_machine < cfg.num_instructions and (cfg.max_rounds is None or r < cfg.max_rounds)
                   and idle < cfg.patience):
                row = self.run_round(r)
                n_machine += row["kept"]
                idle = 0 if row["kept"] else idle + 1
                bar.update(min(row["kept"], max(0, cfg.num_instructions - bar.n)))
                r += 1
        return self.result()

    def result(self) -> RunResult:
        """Totals over every finished round in the files."""
        funnel = Funnel()
        rounds = self._finished_rounds()
        for row in rounds:
            funnel.merge(Funnel.from_dict(row["funnel"]))
        last = rounds[-1]["round"] + 1 if rounds else 0
        return RunResult(funnel=funnel, machine_instructions=len(self._pool_before(last)),
                         records=len(self.records.rows()), rounds=len(rounds),
                         candidates=sum(row["candidates"] for row in rounds),
                         generation_seconds=sum(row["generation_seconds"] for row in rounds),
                         out=self.paths[0],
                         rejected=[{**x, "round": row["round"]} for row in rounds for x in row.get("rejected", [])])

    def close(self) -> None:
        """Close the three output files."""
        for stage in (self.records, self.pool, self.rounds):
            stage.close()


def self_instruct(llm, out: PathLike, num_instructions: int = 100, *, seeds: Optional[Sequence[Task]] = None,
                  progress: bool = True, **config: Any) -> RunResult:
    """Run (or resume) Self-Instruct with ``llm`` into ``out``; ``config`` as in ``SelfInstructConfig``."""
    cfg = SelfInstructConfig(num_instructions=num_instructions, **config)
    runner = SelfInstruct(llm, seeds if seeds is not None else load_seed_pool(language=cfg.language), out, cfg)
    try:
        return runner.run(progress=progress)
    finally:
        runner.close()
