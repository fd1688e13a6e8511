"""Chapter 10: the online round's test design — users send half of the held-out wordings, transfer is scored on the rest.

Chapter 06's wording bank holds, per family, 12 held-out wordings that no training set and no
generator saw. The round splits them (``split_heldout``): the simulated users phrase their requests in
every other one (``users``); the rest (``transfer``) never reach the server, so a gain there is
transfer to wordings the update never saw, not memory of the feedback. A transfer wording within
ROUGE-L ``threshold`` of a user wording would leak what the users sent into the transfer test; it is
set aside and reported (``leaked``).

``round_test_sets`` crosses each set of wordings with the same new inputs of the test split (paired
items): ``seen`` (the deployed model's training wordings: the gate set), ``users``, ``transfer`` and
``novel`` (held-out wordings whose content words no training wording uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..data.verifiable import Example
from ..data.wordings import crossed_with, load_wordings


@dataclass(frozen=True)
class WordingSplit:
    """Per family: the wordings the users send, the transfer wordings, and the ones set aside as leaks."""

    users: dict[str, list[str]]
    transfer: dict[str, list[str]]
    leaked: dict[str, list[str]]


def split_heldout(families: Sequence[str], threshold: float = 0.7) -> WordingSplit:
    """Every other held-out wording to the users, the rest to the transfer test (minus leaks)."""
    from ..text import rouge_l

    users, transfer, leaked = {}, {}, {}
    for f in families:
        heldout = list(load_wordings(f).heldout)
        users[f] = heldout[0::2]
        near = lambda w: any(rouge_l(u, w) >= threshold for u in users[f])  # noqa: E731
        transfer[f] = [w for w in heldout[1::2] if not near(w)]
        leaked[f] = [w for w in heldout[1::2] if near(w)]
    return WordingSplit(users, transfer, leaked)


def round_test_sets(seen: dict[str, Sequence[str]], split: WordingSplit, n_seen: int, n_inputs: int,
                    data_split: str = "test") -> dict[str, list[Example]]:
    """The round's paired test sets: ``seen`` wordings x ``n_seen`` inputs, the others x ``n_inputs`` inputs."""
    families = list(seen)
    return {"seen": crossed_with(data_split, n_seen, seen),
            "users": crossed_with(data_split, n_inputs, {f: split.users[f] for f in families}),
            "transfer": crossed_with(data_split, n_inputs, {f: split.transfer[f] for f in families}),
            "novel": crossed_with(data_split, n_inputs, {f: list(load_wordings(f).novel) for f in families})}
