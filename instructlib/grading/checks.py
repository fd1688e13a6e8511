"""Exercises: ``check``, ``raises`` and ``seed`` for test cells, and the value format they send.

In a learner's notebook ``check(label, got, expected)`` compares the two values right there and
raises ``AssertionError`` when they differ. While grading, the grader switches the kernel to
"student" (or "key") mode: ``check`` then only sends ``got`` (and, for the key, ``expected``) to the
grader as plain data, and the grader compares the student's ``got`` with the key's ``expected`` in
its own process with :func:`compare`. The student's kernel can send wrong values; it cannot make
the comparison lie. Values travel as JSON: arrays as dtype + shape + base64 bytes, never pickle.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import sys
from typing import Any, Callable

MIME = "application/vnd.instructlib.check+json"
MAX_DEPTH = 40  # nesting of lists / dicts in one value
MAX_ELEMENTS = 50_000_000  # elements of one decoded array
DTYPES = frozenset(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                    "float16", "float32", "float64", "complex64", "complex128"])
NO_EXCEPTION = "no exception"

_state: dict[str, Any] = {"mode": "local", "secret": ""}


class ValueFormatError(ValueError):
    """A value that is not plain data (when sending) or not valid check data (when receiving)."""


def _configure(mode: str, secret: str = "") -> None:
    """Called by the grader in a grading kernel: ``mode`` is "key" or "student"."""
    _state.update(mode=mode, secret=secret)


def seed(n: int) -> int:
    """``n`` in a notebook; while grading, a 32-bit number derived from ``n`` and the run's secret."""
    if not _state["secret"]:
        return n
    digest = hashlib.sha256(f"{_state['secret']}:{n}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def raises(fn: Callable, *args: Any, **kwargs: Any) -> str:
    """The name of the exception class ``fn(*args, **kwargs)`` raises, or ``"no exception"``."""
    try:
        fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - reporting which exception is the point
        return type(err).__name__
    return NO_EXCEPTION


# ---------------------------------------------------------------- encoding (in the kernel)


def encode(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-ready plain data; ValueFormatError for anything else."""
    if _depth > MAX_DEPTH:
        raise ValueFormatError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [encode(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [encode(v, _depth + 1) for v in value]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(value, dict):
        return {"dict": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dict": [[f.name, encode(getattr(value, f.name), _depth + 1)]
                         for f in dataclasses.fields(value)]}
    array = _as_numpy(value)
    if array is not None:
        if array.ndim == 0 and type(value).__module__ == "numpy":
            return encode(array.item(), _depth)  # numpy scalars compare like Python numbers
        name = array.dtype.name
        if name not in DTYPES:
            raise ValueFormatError(f"arrays of dtype {name} are not supported")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        return {"array": {"dtype": name, "shape": list(array.shape),
                          "data": base64.b64encode(data).decode("ascii")}}
    raise ValueFormatError(f"a {type(value).__module__}.{type(value).__qualname__} is not plain data "
                           "(use numbers, strings, lists, dicts, arrays or tensors)")


def _as_numpy(value: Any):
    """A numpy array for numpy arrays/scalars and torch tensors (bfloat16 becomes float32), else None."""
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        import numpy as np

        return np.asarray(value)
    if module.startswith("torch") and "torch" in sys.modules and isinstance(value, sys.modules["torch"].Tensor):
        torch = sys.modules["torch"]
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.resolve_conj().resolve_neg().numpy().copy()
    return None


# ---------------------------------------------------------------- decoding (in the grader)


def decode(data: Any, _depth: int = 0) -> Any:
    """Plain Python values and numpy arrays from :func:`encode`'s output; ValueFormatError if invalid."""
    if _depth > MAX_DEPTH:
        raise ValueFormatError(f"nested deeper than {MAX_DEPTH} levels")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, _depth + 1) for v in data]
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("dict"), list):
        out = {}
        for pair in data["dict"]:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueFormatError("a dict entry is not a [key, value] pair")
            out[_hashable(decode(pair[0], _depth + 1))] = decode(pair[1], _depth + 1)
        return out
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("array"), dict):
        return _decode_array(data["array"])
    raise ValueFormatError(f"unexpected {type(data).__name__} in check data")


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict) or type(key).__module__ == "numpy":
        raise ValueFormatError("dict keys must be numbers, strings or tuples")
    return key


def _decode_array(spec: dict):
    import numpy as np

    dtype, shape, data = spec.get("dtype"), spec.get("shape"), spec.get("data")
    if dtype not in DTYPES or not isinstance(data, str) or not isinstance(shape, list) or len(shape) > 32 \
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise ValueFormatError("malformed array")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ValueFormatError(f"array of {count} elements is too large")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueFormatError("array data is not base64") from None
    dt = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * dt.itemsize:
        raise ValueFormatError("array data does not match its shape")
    return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)


# ---------------------------------------------------------------- comparison (in the grader)


@dataclasses.dataclass
class Mismatch:
    """Why ``got`` differs from ``expected``: a coarse ``kind`` (safe to show for hidden tests) and detail."""

    kind: str  # "type", "shape", "dtype", "length", "keys", "value"
    detail: str


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(x: Any) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, list):
        return "list"
    if isinstance(x, dict):
        return "dict"
    if x is None:
        return "None"
    if isinstance(x, str):
        return "str"
    return "array"


def _a(kind: str) -> str:
    return kind if kind == "None" else ("an " if kind[0] in "aeiou" else "a ") + kind


def _close(g: float, e: float, atol: float, rtol: float) -> bool:
    if isinstance(g, int) and isinstance(e, int):
        return g == e
    if math.isnan(e) or math.isnan(g):
        return math.isnan(e) and math.isnan(g)
    if math.isinf(e) or math.isinf(g):
        return g == e
    return abs(g - e) <= atol + rtol * abs(e)


def compare(got: Any, expected: Any, *, atol: float = 1e-8, rtol: float = 1e-5, _at: str = "") -> Mismatch | None:
    """None if decoded ``got`` agrees with ``expected`` (numbers and arrays within tolerance)."""
    where = f" at {_at}" if _at else ""
    kg, ke = _kind(got), _kind(expected)
    if kg != ke:
        return Mismatch("type", f"expected {_a(ke)}{where}, got {_a(kg)}")
    if ke == "number":
        if not _close(got, expected, atol, rtol):
            return Mismatch("value", f"expected {_short(expected)}{where}, got {_short(got)}")
        return None
    if ke == "list":
        if len(got) != len(expected):
            return Mismatch("length", f"expected {len(expected)} items{where}, got {len(got)}")
        for i, (g, e) in enumerate(zip(got, expected)):
            if problem := compare(g, e, atol=atol, rtol=rtol, _at=f"{_at}[{i}]"):
                return problem
        return None
    if ke == "dict":
        if set(got) != set(expected):
            missing, extra = set(expected) - set(got), set(got) - set(expected)
            return Mismatch("keys", f"keys differ{where}: missing {_short(sorted(missing, key=repr)[:5])}, "
                                    f"unexpected {_short(sorted(extra, key=repr)[:5])}")
        for k in expected:
            if problem := compare(got[k], expected[k], atol=atol, rtol=rtol, _at=f"{_at}[{k!r}]"):
                return problem
        return None
    if ke == "array":
        return _compare_arrays(got, expected, atol, rtol, where)
    if got != expected:
        return Mismatch("value", f"expected {_short(expected)}{where}, got {_short(got)}")
    return None


def _compare_arrays(got, expected, atol: float, rtol: float, where: str) -> Mismatch | None:
    import numpy as np

    if got.shape != expected.shape:
        return Mismatch("shape", f"expected shape {tuple(expected.shape)}{where}, got {tuple(got.shape)}")
    kinds = {"b": "bool", "i": "integer", "u": "integer", "f": "float", "c": "complex"}
    kg, ke = kinds[got.dtype.kind], kinds[expected.dtype.kind]
    if kg != ke:
        return Mismatch("dtype", f"expected {ke} values ({expected.dtype}){where}, got {got.dtype}")
    if ke in ("bool", "integer"):
        bad = got != expected
    else:
        with np.errstate(all="ignore"):
            diff = np.abs(got.astype(np.complex128 if ke == "complex" else np.float64)
                          - expected.astype(np.complex128 if ke == "complex" else np.float64))
            ok = diff <= atol + rtol * np.abs(expected)
            ok |= (np.isnan(got) & np.isnan(expected)) | (got == expected)
        bad = ~ok
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return Mismatch("value", f"{int(bad.sum())} of {bad.size} values differ{where}; first at index "
                             f"{first}: expected {_short(expected[first].item())}, got {_short(got[first].item())}")


# ---------------------------------------------------------------- the test-cell API


def check(label: str, got: Any, expected: Any, *, atol: float = 1e-8, rtol: float = 1e-5, hint: str = "") -> None:
    """Compare ``got`` with ``expected`` here (notebook), or send them to the grader (grading)."""
    mode = _state["mode"]
    if mode == "local":
        try:
            problem = compare(decode(encode(got)), decode(encode(expected)), atol=atol, rtol=rtol)
        except ValueFormatError as err:
            problem = Mismatch("type", str(err))
        if problem:
            raise AssertionError(f"{label}: {problem.detail}" + (f". {hint}" if hint else ""))
        return
    payload: dict[str, Any] = {"label": str(label)}
    try:
        payload["got"] = encode(got)
    except ValueFormatError as err:
        payload["error"] = str(err)
    if mode == "key":
        payload.update(expected=encode(expected), atol=float(atol), rtol=float(rtol), hint=str(hint))
    from IPython.display import publish_display_data

    publish_display_data({MIME: payload})
