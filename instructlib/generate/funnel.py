"""Chapter 07: the funnel — how many candidates enter each filter, how many leave, and why the rest
were dropped. Back-translation (07) and self-instruct (08) report their filters through one ``Funnel``.

    funnel = Funnel()
    kept = funnel.run(candidates, [("length", too_long_or_short), ("dedup", is_duplicate)])
    print(funnel)        # per-filter in / kept / dropped by reason
    funnel.plot()        # bar chart of what survives each filter

A check returns ``None`` to keep an item or a short reason string to drop it.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Optional, Sequence

Check = Callable[[Any], Optional[str]]


class Funnel:
    """Counts of items in, kept and dropped (by reason) per filter, in the order filters were first used."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.kept: Counter = Counter()
        self.dropped: dict[str, Counter] = {}

    def count(self, name: str, reason: Optional[str] = None, n: int = 1) -> None:
        """Record ``n`` items passing filter ``name`` (``reason=None``) or dropped by it for ``reason``."""
        if name not in self.dropped:
            self.order.append(name)
            self.dropped[name] = Counter()
        if reason is None:
            self.kept[name] += n
        else:
            self.dropped[name][reason] += n

    def check(self, name: str, check: Check, item: Any) -> bool:
        """Apply one check to one item, count the outcome; True if the item is kept."""
        reason = check(item)
        self.count(name, reason)
        return reason is None

    def run(self, items: Iterable[Any], checks: Sequence[tuple[str, Check]]) -> list[Any]:
        """Pass every item through the checks in order (an item stops at its first failure); the kept items."""
        return [item for item in items if all(self.check(name, check, item) for name, check in checks)]

    def entered(self, name: str) -> int:
        """Items that reached filter ``name``."""
        return self.kept[name] + sum(self.dropped[name].values())

    def table(self) -> list[dict]:
        """One row per filter: name, in, kept, dropped, and the drop reasons with counts."""
        return [{"filter": name, "in": self.entered(name), "kept": self.kept[name],
                 "dropped": sum(self.dropped[name].values()),
                 "reasons": dict(self.dropped[name].most_common())} for name in self.order]

    def __str__(self) -> str:
        lines = [f"{'filter':<24}{'in':>8}{'kept':>8}{'dropped':>9}  reasons"]
        for row in self.table():
            reasons = ", ".join(f"{r}: {c}" for r, c in row["reasons"].items())
            lines.append(f"{row['filter']:<24}{row['in']:>8}{row['kept']:>8}{row['dropped']:>9}  {reasons}")
        return "\n".join(lines)

    def plot(self, ax=None, title: str = "What survives each filter"):
        """Horizontal bars: items entering each filter, with the kept part drawn over them (matplotlib)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(7, 0.5 * len(self.order) + 1.2))[1]
        names = self.order[::-1]
        ax.barh(names, [self.entered(n) for n in names], color="#d9d9d9", label="entered")
        ax.barh(names, [self.kept[n] for n in names], color="#4c72b0", label="kept")
        for y, n in enumerate(names):
            ax.text(self.kept[n], y, f" {self.kept[n]}/{self.entered(n)}", va="center", fontsize=8)
        ax.set_xlabel("items")
        ax.set_title(title)
        ax.legend(loc="lower right")
        return ax

    def merge(self, other: "Funnel") -> "Funnel":
        """Add another funnel's counts to this one (e.g. after a resumed run); returns self."""
        for name in other.order:
            self.count(name, n=other.kept[name])
            for reason, n in other.dropped[name].items():
                self.count(name, reason, n)
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict (filters in order)."""
        return {"filters": [{"name": n, "kept": self.kept[n], "dropped": dict(self.dropped[n])} for n in self.order]}

    @classmethod
    def from_dict(cls, data: dict) -> "Funnel":
        """The funnel ``to_dict`` described."""
        funnel = cls()
        for f in data["filters"]:
            funnel.count(f["name"], n=f["kept"])
            for reason, n in f["dropped"].items():
                funnel.count(f["name"], reason, n)
        return funnel
