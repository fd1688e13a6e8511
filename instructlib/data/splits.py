"""Chapter 04: train/test splits grouped by task: every instance of a task lands on the same side.

Splitting records at random would put instances of one task in both train and test; the test set
would then measure memorised tasks, not generalisation to new instructions.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence, TypeVar

T = TypeVar("T")


def default_key(item: Any) -> str:
    """The group of an item: a Task's id (else its name, else its instruction); a Record's instruction."""
    return getattr(item, "id", "") or getattr(item, "name", "") or item.instruction


def split_by_task(items: Sequence[T], test_fraction: float = 0.2, seed: int = 0,
                  key: Optional[Callable[[T], str]] = None) -> tuple[list[T], list[T]]:
    """(train, test): groups of ``key`` shuffled with ``seed``; about ``test_fraction`` of groups in test.

    With two groups or more, each side gets at least one group (for 0 < test_fraction < 1). Items are
    shuffled within each side too, so the order carries no information.
    """
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    key = key or default_key
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    names = sorted(groups)  # sorted first: the split does not depend on the input order
    rng = random.Random(seed)
    rng.shuffle(names)
    n_test = round(test_fraction * len(names))
    if len(names) >= 2 and 0 < test_fraction < 1:
        n_test = min(max(n_test, 1), len(names) - 1)
    test = [x for name in names[:n_test] for x in groups[name]]
    train = [x for name in names[n_test:] for x in groups[name]]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test
