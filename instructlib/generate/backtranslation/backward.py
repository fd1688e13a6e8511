"""Chapter 07: instruction back-translation (Li et al. 2023, "Humpback"): output -> instruction.

Round-trip translation paraphrases instructions we already have. Instruction back-translation
writes instructions for text that has none:

1. **backward model**: fine-tune a model on (output -> instruction), i.e. the seed records reversed
   (``backward_record``), with chapter 05's loop;
2. **self-augmentation**: run it over unlabelled outputs (``generate_instructions``) to get candidate
   (instruction, output) pairs;
3. **self-curation**: let a model rate every pair on a 1-5 rubric (``rating_prompt``, ``parse_rating``)
   and keep the best. Ratings that cannot be parsed are counted, never silently dropped.

On the verifiable families the right instruction is known, so the curation itself can be graded:
``instruction_family`` recognises which family a generated instruction asks for, and
``curation_precision_recall`` compares "rated >= k" with "the instruction is right".
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

BACKWARD_INSTRUCTION = "Write the instruction that turns this input into this output."
RATING_SCALE = (1, 2, 3, 4, 5)
RATING_PROMPT = """Rate how well the instruction fits the example, from 1 to 5.
5: following the instruction on the input gives exactly the output.
4: the instruction fits, with a small ambiguity.
3: the instruction is related but would give a different output.
2: the instruction is mostly unrelated to the output.
1: the instruction is nonsense or empty.

Instruction: {instruction}
Input: {input}
Output: {output}

Answer with "Score: N" and nothing else."""


def backward_record(record):
    """The reversed Record: the input and output become the input, the instruction becomes the output."""
    from ...data.records import Record

    shown = f"Input: {record.input}\nOutput: {record.output}" if record.input else f"Output: {record.output}"
    return Record(BACKWARD_INSTRUCTION, shown, record.instruction)


def train_backward(model, tokenizer, records: Sequence, config, max_length: int, device=None):
    """Fine-tune ``model`` in place on reversed ``records`` with chapter 05's loop; the TrainResult."""
    from ...data.collate import DataCollatorForInstructions, encode_dataset
    from ...train import train

    data, _ = encode_dataset([backward_record(r) for r in records], tokenizer, max_length, "chat")
    if len(data) < config.batch_size:  # the loop only takes full batches: it would wait forever
        raise ValueError(f"{len(data)} usable seed records for batch_size={config.batch_size}; give more records "
                         f"or a smaller batch")
    return train(model, data, DataCollatorForInstructions(tokenizer), config, device=device)


def generate_instructions(llm, examples: Sequence, *, n: int = 1, temperature: float = 0.0, seed: int = 0,
                          max_new_tokens: int = 24, batch_size: int = 16, progress: bool = False) -> list[dict]:
    """Candidate instructions for unlabelled (input, output) examples (``Record``s; the instruction is ignored).

    One row per example and sample: ``id``, ``instruction``, ``input``, ``output``, ``sample``.
    """
    from ...data.prompts import render_for_inference

    prompts = [render_for_inference(backward_record(e), "chat", llm.tokenizer) for e in examples for _ in range(n)]
    outs = llm.complete(prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                        stop=("\n",), batch_size=batch_size, progress=progress)
    return [{"id": f"b{i}/{k}", "instruction": outs[i * n + k].strip(), "input": e.input, "output": e.output,
             "sample": k} for i, e in enumerate(examples) for k in range(n)]


def rating_prompt(row: dict) -> list[dict]:
    """The self-curation conversation for one candidate (one user turn)."""
    return [{"role": "user", "content": RATING_PROMPT.format(instruction=row["instruction"], input=row["input"] or "(none)",
                                                             output=row["output"])}]


_SCORE = re.compile(r"(?:score|rating)\s*(?:is|of|=|:)?\s*\**\s*([1-5])(?:\s*/\s*5)?\b", re.IGNORECASE)
_LONE = re.compile(r"(?<![\d.])([1-5])(?:\s*/\s*5|\s*out of\s*5)?(?![\d.])")


def parse_rating(text: str) -> Optional[int]:
    """The 1-5 rating in a model's answer, or None when there is none or it is ambiguous.

    "Score: 4", "score = 4/5", "**Rating:** 3", "4" and "I'd give it 4 out of 5" parse; "", "great",
    "Score: 7", "3 or 4" and "between 2 and 5" do not (a different score twice is ambiguous).
    """
    if not text:
        return None
    labelled = _SCORE.findall(text)
    if labelled:
        return int(labelled[0]) if len(set(labelled)) == 1 else None
    if re.search(r"(?:score|rating)\s*(?:is|of|=|:)?\s*\d", text, re.IGNORECASE):
        return None  # a labelled score outside 1..5
    lone = _LONE.findall(text)
    return int(lone[0]) if lone and len(set(lone)) == 1 else None


def rate(llm, rows: Sequence[dict], *, batch_size: int = 8, progress: bool = False) -> dict:
    """Rate every row with ``llm`` (greedy); sets ``rating`` (int or None) and ``rating_text``; counts."""
    answers = llm.chat([rating_prompt(r) for r in rows], max_new_tokens=12, temperature=0.0,
                       batch_size=batch_size, progress=progress)
    counts = {"rated": 0, "unparseable": 0}
    for row, answer in zip(rows, answers):
        row["rating_text"], row["rating"] = answer, parse_rating(answer)
        counts["rated" if row["rating"] is not None else "unparseable"] += 1
    return counts


def instruction_family(text: str, min_rouge: float = 0.5) -> Optional[str]:
    """The verifiable family whose training phrasing is closest to ``text`` (ROUGE-L), None below ``min_rouge``."""
    from ...data.verifiable import FAMILIES
    from ...text import rouge_l

    best, score = None, 0.0
    for name, fam in FAMILIES.items():
        for phrasing in fam.train_phrasings:
            s = rouge_l(phrasing, text)
            if s > score:
                best, score = name, s
    return best if score >= min_rouge else None


def curation_precision_recall(rows: Sequence[dict], threshold: int = 4) -> dict:
    """Precision and recall of "keep when rating >= threshold" against ``row['correct']``.

    Rows with an unparseable rating count as not kept (and are reported): a curator that cannot
    answer keeps nothing.
    """
    kept = [r for r in rows if r.get("rating") is not None and r["rating"] >= threshold]
    right = [r for r in rows if r["correct"]]
    tp = sum(r["correct"] for r in kept)
    return {"threshold": threshold, "candidates": len(rows), "correct": len(right), "kept": len(kept),
            "precision": tp / len(kept) if kept else float("nan"),
            "recall": tp / len(right) if right else float("nan"),
            "unparseable": sum(r.get("rating") is None for r in rows)}


def register_cli(subparsers) -> None:
    """Add ``instructlib generate backward`` (instructions for unlabelled outputs, rated and curated)."""
    p = subparsers.add_parser(
        "backward", help="instruction back-translation: write instructions for outputs, rate, curate (chapter 07)",
        description="Fine-tune a backward model (output -> instruction) on seed records with chapter 05's loop, "
                    "write an instruction for every unlabelled example, rate each pair 1-5 with a chat model "
                    "and keep those rated >= --min-rating. Rows go through a resumable JSONL stage.")
    p.add_argument("--train", required=True, metavar="FILE", help="seed Alpaca records to learn output -> instruction from")
    p.add_argument("--unlabelled", required=True, metavar="FILE",
                   help="Alpaca records whose instruction is ignored (may be empty): the outputs to label")
    p.add_argument("--out", required=True, metavar="FILE", help="output JSONL (resumed if it exists)")
    p.add_argument("--model", default="tinygpt", help="backward model to fine-tune (default: tinygpt)")
    p.add_argument("--rater", default="smollm2-135m-instruct", help="chat model that rates the pairs")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--min-rating", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_cli)


def run_backward(train_records: Sequence, unlabelled: Sequence, out: str, *, model_name: str = "tinygpt",
                 rater=None, steps: int = 200, min_rating: int = 4, seed: int = 0, chunk: int = 32,
                 progress: bool = True) -> dict:
    """The whole Humpback pipeline on files' records; rows (with ``rating`` and ``kept``) appended to ``out``."""
    from ...models import LLM, load_model, load_tokenizer
    from ...train import TrainConfig
    from ..stage import JSONLStage

    with JSONLStage(out) as stage:
        todo = [(f"u{i}", r) for i, r in enumerate(unlabelled) if f"u{i}" not in stage.done]
        if todo:
            model, tok = load_model(model_name), load_tokenizer(model_name)
            model_config = getattr(model, "config", None)
            max_len = getattr(model_config, "block_size", None) or getattr(model_config, "n_positions", None) or 256
            config = TrainConfig(max_steps=steps, batch_size=min(16, len(train_records)), lr=1e-3,
                                 warmup_steps=max(1, steps // 10), seed=seed, progress=progress)
            train_backward(model, tok, train_records, config, max_len)
            llm = LLM.wrap(model.eval(), tok)
            for i in range(0, len(todo), chunk):
                part = todo[i:i + chunk]
                rows = generate_instructions(llm, [r for _, r in part], seed=seed)
                for (uid, _), row in zip(part, rows):
                    row["id"] = uid
                if rater is not None:
                    rate(rater, rows)
                for row in rows:
                    row["kept"] = row.get("rating") is not None and row["rating"] >= min_rating
                stage.extend(rows)
        rows = stage.rows()
    return {"candidates": len(rows), "kept": sum(r["kept"] for r in rows),
            "unparseable": sum(r.get("rating") is None for r in rows)}


def _run_cli(args) -> int:
    import sys

    from ...data.io import load_records
    from ...data.records import DataError
    from ...models import load_llm

    try:
        train_records, unlabelled = load_records(args.train), load_records(args.unlabelled)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not train_records:
        print(f"error: {args.train}: no records", file=sys.stderr)
        return 2
    counts = run_backward(train_records, unlabelled, args.out, model_name=args.model, rater=load_llm(args.rater),
                          steps=args.steps, min_rating=args.min_rating, seed=args.seed)
    print(f"{counts['candidates']} candidates, {counts['kept']} kept (rating >= {args.min_rating}), "
          f"{counts['unparseable']} unparseable ratings; wrote {args.out}")
    return 0
