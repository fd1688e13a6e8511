"""Chapter 07: hand grades of generated wordings (chapters 07-08), and the precision they give a generator's pool.

``graded_wordings.yaml`` holds, per family and sample (``rewrites``, ``kept``, ``unfiltered``), the
course team's verdict on generated instructions: does a careful reader do exactly the family's task?
``precision(pool, sample)`` scores a pool by the graded texts it still contains (a rerun on another
machine may sample other texts: those are counted as ungraded, not guessed).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

GRADES_PATH = Path(__file__).with_name("graded_wordings.yaml")


@lru_cache(maxsize=1)
def load_grades() -> dict[str, dict[str, dict[str, bool]]]:
    """``{family: {sample: {text: faithful}}}`` from ``graded_wordings.yaml``."""
    import yaml

    raw = yaml.safe_load(GRADES_PATH.read_text(encoding="utf-8"))
    for family, samples in raw.items():
        for sample, grades in samples.items():
            bad = [t for t, v in grades.items() if not isinstance(v, bool)]
            if bad:
                raise ValueError(f"{GRADES_PATH.name}: {family}.{sample}: {bad[0]!r}: grade must be true or false")
    return raw


@dataclass(frozen=True)
class Precision:
    """Share of graded texts that keep the task, with a 95 % Wilson interval."""

    faithful: int
    graded: int
    ungraded: int        # texts of the sample that this pool no longer contains

    @property
    def value(self) -> float:
        return self.faithful / self.graded if self.graded else float("nan")

    def interval(self) -> tuple[float, float]:
        """95 % Wilson score interval of the share."""
        from ..stats import wilson_interval

        return wilson_interval(self.faithful, self.graded) if self.graded else (float("nan"), float("nan"))

    def __str__(self) -> str:
        low, high = self.interval()
        return (f"{self.faithful}/{self.graded} = {self.value:.0%} [{low:.0%}, {high:.0%}]"
                + (f" ({self.ungraded} graded texts not in this pool)" if self.ungraded else ""))


def precision(pool: Mapping[str, Sequence[str]], sample: str) -> Precision:
    """Precision of ``pool`` (family -> texts) on the graded ``sample`` of its families."""
    faithful = graded = ungraded = 0
    for family, texts in pool.items():
        have = set(texts)
        for text, ok in load_grades().get(family, {}).get(sample, {}).items():
            if text in have:
                graded += 1
                faithful += ok
            else:
                ungraded += 1
    return Precision(faithful, graded, ungraded)
