"""Chapter 04: a quality linter for hand-written tasks, one group of rules per criterion of a good instruction.

* clarity       the instruction says what is wanted: not too short or long, no vague wording;
* completeness  nothing is missing: no unfilled placeholder, an input where the instruction refers
                to one, an output for every instance;
* consistency   the instances of one task agree: one label spelling, one answer format;
* diversity     the set as a whole varies: no near-duplicate instructions, no repeated instances,
                no single leading verb dominating (see ``verb_noun`` and ``plot_verb_noun``).

Rules are heuristics that point a human at a task to re-read; none of them is proof of a bad task.
``lint_tasks`` returns a list of ``Issue``; ``lint_table`` shows them per task.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from ..fonts import select_cjk_font
from .records import Task

CRITERIA = ("clarity", "completeness", "consistency", "diversity")
SEVERITIES = ("error", "warning", "info")

MIN_WORDS, MAX_WORDS = 4, 150  # Self-Instruct keeps instructions with 3 < words <= 150
MIN_CJK_CHARS = 6
NEAR_DUPLICATE = 0.85  # rapidfuzz similarity (0..1) above which two instructions are near-duplicates
DOMINANT_VERB_SHARE = 0.25  # with >= 10 tasks, one leading verb should not start more than this
MAX_LABEL_WORDS = 5

VAGUE_EN = ("something", "stuff", "things", "etc", "and so on", "whatever", "somehow", "some kind of",
            "deal with", "handle this", "do it", "do this", "as needed", "various")
VAGUE_ZH = ("等等", "之类", "什么的", "某些", "一些东西", "相关内容", "处理一下", "弄一下")
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_ ]*\}|<[A-Za-z_ ]+>|\[(?:insert|your|placeholder|todo)[^\]]*\]"
                         r"|\b(?:TODO|TBD|FIXME|XXX)\b|lorem ipsum|^\.\.\.$", re.IGNORECASE)
REFERS_TO_INPUT = re.compile(r"\b(the following|below|given|this (?:text|sentence|paragraph|passage|"
                             r"article|review|list|code|email|question|word|number)s?|the input|"
                             r"provided)\b|以下|下面|下列|给定|这段|这句|所给", re.IGNORECASE)
CJK = re.compile(r"[\u3400-\u9fff]")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

FILLERS = ("please", "kindly", "now", "then", "also", "just")
LEADS = (("i", "want", "you", "to"), ("i", "need", "you", "to"), ("can", "you"), ("could", "you"),
         ("would", "you"), ("will", "you"), ("you", "should"), ("you", "are", "asked", "to"))
QUESTION = {"what", "how", "why", "who", "whom", "which", "when", "where", "is", "are", "was", "were",
            "do", "does", "did", "can", "should", "would", "will", "has", "have"}
OPENERS = {"given", "based", "using", "for", "in", "if", "from", "with", "after", "as", "according"}
SKIP_NOUN = {"a", "an", "the", "this", "that", "these", "those", "some", "me", "my", "your", "our",
             "its", "their", "it", "them", "us", "following", "given", "each", "every", "all", "any",
             "short", "brief", "few", "one", "two", "three", "five", "list", "of", "new", "whether",
             "if", "what", "how", "up", "out", "down", "to", "and", "or", "in", "on", "into", "simple",
             "good", "more", "less", "most", "appropriate"}
ZH_PREFIX = ("请你", "请", "帮我", "帮忙", "你", "能否", "可以")
ZH_OPENERS = ("给定", "根据", "基于", "对于", "如果")
ZH_ONE_CHAR_VERBS = set("写说读做找算猜改译讲列问答选填编造用将把画")
ZH_SKIP = re.compile(r"^(?:[一二三四五六七八九十两几\d]+[个首篇段句封份条种位本则组]|一下|以下|下面|下列|这段|这句|"
                     r"这个|所给|关于|的)+")


@dataclass(frozen=True)
class Issue:
    """One finding of the linter about one task (``task_id`` "*" for the whole set)."""

    task_id: str
    criterion: str
    rule: str
    message: str
    severity: str = "warning"
    location: str = ""  # "file:line" of the task, when it came from a file (see ``lint_file``)

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.task_id}: {self.severity}: {self.criterion}/{self.rule}: {self.message}"


def task_key(task: Task, index: int) -> str:
    """The name a task goes by in reports: its id, else its name, else its position."""
    return task.id or task.name or f"task_{index}"


def is_cjk(text: str) -> bool:
    """True when the text contains Chinese characters."""
    return bool(CJK.search(text))


def n_words(text: str) -> int:
    """Words in English text; characters count as words in Chinese text."""
    return len(CJK.findall(text)) + len(WORD.findall(CJK.sub(" ", text)))


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _verb_noun_here(text: str) -> tuple[str, str]:
    """(verb, noun) of ``text`` read from its start (no skipping past an opening clause)."""
    if is_cjk(text[:4]):
        for prefix in ZH_PREFIX:
            text = text[len(prefix):] if text.startswith(prefix) else text
        chars = "".join(CJK.findall(text))
        n = 1 if chars[:1] in ZH_ONE_CHAR_VERBS else 2
        verb, rest = chars[:n], ZH_SKIP.sub("", chars[n:])
        return verb, rest[:2]
    words = [w.lower() for w in WORD.findall(text)]
    while words and words[0] in FILLERS:
        words = words[1:]
    for lead in LEADS:
        if tuple(words[: len(lead)]) == lead:
            words = words[len(lead):]
            break
    if not words:
        return "", ""
    verb = "(question)" if words[0] in QUESTION else words[0]
    noun = next((w for w in words[1:] if w not in SKIP_NOUN and w not in QUESTION), "")
    return verb, _singular(noun)


def verb_noun(instruction: str) -> tuple[str, str]:
    """(leading verb, its first object noun) of an instruction, by light heuristics (no parser).

    "Please write a short poem about rain" -> ("write", "poem"); a question -> ("(question)", ...);
    "Given a sentence, classify its sentiment" -> ("classify", "sentiment"). Chinese: the first two
    characters after a polite prefix, and the next two. Opening clauses ("Given X, ...", "给定X，...")
    are skipped in a loop, not by recursion, so "Given, " repeated 5,000 times cannot exhaust the stack.
    """
    # Peel opening clauses off; each level remembers its text in case the clause after it is empty.
    chain: list[tuple[str, bool]] = []  # (text, English opener whose remainder may be tried first)
    text = instruction.strip()
    while True:
        if is_cjk(text[:4]):
            if text.startswith(ZH_OPENERS) and re.search("[,，]", text):  # "给定X，判断Y": always take Y
                chain.append((text, False))
                text = re.split("[,，]", text, maxsplit=1)[1].strip()
                continue
            break
        first = WORD.search(text)
        if first and first.group(0).lower() in OPENERS and "," in text:  # "Given X, do Y": verb after the comma
            chain.append((text, True))
            text = text.split(",", 1)[1].strip()
            continue
        break
    result = _verb_noun_here(text)
    for outer, english in reversed(chain):
        if english and not result[0]:  # nothing after the comma: read the clause itself
            result = _verb_noun_here(outer)
    return result


def answer_format(output: str) -> str:
    """A coarse answer format: empty, yes/no, number, json, list, one line or multi-line text."""
    text = output.strip()
    if not text:
        return "empty"
    if text.rstrip(".").lower() in {"yes", "no", "true", "false", "是", "否"}:
        return "yes/no"
    if re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", text, re.IGNORECASE):
        return "number"
    if text[0] in "[{" and text[-1] in "]}":
        return "json"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and all(re.match(r"\s*(?:[-*•]|\d+[.)])\s", ln) for ln in lines):
        return "list"
    return "text" if len(lines) == 1 else "multi-line text"


def _label_key(label: str) -> str:
    return re.sub(r"\s+", " ", label.strip().strip(".!").lower())


def check_clarity(task: Task) -> list[tuple[str, str, str]]:
    """(rule, message, severity) for the clarity rules."""
    out = []
    text = task.instruction.strip()
    words = n_words(text)
    cjk = is_cjk(text)
    if (cjk and words < MIN_CJK_CHARS) or (not cjk and words < MIN_WORDS):
        unit = ("character" if cjk else "word") + ("" if words == 1 else "s")
        out.append(("too_short", f"only {words} {unit}: say what the output should be", "warning"))
    if words > MAX_WORDS:
        out.append(("too_long", f"{words} words (over {MAX_WORDS}): split it or move content to the input",
                    "warning"))
    lowered = text.lower()
    vague = [v for v in VAGUE_EN if re.search(rf"\b{re.escape(v)}\b", lowered)]
    vague += [v for v in VAGUE_ZH if v in text]
    if vague:
        out.append(("vague_wording", f"vague wording {vague}: name the exact thing wanted", "warning"))
    if text[:1] and not (text[0].isalnum() or cjk or text[0] in "\"'“‘("):
        out.append(("starts_with_punctuation", f"starts with {text[0]!r}", "warning"))
    if task.instruction != text:
        out.append(("untrimmed", "leading or trailing whitespace around the instruction", "info"))
    if "\n\n" in text:
        out.append(("multi_paragraph", "blank line inside the instruction: move the content to the input "
                    "(chat conversion splits at the first blank line)", "info"))
    return out


def check_completeness(task: Task) -> list[tuple[str, str, str]]:
    """(rule, message, severity) for the completeness rules."""
    out = []
    if not task.instances:
        return [("no_instances", "the task has no instances", "error")]
    for where, text in [("instruction", task.instruction)] + [
            (f"instances[{k}].{f}", getattr(i, f)) for k, i in enumerate(task.instances) for f in ("input", "output")]:
        match = PLACEHOLDER.search(text)
        if match:
            out.append(("placeholder", f"unfilled placeholder {match.group(0)!r} in {where}", "error"))
    empty_outputs = [k for k, i in enumerate(task.instances) if not i.output.strip()]
    if empty_outputs:
        out.append(("no_output", f"instances {empty_outputs} have no output", "error"))
    refers = REFERS_TO_INPUT.search(task.instruction)
    inline = re.search(r"[:：]\s*\S+(\s+\S+){2,}", task.instruction)  # content given inside the instruction
    missing = [k for k, i in enumerate(task.instances) if not i.input.strip()]
    if refers and missing and not inline:
        out.append(("input_missing", f"the instruction refers to an input ({refers.group(0)!r}) but "
                    f"instances {missing} have none", "error"))
    return out


def check_consistency(task: Task) -> list[tuple[str, str, str]]:
    """(rule, message, severity) for the consistency rules across the instances of one task."""
    out = []
    outputs = [i.output for i in task.instances if i.output.strip()]
    if task.is_classification and outputs:
        variants: dict[str, set] = {}
        for o in outputs:
            variants.setdefault(_label_key(o), set()).add(o.strip())
        clashes = [sorted(v) for v in variants.values() if len(v) > 1]
        if clashes:
            out.append(("label_variants", f"one label spelled several ways: {clashes}", "warning"))
        long = [o for o in outputs if n_words(o) > MAX_LABEL_WORDS and not is_cjk(o)]
        if long:
            out.append(("label_not_short", f"{len(long)} outputs are sentences, not labels "
                        f"(e.g. {long[0][:40]!r})", "warning"))
        if len(outputs) >= 2 and len(variants) == 1:
            out.append(("single_label", f"every instance has the label {outputs[0]!r}: show more than one "
                        "class", "info"))
    elif len(outputs) >= 3:
        short = all(n_words(o) <= 3 for o in outputs)
        if short and len({_label_key(o) for o in outputs}) < len(outputs):
            out.append(("unflagged_classification", "outputs are repeated short labels but "
                        "is_classification is false", "info"))
        formats = Counter(answer_format(o) for o in outputs)
        if len(formats) > 1 and not set(formats) <= {"text", "multi-line text"}:
            out.append(("mixed_answer_format", f"instances answer in different formats: {dict(formats)}",
                        "warning"))
    return out


def check_diversity(tasks: list[Task]) -> list[Issue]:
    """Set-level diversity: near-duplicate instructions, repeated instances, a dominant leading verb."""
    from rapidfuzz import fuzz

    issues = []
    keys = [task_key(t, k) for k, t in enumerate(tasks)]
    norm = [re.sub(r"\s+", " ", t.instruction.strip().lower()) for t in tasks]
    for j in range(len(tasks)):
        for i in range(j):
            score = fuzz.ratio(norm[i], norm[j]) / 100
            if score >= NEAR_DUPLICATE:
                issues.append(Issue(keys[j], "diversity", "near_duplicate",
                                    f"instruction is {score:.0%} similar to {keys[i]}", "warning"))
                break
    for key, task in zip(keys, tasks):
        seen = Counter((i.input.strip(), i.output.strip()) for i in task.instances)
        repeats = sum(c - 1 for c in seen.values() if c > 1)
        if repeats:
            issues.append(Issue(key, "diversity", "duplicate_instance", f"{repeats} repeated instance(s)",
                                "warning"))
    verbs = Counter(verb_noun(t.instruction)[0] for t in tasks)
    if len(tasks) >= 10 and verbs:
        verb, count = verbs.most_common(1)[0]
        if count / len(tasks) > DOMINANT_VERB_SHARE:
            issues.append(Issue("*", "diversity", "dominant_verb", f"{count}/{len(tasks)} instructions start "
                                f"with {verb!r}: vary the task types", "info"))
    return issues


def lint_tasks(tasks: Iterable[Task]) -> list[Issue]:
    """Every issue found in ``tasks``: per-task clarity, completeness, consistency, then set diversity."""
    tasks = list(tasks)
    issues = []
    for k, task in enumerate(tasks):
        key = task_key(task, k)
        for criterion, check in (("clarity", check_clarity), ("completeness", check_completeness),
                                 ("consistency", check_consistency)):
            issues += [Issue(key, criterion, rule, msg, sev) for rule, msg, sev in check(task)]
    return issues + check_diversity(tasks)


def lint_table(tasks: Iterable[Task], issues: Iterable[Issue], *, only_flagged: bool = False) -> str:
    """A text table, one row per task, one column per criterion (rule names, or "ok")."""
    tasks = list(tasks)
    by: dict[tuple[str, str], list[str]] = {}
    for issue in issues:
        by.setdefault((issue.task_id, issue.criterion), []).append(issue.rule)
    rows = []
    for k, task in enumerate(tasks):
        key = task_key(task, k)
        cells = [",".join(sorted(set(by.get((key, c), [])))) or "ok" for c in CRITERIA]
        if not only_flagged or any(c != "ok" for c in cells):
            rows.append([key[:28]] + cells)
    header = ["task"] + list(CRITERIA)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def issue_counts(issues: Iterable[Issue]) -> dict[str, dict[str, int]]:
    """{criterion: {severity: count}} for a summary line or plot."""
    counts = {c: {s: 0 for s in SEVERITIES} for c in CRITERIA}
    for issue in issues:
        counts[issue.criterion][issue.severity] += 1
    return counts


def verb_noun_counts(tasks: Iterable[Task]) -> Counter:
    """Counter of (verb, noun) pairs over the instructions of ``tasks``."""
    return Counter(verb_noun(t.instruction) for t in tasks)


def plot_verb_noun(tasks: Iterable[Task], top_verbs: int = 12, top_nouns: int = 4, ax=None,
                   language: str | None = None):
    """Horizontal stacked bars: the most common leading verbs, split by their most common nouns.

    ``language`` ("en", "zh") keeps only the tasks of that language; Chinese labels need a CJK font
    (an installed one, else the course's shipped subset: ``instructlib.fonts``).
    """
    import matplotlib.pyplot as plt

    tasks = [t for t in tasks if language is None or t.language == language]
    pairs = verb_noun_counts(tasks)
    family = select_cjk_font() if any(is_cjk(v + n) for v, n in pairs) else None
    font = {"fontfamily": family} if family else {}
    verbs = Counter()
    for (verb, _), c in pairs.items():
        verbs[verb] += c
    chosen = [v for v, _ in verbs.most_common(top_verbs)][::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * max(len(chosen), 3) + 1))
    cmap = plt.get_cmap("tab20")
    for y, verb in enumerate(chosen):
        nouns = Counter({n: c for (v, n), c in pairs.items() if v == verb})
        left = 0
        for k, (noun, c) in enumerate(nouns.most_common(top_nouns)):
            ax.barh(y, c, left=left, color=cmap(k % 20), edgecolor="white")
            if noun:
                ax.text(left + c / 2, y, noun, ha="center", va="center", fontsize=8, **font)
            left += c
        rest = verbs[verb] - left
        if rest:
            ax.barh(y, rest, left=left, color="lightgrey", edgecolor="white")
    ax.set_yticks(range(len(chosen)), chosen, **font)
    ax.set_xlabel("number of instructions")
    ax.set_title("Leading verb and its object noun")
    return ax.figure


def lint_file(path) -> tuple[list[Task], list[Issue]]:
    """Load a seed-task or Alpaca file (Alpaca rows are grouped into tasks) and lint it.

    Each issue's ``location`` is ``file:line`` of its task (for grouped Alpaca rows: the first row).
    """
    from dataclasses import replace

    from .formats import records_to_tasks
    from .io import detect_kind, iter_json_items, load_records_with_lines, load_tasks

    items = list(iter_json_items(path))
    if detect_kind(items[0][1]) == "task":
        tasks = load_tasks(path)
        lines = [line for line, _ in items]
    else:
        located = load_records_with_lines(path)
        tasks = records_to_tasks(r for _, r in located)
        first: dict[str, int] = {}
        for line, record in located:
            first.setdefault(record.instruction, line)
        lines = [first[t.instruction] for t in tasks]
    where = {task_key(t, k): f"{path}:{line}" for k, (t, line) in enumerate(zip(tasks, lines))}
    return tasks, [replace(i, location=where.get(i.task_id, "")) for i in lint_tasks(tasks)]
