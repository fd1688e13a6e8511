"""Chapter 04: instruction data — tasks and records, JSON/JSONL I/O, formats, validation, lint, prompts."""
from .formats import (from_alpaca, from_dataset, from_messages, from_seed, records_to_tasks, to_alpaca,
                      to_dataset, to_messages, to_seed)
from .io import (atomic_write_text, load_records, load_tasks, read_json, read_jsonl, write_json,
                 write_jsonl)
from .records import DataError, Instance, Problem, Record, Task

__all__ = [
    "DataError", "Instance", "Problem", "Record", "Task",
    "atomic_write_text", "load_records", "load_tasks", "read_json", "read_jsonl", "write_json", "write_jsonl",
    "from_alpaca", "from_dataset", "from_messages", "from_seed", "records_to_tasks", "to_alpaca",
    "to_dataset", "to_messages", "to_seed",
]
