"""JSON / JSONL reading with line numbers, atomic writing, and the loaders for tasks and records.

Every reader decodes strict UTF-8 and keeps the line number of each item, so an error can say
``seed.jsonl:7: field 'instances[0].output': missing``. Every writer writes a temporary file in the
target directory and renames it over the target: a crash mid-write leaves the old file untouched.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

from .records import DataError, Record, Task, record_from_dict, task_from_dict

PathLike = Union[str, os.PathLike]


def read_text(path: PathLike) -> str:
    """The file as strict UTF-8 text (a BOM is dropped); DataError names the bad line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte 0x{data[err.start]:02x}); "
                        "re-save the file as UTF-8") from None


def _json_error(path: PathLike, text: str, pos: int, message: str) -> DataError:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return DataError(path, line, None, f"invalid JSON: {message} (column {col})")


def iter_json_items(path: PathLike, text: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line, object) for each item of a JSONL file or of a top-level JSON array.

    The format is sniffed from the first non-blank character: ``[`` means a JSON array (Alpaca
    style), anything else one JSON value per line (blank lines are skipped).
    """
    text = read_text(path) if text is None else text
    stripped = text.lstrip()
    if not stripped:
        raise DataError(path, None, None, "file is empty")
    if stripped[0] == "[" and Path(path).suffix != ".jsonl":
        yield from _iter_array(path, text)
        return
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is data
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, number, None, f"invalid JSON: {err.msg} (column {err.colno})") from None


def _iter_array(path: PathLike, text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    pos = len(text) - len(text.lstrip()) + 1  # just after "["
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in ws:
            p += 1
        return p

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        pos = skip(pos + 1)
    else:
        while True:
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise _json_error(path, text, err.pos, err.msg) from None
            yield text.count("\n", 0, pos) + 1, obj
            pos = skip(end)
            if pos < n and text[pos] == ",":
                pos = skip(pos + 1)
            elif pos < n and text[pos] == "]":
                pos = skip(pos + 1)
                break
            else:
                raise _json_error(path, text, pos, "expected ',' or ']' after an array item")
    if pos != n:
        raise _json_error(path, text, pos, "extra data after the top-level array")


def read_jsonl(path: PathLike) -> list[Any]:
    """All objects of a JSONL file (one JSON value per line)."""
    return [obj for _, obj in iter_json_items(path)]


def read_json(path: PathLike) -> Any:
    """A whole JSON document; DataError names the line of a syntax error."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _json_error(path, text, err.pos, err.msg) from None


def to_jsonable(item: Any) -> Any:
    """Tasks and Records become their seed / Alpaca dicts; anything else is returned as is."""
    return item.to_dict() if isinstance(item, (Task, Record)) else item


def atomic_write_text(path: PathLike, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: PathLike, items: Iterable[Any]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable), atomically."""
    atomic_write_text(path, (json.dumps(to_jsonable(x), ensure_ascii=False) + "\n" for x in items))


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write a JSON document (a list of Tasks/Records is converted item by item), atomically."""
    if isinstance(obj, (list, tuple)):
        obj = [to_jsonable(x) for x in obj]
    atomic_write_text(path, [json.dumps(to_jsonable(obj), ensure_ascii=False, indent=indent) + "\n"])


def detect_kind(obj: Any) -> str:
    """``"task"`` (seed format), ``"messages"`` (chat) or ``"record"`` (Alpaca) for one object."""
    if isinstance(obj, dict) and "instances" in obj:
        return "task"
    if isinstance(obj, dict) and "messages" in obj:
        return "messages"
    return "record"


def load_tasks(path: PathLike) -> list[Task]:
    """Tasks from a Self-Instruct seed file (JSONL, or a JSON array of the same objects)."""
    return [task_from_dict(obj, str(path), line) for line, obj in iter_json_items(path)]


def load_records(path: PathLike) -> list[Record]:
    """Records from an Alpaca file (JSON array or JSONL); seed-task and chat files are flattened."""
    from .formats import from_messages_dict

    records: list[Record] = []
    for line, obj in iter_json_items(path):
        kind = detect_kind(obj)
        if kind == "task":
            records.extend(task_from_dict(obj, str(path), line).to_records())
        elif kind == "messages":
            records.append(from_messages_dict(obj, str(path), line))
        else:
            records.append(record_from_dict(obj, str(path), line))
    return records
