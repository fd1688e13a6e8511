"""Chapter 06: prompt templates in PromptSource's format — Jinja text, ``|||`` between prompt and target.

A ``Template`` renders one example (a dict of fields) into ``(prompt, target)`` exactly as
PromptSource's ``Template.apply`` does: the same Jinja environment (``zip`` global, ``choice``,
``most_frequent`` and ``highlight`` filters), every ``}}`` rewritten to truncate variables at 2,048
characters, ``|||`` inside field values protected while rendering, ``answer_choices`` rendered first
and offered to the template as a list, each part stripped. Two deliberate differences:

* the ``choice`` filter draws from a ``random.Random`` seeded per call (``apply(example, seed=...)``;
  by default a stable hash of the template id and the example), where PromptSource uses the global
  ``random`` module, so a render never depends on what ran before it;
* templates render in Jinja's sandbox (files from elsewhere cannot reach Python internals); ordinary
  templates render identically.

``load_promptsource(path)`` reads a PromptSource ``templates.yaml`` (``!Template`` and
``!TemplateMetadata`` tags) and ``dump_promptsource`` writes the same format back: loading a
PromptSource file and dumping it gives the file back byte for byte. Keys the loader does not know
(in the file, a ``!Template`` or its metadata; e.g. ``task_template: true`` in some upstream
``head_qa`` versions) are kept in ``extra``, in file order, written back, and never reach rendering.
The course's own bilingual bank (``load_bank``) is stored in that format under ``bank/``.
"""
from __future__ import annotations

import contextvars
import copy
import functools
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from jinja2 import BaseLoader, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from ...config import stable_seed

SEPARATOR = "|||"
TEXT_VAR_LENGTH = 2048  # PromptSource truncates every substituted value to this many characters
PIPE_PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"  # PromptSource's stand-in for "|||" inside values
BANK_DIR = Path(__file__).with_name("bank")
ID_NAMESPACE = uuid.UUID("6f1c1f7e-6c2a-4c55-9a57-0b5c06a1d306")  # stable ids of course templates

_RNG: contextvars.ContextVar[random.Random] = contextvars.ContextVar("template_rng")


class TemplateError(ValueError):
    """A template that cannot be read or rendered; ``str()`` names the file/line or the template id."""


def _choice(choices):
    """Jinja filter: one element of ``choices``, drawn from the RNG of the current ``apply`` call."""
    rng = _RNG.get(None)
    return (rng or random.Random(0)).choice(choices)


def _most_frequent(items):
    """Jinja filter (PromptSource's): the items that occur most often."""
    if not items:
        return None
    counts = Counter(items).most_common()
    return [item for item, count in counts if count == counts[0][1]]


def _highlight(text):
    """Jinja filter (PromptSource's UI): wrap a value in a coloured span."""
    return "<span style='color: #F08080'>" + text + "</span>"


ENV = SandboxedEnvironment(loader=BaseLoader)
ENV.globals.update(zip=zip)
ENV.filters.update(choice=_choice, most_frequent=_most_frequent, highlight=_highlight)


def _escape_pipe(example: dict) -> dict:
    return {k: v.replace(SEPARATOR, PIPE_PROTECTOR) if isinstance(v, str) else v for k, v in example.items()}


def _unescape_pipe(text: str) -> str:
    return text.replace(PIPE_PROTECTOR, SEPARATOR)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str):
    """Compiled Jinja (compiling costs far more than rendering)."""
    return ENV.from_string(text)


@dataclass
class TemplateMetadata:
    """PromptSource's ``!TemplateMetadata``; ``extra`` keeps unknown keys for the round trip."""

    original_task: Optional[bool] = None      # False: asks something else than the task (e.g. inverted)
    choices_in_prompt: Optional[bool] = None  # the answer choices are shown in the prompt
    metrics: Optional[list] = None
    languages: Optional[list] = None
    extra: dict = field(default_factory=dict)

    def to_yaml_dict(self) -> dict:
        """The mapping written under ``!TemplateMetadata``."""
        return {"choices_in_prompt": self.choices_in_prompt, "languages": self.languages,
                "metrics": self.metrics, "original_task": self.original_task, **self.extra}


@dataclass
class Template:
    """A PromptSource template: Jinja with prompt and target separated by ``|||``."""

    name: str
    jinja: str
    reference: str = ""
    metadata: TemplateMetadata = field(default_factory=TemplateMetadata)
    answer_choices: Optional[str] = None  # Jinja giving "a ||| b ||| c", or None (open-ended)
    id: str = ""                          # PromptSource: a uuid; ours: uuid5 of (task, name)
    task: str = ""                        # the dataset (and subset) it belongs to; not stored per template
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys of the file, kept for the round trip

    def __post_init__(self) -> None:
        if not self.id:
            self.id = str(uuid.uuid5(ID_NAMESPACE, f"{self.task}/{self.name}"))

    # --- course conveniences --------------------------------------------------------------------
    @property
    def language(self) -> str:
        """The prompt's language (first of ``metadata.languages``; "" if unknown)."""
        return (self.metadata.languages or [""])[0]

    @property
    def inverted(self) -> bool:
        """True for a FLAN-style inverted template (``original_task: false``)."""
        return self.metadata.original_task is False

    def variables(self) -> set[str]:
        """Undeclared variables of the template and its answer choices (``answer_choices`` excluded)."""
        names = set(meta.find_undeclared_variables(ENV.parse(self.jinja)))
        if self.answer_choices:
            names |= meta.find_undeclared_variables(ENV.parse(self.answer_choices))
        return names - {"answer_choices"} - set(ENV.globals)

    # --- rendering ------------------------------------------------------------------------------
    def answer_choices_list(self, example: dict, seed: Optional[int] = None) -> Optional[list[str]]:
        """The rendered answer choices for ``example`` (None for an open-ended template)."""
        token = _RNG.set(random.Random(self._seed(example, seed)))
        try:
            return self._choices(example)
        finally:
            _RNG.reset(token)

    def _choices(self, example: dict) -> Optional[list[str]]:
        if self.answer_choices is None:
            return None
        rendered = self._compile(self.answer_choices).render(**_escape_pipe(example))
        return [_unescape_pipe(c.strip()) for c in rendered.split(SEPARATOR)]

    def apply_parts(self, example: dict, *, seed: Optional[int] = None, truncate: bool = True) -> list[str]:
        """Render and split on ``|||``: PromptSource's ``apply`` (a list; normally prompt and target)."""
        if "answer_choices" in example:
            raise TemplateError(f"template {self.id}: the example has a field named 'answer_choices', "
                                "which the template reserves for the rendered choices")
        jinja = self.jinja
        if truncate:
            jinja = jinja.replace("}}", f" | string | truncate({TEXT_VAR_LENGTH}) }}}}")
        protected = _escape_pipe(example)
        # one RNG per call, drawn from in PromptSource's order: the answer choices, then the template
        token = _RNG.set(random.Random(self._seed(example, seed)))
        try:
            protected["answer_choices"] = self._choices(example)
            rendered = self._compile(jinja).render(**protected)
        except TemplateError:
            raise
        except Exception as err:  # noqa: BLE001 - a bad template must name itself, not crash the run
            raise TemplateError(f"template {self.id} ({self.name!r}): cannot render: {err}") from err
        finally:
            _RNG.reset(token)
        return [_unescape_pipe(part).strip() for part in rendered.split(SEPARATOR)]

    def apply(self, example: dict, *, seed: Optional[int] = None, truncate: bool = True) -> tuple[str, str]:
        """``(prompt, target)`` for one example; TemplateError unless there are exactly two parts."""
        parts = self.apply_parts(example, seed=seed, truncate=truncate)
        if len(parts) != 2:
            raise TemplateError(f"template {self.id} ({self.name!r}): rendered into {len(parts)} part(s), "
                                f"expected a prompt and a target separated by '{SEPARATOR}'")
        return parts[0], parts[1]

    def _seed(self, example: dict, seed: Optional[int]) -> int:
        return stable_seed(self.id, example) if seed is None else seed

    def _compile(self, text: str):
        try:
            return _compiled(text)
        except TemplateSyntaxError as err:
            raise TemplateError(f"template {self.id} ({self.name!r}): Jinja syntax error on line "
                                f"{err.lineno}: {err.message}") from err

    def to_yaml_dict(self) -> dict:
        """The mapping written under ``!Template``: PromptSource's attributes, then ``extra`` (never overriding)."""
        known = {"answer_choices": self.answer_choices, "id": self.id, "jinja": self.jinja,
                 "metadata": self.metadata, "name": self.name, "reference": self.reference}
        return {**known, **{k: v for k, v in self.extra.items() if k not in known}}


# --- YAML: PromptSource's file format -----------------------------------------------------------

class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when available: 10x faster
    """SafeLoader plus the two PromptSource tags."""


class _Dumper(yaml.Dumper):
    """The dumper PromptSource's ``yaml.dump`` uses, taught our two classes."""


_TEMPLATE_KEYS = {"answer_choices", "id", "jinja", "metadata", "name", "reference"}
_FILE_KEYS = {"dataset", "subset", "templates"}
_META_KEYS = {"choices_in_prompt", "languages", "metrics", "original_task"}


def _where(loader, node) -> str:
    return f"{getattr(loader, 'source_name', '<yaml>')}:{node.start_mark.line + 1}"


def _construct_template(loader, node) -> Template:
    data = loader.construct_mapping(node, deep=True)
    for key in ("jinja", "name"):
        if not isinstance(data.get(key), str):
            problem = "missing" if key not in data else f"must be a string, got {type(data[key]).__name__}"
            raise TemplateError(f"{_where(loader, node)}: {key}: {problem}")
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, TemplateMetadata):
        raise TemplateError(f"{_where(loader, node)}: metadata: must be a !TemplateMetadata mapping")
    choices = data.get("answer_choices")
    if choices is not None and not isinstance(choices, str):
        raise TemplateError(f"{_where(loader, node)}: answer_choices: must be a string or null")
    return Template(name=data["name"], jinja=data["jinja"], reference=data.get("reference") or "",
                    metadata=metadata or TemplateMetadata(), answer_choices=choices,
                    id=str(data.get("id") or ""), extra={k: v for k, v in data.items() if k not in _TEMPLATE_KEYS})


def _construct_metadata(loader, node) -> TemplateMetadata:
    data = loader.construct_mapping(node, deep=True)
    return TemplateMetadata(**{k: data.get(k) for k in _META_KEYS},
                            extra={k: v for k, v in data.items() if k not in _META_KEYS})


_Loader.add_constructor("!Template", _construct_template)
_Loader.add_constructor("!TemplateMetadata", _construct_metadata)
_Dumper.add_representer(Template, lambda d, t: d.represent_mapping("!Template", t.to_yaml_dict()))
_Dumper.add_representer(TemplateMetadata, lambda d, m: d.represent_mapping("!TemplateMetadata", m.to_yaml_dict()))


@dataclass
class TemplateFile:
    """The contents of one ``templates.yaml``: dataset, optional subset, templates by id, unknown top-level keys."""

    dataset: str
    templates: dict[str, Template]
    subset: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """``dataset`` or ``dataset/subset``."""
        return f"{self.dataset}/{self.subset}" if self.subset else self.dataset


def loads_promptsource(text: str, source: str = "<yaml>") -> TemplateFile:
    """Parse the text of a PromptSource ``templates.yaml``; TemplateError names file, line and field."""
    loader = _Loader(text)
    loader.source_name = source
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise TemplateError(f"{source}{line}: not valid YAML: {getattr(err, 'problem', err)}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict) or not isinstance(data.get("templates"), dict):
        raise TemplateError(f"{source}:1: templates: missing (expected a mapping of id -> !Template)")
    if not isinstance(data.get("dataset"), str):
        raise TemplateError(f"{source}:1: dataset: missing or not a string")
    task = f"{data['dataset']}/{data['subset']}" if data.get("subset") else data["dataset"]
    for key, tpl in data["templates"].items():
        if not isinstance(tpl, Template):
            raise TemplateError(f"{source}: templates.{key}: expected a !Template mapping")
        tpl.task = task
    return TemplateFile(data["dataset"], dict(data["templates"]), data.get("subset"),
                        {k: v for k, v in data.items() if k not in _FILE_KEYS})


def load_promptsource(path: Union[str, Path]) -> list[Template]:
    """The templates of a PromptSource ``templates.yaml`` file (its order: by id)."""
    return list(read_template_file(path).templates.values())


def read_template_file(path: Union[str, Path]) -> TemplateFile:
    """A whole ``templates.yaml`` (dataset, subset and templates)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TemplateError(f"{path}: cannot read: {err.strerror}") from None
    return loads_promptsource(text, str(path))


def dumps_promptsource(templates: Union[TemplateFile, list[Template]], dataset: str = "",
                       subset: Optional[str] = None, allow_unicode: bool = False) -> str:
    """The YAML text PromptSource writes (``yaml.dump``: keys sorted, block style).

    ``allow_unicode=False`` is PromptSource's choice (non-ASCII as ``\\u`` escapes); the course bank
    uses ``True`` so Chinese stays readable. Both load back to the same templates.
    """
    extra: dict[str, Any] = {}
    if isinstance(templates, TemplateFile):
        dataset, subset, items = templates.dataset, templates.subset, list(templates.templates.values())
        extra = templates.extra
    else:
        items = list(templates)
    ids = [t.id for t in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise TemplateError(f"duplicate template id {dup}")
    doc: dict[str, Any] = {k: v for k, v in extra.items() if k not in _FILE_KEYS}  # known keys are never overridden
    doc.update(dataset=dataset, templates={t.id: t for t in items})
    if subset:
        doc["subset"] = subset
    return yaml.dump(doc, Dumper=_Dumper, allow_unicode=allow_unicode)


def dump_promptsource(templates: Union[TemplateFile, list[Template]], path: Union[str, Path],
                      dataset: str = "", subset: Optional[str] = None, allow_unicode: bool = False) -> Path:
    """Write templates to ``path`` in PromptSource's format (atomically)."""
    from ...files import atomic_write_text

    return atomic_write_text(path, dumps_promptsource(templates, dataset, subset, allow_unicode))


# --- the course bank ----------------------------------------------------------------------------

def bank_names() -> list[str]:
    """Names of the course's template files (one per task family, plus ``translation``)."""
    return sorted(p.stem for p in BANK_DIR.glob("*.yaml"))


def load_bank(name: str) -> list[Template]:
    """The course templates of one task (a verifiable family name or ``translation``)."""
    if not (BANK_DIR / f"{name}.yaml").exists():
        raise TemplateError(f"no template bank named {name!r}; known: {', '.join(bank_names())}")
    return [copy.copy(t) for t in _bank(name)]


@functools.lru_cache(maxsize=None)
def _bank(name: str) -> tuple[Template, ...]:
    return tuple(sorted(load_promptsource(BANK_DIR / f"{name}.yaml"), key=lambda t: t.name))
