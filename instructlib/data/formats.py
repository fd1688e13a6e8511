"""Chapter 04: converters between the course's data model and the formats the ecosystem uses.

* Alpaca: ``{"instruction", "input", "output"}`` dicts (Stanford Alpaca's ``alpaca_data.json``).
* Self-Instruct seed tasks: ``{"id", "name", "instruction", "instances", "is_classification"}``.
* Chat messages: ``[{"role": "user", ...}, {"role": "assistant", ...}]``, what
  ``tokenizer.apply_chat_template`` takes. A chat turn has no separate input field, so the user
  turn is ``instruction`` or ``instruction + "\\n\\n" + input``; ``from_messages`` splits at the first
  blank line. The round trip is therefore exact for every record whose instruction is one paragraph
  (no blank line, no trailing newline), which the linter checks.
* ``datasets.Dataset``: one row per record (or per task, instances as a list column).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Union

from .records import DataError, Instance, Record, Task, record_from_dict, task_from_dict

ROLES = ("system", "user", "assistant")
INPUT_SEPARATOR = "\n\n"


def to_alpaca(item: Union[Record, Task, Iterable[Union[Record, Task]]]) -> Union[dict, list[dict]]:
    """A Record as an Alpaca dict; a Task or a list as a list of Alpaca dicts."""
    if isinstance(item, Record):
        return item.to_dict()
    if isinstance(item, Task):
        return [r.to_dict() for r in item.to_records()]
    return [d for x in item for d in ([to_alpaca(x)] if isinstance(x, Record) else to_alpaca(x))]


def from_alpaca(obj: Union[dict, list[dict]]) -> Union[Record, list[Record]]:
    """An Alpaca dict as a Record, a list of them as a list (DataError on a malformed item)."""
    if isinstance(obj, dict):
        return record_from_dict(obj)
    return [record_from_dict(o, "<alpaca>", k) for k, o in enumerate(obj)]


def to_seed(task: Task) -> dict:
    """A Task as a Self-Instruct seed-task dict."""
    return task.to_dict()


def from_seed(obj: dict) -> Task:
    """A Self-Instruct seed-task dict as a Task (DataError on a malformed object)."""
    return task_from_dict(obj)


def records_to_tasks(records: Iterable[Record]) -> list[Task]:
    """Group records by instruction into tasks (first-seen order), e.g. to lint an Alpaca file."""
    tasks: dict[str, Task] = {}
    for r in records:
        if r.instruction not in tasks:
            tasks[r.instruction] = Task(r.instruction, [], id=f"task_{len(tasks)}")
        tasks[r.instruction].instances.append(Instance(r.input, r.output))
    return list(tasks.values())


def user_content(record: Record) -> str:
    """The user turn of a record: the instruction, then the input after a blank line."""
    return record.instruction + (INPUT_SEPARATOR + record.input if record.input else "")


def to_messages(record: Record, *, with_response: bool = True,
                system: Optional[str] = None) -> list[dict]:
    """Chat messages for a record (user turn, then the assistant turn unless ``with_response=False``)."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": user_content(record)})
    if with_response:
        messages.append({"role": "assistant", "content": record.output})
    return messages


def messages_problems(messages: Any) -> list[tuple[str, str]]:
    """Every problem of a chat conversation meant to hold one record, as (field, message) pairs."""
    if not isinstance(messages, list):
        return [("messages", f"must be a list, got {type(messages).__name__}")]
    out = []
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            out.append((f"messages[{k}]", "expected an object with role and content"))
            continue
        if m.get("role") not in ROLES:
            out.append((f"messages[{k}].role", f"must be one of {', '.join(ROLES)}, got {m.get('role')!r}"))
        if not isinstance(m.get("content"), str):
            out.append((f"messages[{k}].content", "missing or not a string"))
    if out:
        return out
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if roles != ["user", "assistant"]:
        out.append(("messages", f"expected one user turn then one assistant turn, got {roles}"))
    elif not next(m for m in messages if m["role"] == "user")["content"].strip():
        out.append(("messages", "the user turn (the instruction) is empty"))
    return out


def from_messages(messages: list[dict], path: str = "<messages>", line: Optional[int] = None) -> Record:
    """A Record from a [system?, user, assistant] conversation (a system turn is dropped)."""
    problems = messages_problems(messages)
    if problems:
        raise DataError(path, line, problems[0][0], problems[0][1])
    turns = {m["role"]: m["content"] for m in messages}
    instruction, _, input_ = turns["user"].partition(INPUT_SEPARATOR)
    return Record(instruction, input_, turns["assistant"])


def from_messages_dict(obj: dict, path: str = "<messages>", line: Optional[int] = None) -> Record:
    """A Record from a chat-dataset row ``{"messages": [...]}``."""
    return from_messages(obj["messages"], path, line)


def to_dataset(items: Iterable[Union[Record, Task]]):
    """A ``datasets.Dataset`` with one row per Record (or per Task)."""
    from datasets import Dataset

    rows = []
    for x in items:
        d = x.to_dict()
        if isinstance(x, Task):  # fixed columns, so every row has the same features
            d = {"id": x.id, "name": x.name, "instruction": x.instruction, "instances": d["instances"],
                 "is_classification": x.is_classification, "category": x.category,
                 "language": x.language, "source": x.source}
        rows.append(d)
    return Dataset.from_list(rows)


def from_dataset(ds) -> list[Union[Record, Task]]:
    """Records (or Tasks, when the dataset has an ``instances`` column) from a ``datasets.Dataset``."""
    if "instances" in ds.column_names:
        return [task_from_dict(row, "<dataset>", k) for k, row in enumerate(ds)]
    return [record_from_dict(row, "<dataset>", k) for k, row in enumerate(ds)]
