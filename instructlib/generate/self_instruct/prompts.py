"""Chapter 08: the prompts Self-Instruct sends to the model, and the parsers for what comes back.

Three prompts, following the released pipeline (Wang et al. 2022, ``self_instruct/``):

1. **new instructions**: a numbered list of 8 instructions (6 from the seed pool, 2 from the machine
   pool) ending with ``9.``; the model continues the list;
2. **is it classification?**: few-shot ``Task: ... / Is it classification? Yes|No`` built from seed
   tasks whose flag is known;
3. **instances**: classification tasks *output-first* (``Class label: X`` then an input for it, so
   every label gets an input instead of the model writing inputs that all have the same label),
   other tasks *input-first* (``Example 1 / Input: ... / Output: ...``).

Demonstrations are drawn from the seed pool (the course's tasks or any Self-Instruct file), in the
language of the instruction. The parsers never raise on malformed model output: they return what
they can and let the funnel count the rest. ``faithful=True`` parses exactly like the reference
(ASCII colons only); the default also accepts the full-width colon ``：`` Chinese text uses.
"""
from __future__ import annotations

import re
from typing import Sequence

from ...data.records import Task
from ...text import has_cjk

INSTRUCTION_HEADER = "Come up with a series of tasks:\n"  # the reference's one-line instruction
CLASSIFICATION_HEADER = ("Come up with a series of classification tasks. "
                         "Try to specify the possible output labels when possible.\n")
INSTRUCTION_STOP = ("\n\n", "\n16", "16.", "16 .")       # the reference's stop sequences
CLF_QUESTION = "Is it classification?"
CLF_HEADER = ("Can the following task be answered by choosing one label from a small, fixed set of "
              "labels? Answer Yes or No.\n\n")
OUTPUT_FIRST_HEADER = ("Given a classification task and its possible class labels, write one input for "
                       "each class label.\n\n")
INPUT_FIRST_HEADER = ("Write examples for each task. Give several examples when you can. If a task needs "
                      "no input, write only the output.\n\n")


def encode_instruction_prompt(instructions: Sequence[str], classification: bool = False) -> str:
    """The numbered-list prompt: ``1. ...`` to ``k. ...`` then ``k+1.`` for the model to continue."""
    prompt = CLASSIFICATION_HEADER if classification else INSTRUCTION_HEADER
    for i, inst in enumerate(instructions, start=1):
        inst = re.sub(r"\s+", " ", inst).strip().rstrip(":")
        prompt += f"{i}. {inst}\n"
    return prompt + f"{len(instructions) + 1}."


def parse_instruction_completion(text: str, faithful: bool = False) -> list[str]:
    """The instructions in a continuation of the numbered list (unfiltered, whitespace collapsed).

    The reference splits on ``\\n<number>. ``; the default also accepts ``9、`` and full-width ``９．``.
    """
    pattern = r"\n\d+\s?\. " if faithful else r"\n\s*[0-9０-９]+\s?[.、．]\s*"
    return [re.sub(r"\s+", " ", piece).strip() for piece in re.split(pattern, text)]


# ---- is it classification? -------------------------------------------------------------------

def _demo_tasks(pool: Sequence[Task], want_zh: bool, k: int, classification: bool | None = None) -> list[Task]:
    """Up to ``k`` demo tasks from the pool, same language first, in pool order (deterministic)."""
    chosen = [t for t in pool if classification is None or t.is_classification == classification]
    same = [t for t in chosen if has_cjk(t.instruction) == want_zh]
    other = [t for t in chosen if has_cjk(t.instruction) != want_zh]
    return (same + other)[:k]


def encode_classification_prompt(instruction: str, pool: Sequence[Task], k: int = 4) -> str:
    """Few-shot Yes/No prompt: ``k`` classification and ``k`` other seed tasks, alternating."""
    zh = has_cjk(instruction)
    yes, no = _demo_tasks(pool, zh, k, True), _demo_tasks(pool, zh, k, False)
    demos = [d for pair in zip(yes, no) for d in pair] + yes[len(no):] + no[len(yes):]
    prompt = CLF_HEADER
    for task in demos:
        prompt += f"Task: {task.instruction.strip()}\n{CLF_QUESTION} {'Yes' if task.is_classification else 'No'}\n\n"
    return prompt + f"Task: {instruction.strip()}\n{CLF_QUESTION}"


def parse_classification_answer(text: str, faithful: bool = False) -> bool:
    """The reference accepts exactly Yes/yes/YES after stripping; the default also 是 and 'Yes.'."""
    answer = text.strip()
    if faithful:
        return answer in ("Yes", "yes", "YES")
    return answer.lower().rstrip(".。!").startswith("yes") or answer.startswith("是")


# ---- instances ----------------------------------------------------------------------------

def _format_generation_demo(task: Task, max_examples: int = 2) -> str:
    out = f"Task: {task.instruction.strip()}\n"
    instances = task.instances[:max_examples]
    if all(not i.input.strip() for i in instances):
        return out + f"Output: {instances[0].output.strip()}\n\n"
    for j, inst in enumerate(instances, start=1):
        out += f"Example {j}\nInput: {inst.input.strip()}\nOutput: {inst.output.strip()}\n"
    return out + "\n"


def _format_classification_demo(task: Task) -> str:
    out = f"Task: {task.instruction.strip()}\n"
    for inst in task.instances:
        out += f"Class label: {inst.output.strip()}\nInput: {inst.input.strip()}\n"
    return out + "\n"


def encode_instance_prompt(instruction: str, is_classification: bool, pool: Sequence[Task], k: int = 3) -> str:
    """Output-first prompt for classification tasks, input-first for the others (``k`` seed demos)."""
    zh = has_cjk(instruction)
    if is_classification:
        demos = _demo_tasks(pool, zh, k, True)
        return OUTPUT_FIRST_HEADER + "".join(map(_format_classification_demo, demos)) + f"Task: {instruction.strip()}\n"
    demos = _demo_tasks(pool, zh, k, False)
    return INPUT_FIRST_HEADER + "".join(map(_format_generation_demo, demos)) + f"Task: {instruction.strip()}\n"


def instance_stop(max_instances: int = 5) -> tuple[str, ...]:
    """Stop strings for instance generation (the reference's: the example after the last, or a new task)."""
    return (f"Example {max_instances + 1}", "Task:")


def _colon(faithful: bool) -> str:
    return ":" if faithful else "[:：]"


def parse_input_output(text: str, faithful: bool = False) -> tuple[str, str]:
    """(input, output) of one example: the text before ``Output:`` is the input (``Input:`` removed)."""
    c = _colon(faithful)
    out_re, in_re = rf"Output\s*\d*\s*{c}", rf"Input\s*\d*\s*{c}"
    if re.search(out_re, text):
        parts = re.split(out_re, text)
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", text.strip()
    if re.search(in_re, out):          # several pairs in one example: keep the first output
        out = re.split(in_re, out)[0].strip()
    inp = re.sub(rf"^{in_re}", "", inp).strip()
    return inp, out


def filter_invalid_instances(instances: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop input == output, empty outputs, and input or output ending with ':' (cut-off generations)."""
    return [(i, o) for i, o in instances
            if i != o and o != "" and not i.strip().endswith(":") and not o.strip().endswith(":")]


def filter_duplicate_instances(instances: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """No instances at all if one non-empty input has two different outputs; else exact duplicates removed.

    The reference removes duplicates with ``list(set(...))``, which loses the order; this keeps it.
    """
    for k, (inp, out) in enumerate(instances):
        if inp and any(inp == i2 and out != o2 for i2, o2 in instances[:k]):
            return []
    return list(dict.fromkeys(instances))


def parse_generation_instances(text: str, faithful: bool = False, drop_last: bool = False) -> list[tuple[str, str]]:
    """Input-first output -> [(input, output)], invalid and conflicting ones removed.

    ``drop_last``: the output ran out of tokens, so its last example is probably cut; the reference
    removes it before filtering.
    """
    text = text.strip()
    if re.search(r"Example\s?\d*\.?", text):
        pieces = [p.strip() for p in re.split(r"Example\s?\d*\.?", text) if p.strip()]
        found = [parse_input_output(p, faithful) for p in pieces]
    elif re.search(rf"Output\s*\d*\s*{_colon(faithful)}", text):
        found = [parse_input_output(text, faithful)]
    else:
        return []
    return filter_duplicate_instances(filter_invalid_instances(found[:-1] if drop_last else found))


def parse_classification_instances(text: str, faithful: bool = False, drop_last: bool = False) -> list[tuple[str, str]]:
    """Output-first output (``Class label: X`` then its input) -> [(input, label)], filtered (``drop_last``: as above)."""
    label_re = rf"Class label\s*{_colon(faithful)}"
    if not re.search(label_re, text):
        return []
    found = []
    for piece in re.split(label_re, text)[1:]:
        fields = piece.strip().split("\n", 1)
        label = fields[0].strip()
        inp = fields[1].strip() if len(fields) == 2 else ""
        inp = re.sub(rf"^Input\s*\d*\s*{_colon(faithful)}", "", inp).strip()
        found.append((inp, label))
    return filter_duplicate_instances(filter_invalid_instances(found[:-1] if drop_last else found))


# ---- Alpaca-style: whole tasks in one list ---------------------------------------------------

ALPACA_REQUIREMENTS = """You are asked to come up with a set of 20 diverse task instructions. These task instructions will be given to a language model and we will evaluate how well it completes them.

Requirements:
1. Do not repeat the verb of an instruction; vary the wording.
2. Vary the kind of task: open questions, classification, editing, rewriting, brainstorming, reasoning, code, maths.
3. A language model must be able to do the task: no images, audio, files or actions in the world.
4. Write each instruction in one or two sentences, as a question or an imperative.
5. When a task needs an input (a text, a list, a table), give a realistic one of at most 100 words; otherwise write "<noinput>".
6. The output must be a correct, complete answer to the instruction and the input, at most 100 words.

List of 20 tasks:
"""
ALPACA_STOP = ("\n20", "20.")


def encode_alpaca_prompt(tasks: Sequence[Task]) -> str:
    """Alpaca's prompt: requirements, then ``###``-separated numbered (instruction, input, output) demos."""
    prompt = ALPACA_REQUIREMENTS
    for i, task in enumerate(tasks, start=1):
        inst = re.sub(r"\s+", " ", task.instruction).strip().rstrip(":")
        inp = task.instances[0].input if task.instances else ""
        out = task.instances[0].output if task.instances else ""
        prompt += f"###\n{i}. Instruction: {inst}\n{i}. Input:\n{inp if inp.strip() else '<noinput>'}\n{i}. Output:\n{out}\n"
    return prompt + f"###\n{len(tasks) + 1}. Instruction:"


def parse_alpaca_completion(text: str, num_demos: int) -> list[tuple[str, str, str]]:
    """[(instruction, input, output)] from an Alpaca-style continuation; pieces that do not parse are skipped."""
    raw = f"{num_demos + 1}. Instruction:" + text
    out = []
    for k, piece in enumerate(re.split("###", raw)):
        idx = k + num_demos + 1
        parts = re.split(rf"{idx}\.\s+(Instruction|Input|Output):", piece)
        if len(parts) != 7:
            continue
        inst, inp, outp = parts[2].strip(), parts[4].strip(), parts[6].strip()
        out.append((inst, "" if inp.lower() == "<noinput>" else inp, outp))
    return out


# ---- Magpie-style: the chat template up to the user turn ---------------------------------------

_SENTINEL = "\u2063MAGPIE\u2063"


def pre_query_prefix(chat_prompt) -> str:
    """The chat-template text that precedes a user message (``<|im_start|>user\\n`` for SmolLM2/Qwen).

    ``chat_prompt(conversation) -> str`` is the model's template (``LLM.chat_prompt``); rendering a
    one-message conversation with a sentinel and cutting before it gives the prefix for any template.
    """
    rendered = chat_prompt([{"role": "user", "content": _SENTINEL}])
    if _SENTINEL not in rendered:
        raise ValueError("the chat template does not show the user message verbatim")
    return rendered[: rendered.index(_SENTINEL)]
