"""Chapter 00: files that are never half-written — the one atomic writer, build-once directories and
an append-only JSONL log, used by every chapter that writes anything.

* ``atomic_write_*``: write a temporary file next to the target, ``fsync`` it, rename it over the
  target. A crash leaves the old file or the new one, never a mixture; the target keeps its
  permissions (a new file gets the usual ``0o666 & ~umask``). Temporary files name their writer's
  process id, so the next write to the same target removes those a killed writer left behind.
* ``build_once``: build a directory in a temporary sibling and rename it into place (caches).
* ``JSONLAppender``: one complete JSON line per write (``O_APPEND`` plus an exclusive lock, so
  concurrent writers never interleave), ``fsync`` after each write; on opening, a torn last line
  left by a kill is cut off, so every line of the file is complete or absent.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(parent: Path, prefix: str) -> None:
    """Delete ``prefix<pid>.*`` siblings whose writing process no longer exists."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    for entry in parent.glob(glob_escape(prefix) + "*"):
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped (file names may contain ``[``)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def atomic_write_bytes(path: PathLike, data: Union[bytes, Iterable[bytes]]) -> Path:
    """Write ``data`` (bytes or an iterable of chunks) to ``path`` atomically, keeping its permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp"
    _remove_orphans(path.parent, prefix)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [data] if isinstance(data, (bytes, bytearray)) else data:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: PathLike, text: Union[str, Iterable[str]]) -> Path:
    """Write UTF-8 text (a string or an iterable of chunks) to ``path`` atomically."""
    chunks = [text] if isinstance(text, str) else text
    return atomic_write_bytes(path, (chunk.encode("utf-8") for chunk in chunks))


def atomic_write_json(path: PathLike, obj: Any, indent: Optional[int] = 1) -> Path:
    """Write one JSON document (non-ASCII kept readable) atomically."""
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def jsonl_line(obj: Any) -> str:
    """One JSONL line (with its newline); refuses what cannot be written back as UTF-8."""
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    line.encode("utf-8")  # a lone surrogate raises here, before anything is written
    return line


def atomic_write_jsonl(path: PathLike, rows: Iterable[Any]) -> Path:
    """Write one JSON value per line atomically."""
    return atomic_write_text(path, (jsonl_line(row) for row in rows))


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` through a temporary file, ``fsync`` and rename (never half a checkpoint)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def build_once(target: PathLike, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first running ``build(tmpdir)`` and renaming tmpdir to it if it is missing.

    Concurrent builders race harmlessly: the first rename wins, the others' copies are discarded.
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.build"
    _remove_orphans(target.parent, prefix)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}.", dir=target.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it 0700: a cache others (sandboxed graders) may read
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class JSONLAppender:
    """Append-only JSONL log: each ``append`` writes one whole line or nothing, even under ``kill -9``."""

    def __init__(self, path: PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        with self._locked():
            self._repair()

    def _locked(self):
        appender = self

        class _Lock:
            def __enter__(self):
                fcntl.flock(appender._fd, fcntl.LOCK_EX)

            def __exit__(self, *exc):
                fcntl.flock(appender._fd, fcntl.LOCK_UN)

        return _Lock()

    def _repair(self) -> None:
        """Cut a torn last line (one without its newline) left by a killed writer."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            # scan back for the last complete line
            pos, block = size, 1 << 16
            while pos > 0:
                start = max(0, pos - block)
                f.seek(start)
                chunk = f.read(pos - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    os.truncate(self.path, start + cut + 1)
                    return
                pos = start
            os.truncate(self.path, 0)

    def append(self, obj: Any) -> None:
        """Write ``obj`` as one JSON line (and fsync it)."""
        self.extend([obj])

    def extend(self, objs: Iterable[Any]) -> None:
        """Write each object as one JSON line, all in a single write."""
        data = "".join(jsonl_line(obj) for obj in objs).encode("utf-8")
        if not data:
            return
        with self._locked():
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (appending after this raises)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JSONLAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def move_aside(path: PathLike, label: str = "replaced") -> Path:
    """Rename ``path`` to the first free ``<path>.<label>-<n>`` (kept, not deleted) and return the new path."""
    path = Path(path)
    n = 1
    while path.with_name(f"{path.name}.{label}-{n}").exists():
        n += 1
    return path.rename(path.with_name(f"{path.name}.{label}-{n}"))


def read_jsonl_lenient(path: PathLike) -> list[Any]:
    """Every complete line of a JSONL log (a missing file is empty; a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            if raw.strip():
                rows.append(json.loads(raw))
    return rows
