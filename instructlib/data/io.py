"""Chapter 04: JSON / JSONL reading with line numbers, atomic writing, and the loaders for tasks and records.

Every reader decodes strict UTF-8 and keeps the line number of each item, so an error can say
``seed.jsonl:7: field 'instances[0].output': missing``. Every writer writes a temporary file in the
target directory and renames it over the target: a crash mid-write leaves the old file untouched.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

from ..files import atomic_write_jsonl, atomic_write_text
from .records import DataError, Record, Task, record_from_dict, task_from_dict

PathLike = Union[str, os.PathLike]


def read_text(path: PathLike) -> str:
    """The file as strict UTF-8 text (a BOM is dropped); DataError names the bad line."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:  # missing, a directory, unreadable, a dangling or looping symlink
        raise DataError(path, None, None, f"cannot read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte 0x{data[err.start]:02x}); "
                        "re-save the file as UTF-8") from None


ARRAY_IN_JSONL_HINT = ("this .jsonl file holds a JSON array, but JSON Lines wants one object per line: "
                       "rename it to .json, or write each item on its own line")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def _lone_surrogate(obj: Any) -> str | None:
    """The first string (key or value) of ``obj`` holding an unpaired UTF-16 surrogate, if any."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _json_error(path: PathLike, text: str, pos: int, message: str, line: int | None = None) -> DataError:
    """A DataError at character ``pos`` of ``text``; with ``line`` given, ``text`` is that one line."""
    if line is None:
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    else:
        col = pos + 1
    return DataError(path, line, None, f"invalid JSON: {message} (column {col})")


def decode_json(path: PathLike, text: str, pos: int = 0, line: int | None = None) -> tuple[Any, int]:
    """(value, end) of the JSON value at ``text[pos:]``; every way it can fail is a DataError.

    Stricter than ``json.loads``: a duplicate key (JSON keeps the last value silently), a lone
    UTF-16 surrogate (accepted, then impossible to write as UTF-8), nesting too deep for the parser
    and integers over Python's digit limit all name the file and line instead of raising a traceback.
    ``line`` given: ``text`` is that one line of the file (JSONL); else lines are counted in ``text``.
    """
    at = line if line is not None else text.count("\n", 0, pos) + 1
    try:
        obj, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as err:
        raise _json_error(path, text, err.pos, err.msg, line) from None
    except _DuplicateKey as err:
        raise DataError(path, at, None, f"duplicate key {err.args[0]!r} in one object (plain JSON "
                        "readers keep only the last value, silently)") from None
    except RecursionError:
        raise DataError(path, at, None, "JSON nested too deeply to read (about "
                        f"{sys.getrecursionlimit()} levels of [ or {{ at most)") from None
    except ValueError as err:  # Python's limit on the digits of an integer, and the like
        message = str(err)
        if "integer string conversion" in message:
            message = f"a number with more than {sys.get_int_max_str_digits()} digits"
        raise DataError(path, at, None, f"invalid JSON: {message}") from None
    bad = _lone_surrogate(obj)
    if bad is not None:
        k = LONE_SURROGATE.search(bad).start()
        snippet = LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", bad[max(0, k - 20):k + 20])
        raise DataError(path, at, None, f"lone UTF-16 surrogate \\u{ord(bad[k]):04x} in \"{snippet}\": not a "
                        "character, so it cannot be written as UTF-8 (a pair such as \\ud83d\\ude00 is fine)")
    return obj, end


def parse_json_line(path: PathLike, text: str, line: int) -> Any:
    """The one JSON value on line ``line`` (``text``) of a JSONL file, checked as :func:`decode_json` does."""
    obj, end = decode_json(path, text, len(text) - len(text.lstrip()), line)
    rest = text[end:]
    if rest.strip():
        raise _json_error(path, text, end + len(rest) - len(rest.lstrip()), "extra data after the value", line)
    return obj


def is_json_array(text: str) -> bool:
    """True when the whole of ``text`` is one JSON array (e.g. an Alpaca file saved as .jsonl)."""
    if not text.lstrip().startswith("["):
        return False
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):
        return False


def iter_json_items(path: PathLike, text: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line, object) for each item of a JSONL file or of a top-level JSON array.

    The format is sniffed from the first non-blank character: ``[`` means a JSON array (Alpaca
    style), anything else one JSON value per line (blank lines are skipped). A ``.jsonl`` file that
    holds a JSON array of objects is an error with a hint.
    """
    text = read_text(path) if text is None else text
    stripped = text.lstrip()
    if not stripped:
        raise DataError(path, None, None, "file is empty")
    jsonl = Path(path).suffix == ".jsonl"
    if stripped[0] == "[" and not jsonl:
        yield from _iter_array(path, text)
        return
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is data
        if not line.strip():
            continue
        try:
            obj = parse_json_line(path, line, number)
        except DataError as err:
            if not is_json_array(text):
                raise
            raise DataError(path, err.line, None, f"{err.problem.message}; {ARRAY_IN_JSONL_HINT}") from None
        if stripped[0] == "[" and isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            raise DataError(path, number, None, ARRAY_IN_JSONL_HINT)
        yield number, obj


def _iter_array(path: PathLike, text: str) -> Iterator[tuple[int, Any]]:
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
            obj, end = decode_json(path, text, pos)
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
    """A whole JSON document, checked as :func:`decode_json` does; DataError names the line."""
    text = read_text(path)
    obj, end = decode_json(path, text, len(text) - len(text.lstrip()))
    if text[end:].strip():
        raise _json_error(path, text, end + len(text[end:]) - len(text[end:].lstrip()), "extra data after the value")
    return obj


def to_jsonable(item: Any) -> Any:
    """Tasks and Records become their seed / Alpaca dicts; anything else is returned as is."""
    return item.to_dict() if isinstance(item, (Task, Record)) else item


def write_jsonl(path: PathLike, items: Iterable[Any]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept readable), atomically."""
    atomic_write_jsonl(path, (to_jsonable(x) for x in items))


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


def load_records_with_lines(path: PathLike) -> list[tuple[int, Record]]:
    """(line, Record) pairs from an Alpaca, seed-task or chat file (see :func:`load_records`)."""
    from .formats import from_messages_dict

    records: list[tuple[int, Record]] = []
    for line, obj in iter_json_items(path):
        kind = detect_kind(obj)
        if kind == "task":
            records.extend((line, r) for r in task_from_dict(obj, str(path), line).to_records())
        elif kind == "messages":
            records.append((line, from_messages_dict(obj, str(path), line)))
        else:
            records.append((line, record_from_dict(obj, str(path), line)))
    return records


def load_records(path: PathLike) -> list[Record]:
    """Records from an Alpaca file (JSON array or JSONL); seed-task and chat files are flattened."""
    return [record for _, record in load_records_with_lines(path)]
