"""Chapter 06: a resumable pipeline stage — rows appended to a JSONL file, skipped when already there.

Generation runs for minutes or hours; a kill must cost at most the row being written. A stage keeps
its output in an append-only JSONL file (``files.JSONLAppender``: every line complete or absent)
and knows each row by a key, so a rerun skips what is done and never writes a row twice::

    stage = JSONLStage("out/templates.jsonl", key=lambda row: row["id"])
    for item in inputs:
        if make_key(item) not in stage.done:
            stage.append(render(item))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ..files import JSONLAppender, PathLike, read_jsonl_lenient

Key = Union[str, int, tuple]


def default_key(row: dict) -> Key:
    """A row's ``id`` field (the records of chapters 06–08 carry one)."""
    return row["id"]


class JSONLStage:
    """An append-only JSONL output whose rows are known by ``key(row)``; reruns resume where it stopped."""

    def __init__(self, path: PathLike, key: Callable[[dict], Key] = default_key, fsync: bool = True):
        self.path, self.key = Path(path), key
        self._writer = JSONLAppender(self.path, fsync=fsync)  # repairs a torn last line first
        self.done: set = {self._key_of(row) for row in read_jsonl_lenient(self.path)}

    def _key_of(self, row: dict) -> Key:
        key = self.key(row)
        return tuple(key) if isinstance(key, list) else key

    def __contains__(self, key: Key) -> bool:
        return key in self.done

    def __len__(self) -> int:
        return len(self.done)

    def append(self, row: dict) -> bool:
        """Write ``row`` unless its key is already done; True if it was written."""
        return self.extend([row]) == 1

    def extend(self, rows: Iterable[dict]) -> int:
        """Write the rows whose keys are new (in one write); the number written."""
        fresh, keys = [], set()
        for row in rows:
            key = self._key_of(row)
            if key not in self.done and key not in keys:
                fresh.append(row)
                keys.add(key)
        self._writer.extend(fresh)
        self.done |= keys
        return len(fresh)

    def todo(self, items: Iterable[Any], key: Optional[Callable[[Any], Key]] = None) -> Iterator[Any]:
        """The items whose key (``key(item)``, default the stage's own key) is not done yet."""
        key = key or self._key_of
        return (item for item in items if key(item) not in self.done)

    def rows(self) -> list[dict]:
        """Every row written so far, in file order."""
        return read_jsonl_lenient(self.path)

    def close(self) -> None:
        """Close the output file."""
        self._writer.close()

    def __enter__(self) -> "JSONLStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
