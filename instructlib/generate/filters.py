"""Chapter 08: the instruction filters of Self-Instruct and Alpaca, faithful or correct for Chinese.

Each filter takes one instruction and returns ``None`` (keep) or a short reason (drop), the
``Funnel`` check signature. ``faithful=True`` reproduces the reference code, including what it does
to Chinese: ``len(inst.split())`` counts a whole unspaced Chinese sentence as one word (so it is
"too short"), and ``not inst[0].isascii()`` drops every instruction that starts with a Chinese
character. The default counts each CJK character as a word (``text.words``), accepts any letter
or CJK character first, and adds Chinese keywords to the blacklist.
"""
from __future__ import annotations

import re
import string
import unicodedata
from typing import Callable, Optional, Sequence

from ..text import is_cjk, words

MIN_WORDS = 3     # keep only 3 < words
MAX_WORDS = 150   # ... <= 150
# Self-Instruct (bootstrap_instructions.py): things a text-only model cannot do
SELF_INSTRUCT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                           "map", "maps", "draw", "plot", "go to")
# Alpaca (generate_instruction.py) adds media and diagrams
ALPACA_BLACKLIST = SELF_INSTRUCT_BLACKLIST + ("video", "audio", "music", "flowchart", "diagram")
# The same ideas in Chinese (substring match: Chinese has no word boundaries)
CHINESE_BLACKLIST = ("图片", "图像", "照片", "图表", "画一", "画出", "绘制", "地图", "文件", "视频", "音频",
                     "音乐", "流程图", "示意图", "打开网页")
PROGRAM_PREFIXES = ("Write a program",)
CHINESE_PROGRAM_PREFIXES = ("写一个程序", "编写一个程序", "编写程序", "写程序")

Filter = Callable[[str], Optional[str]]


def normalize_instruction(inst: str, faithful: bool = False) -> str:
    """Collapse whitespace; ``faithful``: then ``str.capitalize()`` as Self-Instruct does (it lowercases
    everything after the first letter: "Explain NASA" -> "Explain nasa"); default: uppercase the first letter only."""
    inst = re.sub(r"\s+", " ", inst).strip()
    if faithful:
        return inst.capitalize()
    return inst[:1].upper() + inst[1:]


def word_count(inst: str, faithful: bool = False) -> int:
    """Words as the filter counts them: ``str.split()`` (faithful) or ``text.words`` (CJK characters count)."""
    return len(inst.split()) if faithful else len(words(inst))


def check_empty(inst: str) -> Optional[str]:
    """Drop empty instructions."""
    return "empty" if not inst.strip() else None


def check_length(inst: str, faithful: bool = False) -> Optional[str]:
    """Keep 3 < words <= 150."""
    n = word_count(inst, faithful)
    if n <= MIN_WORDS:
        return f"<= {MIN_WORDS} words"
    if n > MAX_WORDS:
        return f"> {MAX_WORDS} words"
    return None


def _keyword_re(keyword: str) -> re.Pattern:
    return re.compile(r"\b({0})\b".format(keyword), flags=re.IGNORECASE)


def check_blacklist(inst: str, blacklist: Sequence[str] = SELF_INSTRUCT_BLACKLIST,
                    faithful: bool = False) -> Optional[str]:
    """Drop instructions naming something a text model cannot do (whole-word, case-insensitive match)."""
    for keyword in blacklist:
        if _keyword_re(keyword).search(inst):
            return f"keyword '{keyword}'"
    if not faithful:
        for keyword in CHINESE_BLACKLIST:
            if keyword in inst:
                return f"keyword '{keyword}'"
    return None


def check_program(inst: str, faithful: bool = False) -> Optional[str]:
    """Drop 'Write a program ...' (the reference found the model adds it to many tasks)."""
    prefixes = PROGRAM_PREFIXES if faithful else PROGRAM_PREFIXES + CHINESE_PROGRAM_PREFIXES
    return "starts with 'write a program'" if inst.startswith(prefixes) else None


def check_first_char(inst: str, faithful: bool = False) -> Optional[str]:
    """Drop instructions starting with punctuation; ``faithful`` also drops any non-ASCII first character."""
    first = inst[:1]
    if not first:
        return "empty"
    if first in string.punctuation:
        return "starts with punctuation"
    if faithful:
        return "starts with non-ASCII" if not first.isascii() else None
    if unicodedata.category(first).startswith(("P", "S")):
        return "starts with punctuation"
    if not (first.isalnum() or is_cjk(first)):
        return "starts with a non-letter"
    return None


def instruction_checks(faithful: bool = False, blacklist: Sequence[str] = SELF_INSTRUCT_BLACKLIST
                       ) -> list[tuple[str, Filter]]:
    """The reference's filters in its order, as (name, check) pairs for ``Funnel.run``."""
    return [
        ("empty", check_empty),
        ("length", lambda s: check_length(s, faithful)),
        ("blacklist", lambda s: check_blacklist(s, blacklist, faithful)),
        ("write a program", lambda s: check_program(s, faithful)),
        ("first character", lambda s: check_first_char(s, faithful)),
    ]


def first_failure(inst: str, faithful: bool = False, blacklist: Sequence[str] = SELF_INSTRUCT_BLACKLIST
                  ) -> Optional[str]:
    """The reason the first failing filter gives, or None if ``inst`` passes them all (dedup excluded)."""
    for _, check in instruction_checks(faithful, blacklist):
        reason = check(inst)
        if reason is not None:
            return reason
    return None
