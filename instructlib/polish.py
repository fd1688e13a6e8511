"""Course tool: polish executed notebooks so that they read the same wherever they are opened.

A notebook executed by ``python -m instructlib.course run`` (or by hand) carries things a reader
should not see, or sees wrongly outside a trusted Jupyter with widgets:

* tqdm progress bars are widgets whose plain-text fallback is the bar's *first* state
  (``0%|          | 0/800``): that is what GitHub, Colab and any untrusted viewer show. Each one is
  replaced by its final text, rebuilt from the saved widget state (``100%|██████████| 800/800
  [02:51<00:00, 4.67it/s]``); text-mode bars keep only their last state (the text after ``\\r``);
* ``# NBVAL_CHECK_OUTPUT`` and the other nbval comment markers become the equivalent cell tags
  (``nbval-check-output``, which nbval honours the same way) instead of code a reader has to skip;
* warnings that are noise of the test or kernel environment (deprecations, the kernel's
  ``Matplotlib created a temporary cache directory``, transformers' ``loss_type=None`` notice) are
  dropped from stderr, and absolute paths of the machine that ran the notebook (the checkout, home
  directories, temporary directories) are rewritten to relative or neutral ones;
* the notebook metadata gets the standard kernelspec, so opening it does not mark it modified, and
  cells lose their execution timestamps (noise in every diff).

Every step is idempotent: polishing a polished notebook changes nothing.
"""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}
# nbval's comment markers and the cell tags it reads as the same option (nbval.plugin.metadata_tags)
NBVAL_TAGS = {"NBVAL_CHECK_OUTPUT": "nbval-check-output", "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
              "NBVAL_RAISES_EXCEPTION": "nbval-raises-exception", "NBVAL_SKIP": "nbval-skip",
              "PYTEST_VALIDATE_IGNORE_OUTPUT": "nbval-ignore-output"}
_MARKER_LINE = re.compile(r"^[ \t]*#[ \t]*(" + "|".join(NBVAL_TAGS) + r")[ \t]*$")
# stderr lines that say something about the machine or the test run, not about the lesson; a
# Python warning's second line (the indented source line) goes with it
NOISE = [re.compile(p) for p in (
    r"^\S*:\d+: (Deprecation|PendingDeprecation|Future)Warning: ",
    r"^\[transformers\] `loss_type=None` was set in the config but it is unrecognized",
    r"^Matplotlib (created a temporary cache directory|is building the font cache)",
    r"^\S*(jupyter_client|ipykernel|zmq|traitlets)\S*:\d+: \w*Warning: ",
    r"^\S*:\d+: TqdmWarning: IProgress not found",
    r"^\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption",
)]
TEXT_MIMES = ("text/plain", "text/html", "text/markdown")
CELL_ARTEFACTS = ("execution", "ExecuteTime")  # run timestamps (nbclient, extensions): diff noise
TQDM_BAR_WIDTH = 10


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def _html_text(value: str) -> str:
    """tqdm's widget HTML fragments to plain text (figure spaces and entities)."""
    return html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\u2007", " ").replace("\xa0", " ")


def tqdm_text(state: dict, model_id: str) -> str | None:
    """The final text of the tqdm widget ``model_id`` in saved widget ``state``; None if it is not one.

    tqdm.notebook draws an HBox of [HTML prefix, FloatProgress, HTML suffix]; the prefix holds the
    description and percentage, the suffix ``n/total [elapsed<remaining, rate]``.
    """
    box = state.get(model_id, {})
    children = box.get("state", {}).get("children", [])
    if box.get("model_name") != "HBoxModel" or len(children) != 3:
        return None
    parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {}) for c in children]
    names = [p.get("model_name") for p in parts]
    if names != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (p.get("state", {}) for p in parts)
    prefix, suffix = _html_text(str(left.get("value", ""))), _html_text(str(right.get("value", "")))
    value, top = bar.get("value") or 0, bar.get("max") or 0
    if top and top > 0:
        filled = max(0, min(TQDM_BAR_WIDTH, int(TQDM_BAR_WIDTH * value / top)))
        drawn = "█" * filled + " " * (TQDM_BAR_WIDTH - filled)
        return f"{prefix}|{drawn}|{suffix}"
    return f"{prefix}{suffix}"  # no total: tqdm shows no bar either


def _last_state(text: str) -> str:
    """Text-mode progress: keep what each line shows last (the text after its last carriage return)."""
    lines = text.split("\n")
    out = []
    for line in lines:
        pieces = [p for p in line.split("\r") if p]
        out.append(pieces[-1] if pieces else "")
    return "\n".join(out)


def _drop_noise(text: str) -> str:
    lines = text.splitlines(keepends=True)
    out, skipping = [], False
    for line in lines:
        if any(p.search(line) for p in NOISE):
            skipping = True
            continue
        if skipping and line.startswith("  "):  # the warning's source line
            continue
        skipping = False
        out.append(line)
    return "".join(out)


def path_rewriter(root: Path):
    """A function that rewrites absolute paths of this machine in a text: the checkout (``root``)
    becomes relative, ``.../site-packages/`` short, temporary directories ``<tmp>``, homes ``~``."""
    root = Path(root).resolve()
    rules = [
        (re.compile(r"(?<![\w.])/[^\s'\"():]*/site-packages/"), "site-packages/"),
        (re.compile(re.escape(str(root)) + r"/"), ""),
        (re.compile(re.escape(str(root)) + r"(?=[\s'\":),]|$)"), "."),
        (re.compile(r"(?<![\w.])/(tmp|var/tmp|private/var/folders)/([^\s/'\"]+/)?"), "<tmp>/"),
        (re.compile(r"(?<![\w.])/(root|home/[^\s/'\"]+|Users/[^\s/'\"]+)(?=/)"), "~"),
    ]
    # siblings of the checkout become ../ (before the general rules), unless the parent is itself a bare
    # temporary or home directory: a clone in /tmp must not turn every other /tmp path into ../
    if not re.fullmatch(r"/(tmp|var/tmp|root|home/[^/]+|Users/[^/]+)?", str(root.parent)):
        rules.insert(3, (re.compile(re.escape(str(root.parent)) + r"/"), "../"))

    def rewrite(text: str) -> str:
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        return text

    return rewrite


def _like(original: dict, new: dict) -> dict:
    """``new`` as the same kind of mapping as ``original`` (nbformat's NotebookNode or a plain dict)."""
    if type(original) is dict:
        return new
    from nbformat import from_dict

    return from_dict(new)


def _set_text(container: dict, key: str, text: str) -> None:
    container[key] = text.splitlines(keepends=True) if isinstance(container.get(key), list) else text


def polish_cell_source(cell: dict) -> bool:
    """Turn nbval comment-marker lines into cell tags; True if the cell changed."""
    source = _text(cell.get("source"))
    lines = source.splitlines(keepends=True)
    found = [m.group(1) for line in lines if (m := _MARKER_LINE.match(line.rstrip("\n")))]
    if not found:
        return False
    kept = [line for line in lines if not _MARKER_LINE.match(line.rstrip("\n"))]
    new = "".join(kept).lstrip("\n")
    if not source.endswith("\n"):
        new = new.rstrip("\n")
    cell["source"] = new.splitlines(keepends=True) if isinstance(cell.get("source"), list) else new
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    for marker in found:
        if NBVAL_TAGS[marker] not in tags:
            tags.append(NBVAL_TAGS[marker])
    return True


def polish_outputs(cell: dict, widget_state: dict, rewrite) -> int:
    """Finish progress bars, drop noise, rewrite paths in one code cell's outputs; number of changes."""
    changes, outputs = 0, []
    for out in cell.get("outputs", []):
        before = copy.deepcopy(out)
        data = out.get("data", {})
        if WIDGET_VIEW in data:
            final = tqdm_text(widget_state, str(data[WIDGET_VIEW].get("model_id", "")))
            if final is not None:
                out = _like(out, {"data": {"text/plain": final}, "metadata": {}, "output_type": "display_data"})
        if out.get("output_type") == "stream":
            text = _last_state(_text(out.get("text")))
            if out.get("name") == "stderr":
                text = _drop_noise(text)
            text = rewrite(text)
            if not text:
                changes += 1
                continue
            _set_text(out, "text", text)
        for mime in TEXT_MIMES:
            if mime in out.get("data", {}):
                _set_text(out["data"], mime, rewrite(_text(out["data"][mime])))
        changes += out != before
        outputs.append(out)
    if "outputs" in cell:
        cell["outputs"] = outputs
    return changes


def polish_notebook(nb: dict, *, root: Path, setup_cell: str | None = None) -> list[str]:
    """Polish ``nb`` (an nbformat v4 notebook, as a dict or NotebookNode) in place; return what changed.

    ``setup_cell``: when given, a second cell that starts ``# Setup.`` but differs from it is
    replaced by it (the course's setup cell evolves; every notebook carries the current one).
    """
    changed: list[str] = []
    meta = nb.setdefault("metadata", {})
    state = meta.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    rewrite = path_rewriter(root)
    n_markers = n_outputs = 0
    cells = nb.get("cells", [])
    n_timing = 0
    for cell in cells:
        for key in CELL_ARTEFACTS:
            n_timing += cell.get("metadata", {}).pop(key, None) is not None
        if cell.get("cell_type") != "code":
            continue
        n_markers += polish_cell_source(cell)
        n_outputs += polish_outputs(cell, state, rewrite)
    if n_markers:
        changed.append(f"{n_markers} nbval marker cell(s) tagged")
    if n_outputs:
        changed.append(f"{n_outputs} output(s) polished")
    if n_timing:
        changed.append(f"execution timestamps of {n_timing} cell(s) dropped")
    if setup_cell is not None and len(cells) > 1 and cells[1].get("cell_type") == "code":
        current = _text(cells[1].get("source"))
        if current.startswith("# Setup.") and current.strip() != setup_cell.strip():
            cells[1]["source"] = setup_cell
            changed.append("setup cell updated")
    remaining = any(WIDGET_VIEW in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    if "widgets" in meta and not remaining:
        del meta["widgets"]
        changed.append("saved widget state dropped")
    if meta.get("kernelspec") != KERNELSPEC:
        meta["kernelspec"] = dict(KERNELSPEC)
        changed.append("kernelspec set")
    if "language_info" not in meta:
        meta["language_info"] = copy.deepcopy(LANGUAGE_INFO)
        changed.append("language_info set")
    return changed


def polish_file(path: Path, *, root: Path, setup_cell: str | None = None, write: bool = True) -> list[str]:
    """Polish the notebook at ``path`` (written back atomically, only if something changed)."""
    import nbformat

    from .files import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    changed = polish_notebook(nb, root=root, setup_cell=setup_cell)
    if changed and write:
        text = nbformat.writes(nb)
        atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return changed
