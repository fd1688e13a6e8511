"""The library's floors: no import circle, no import from a lower floor to a higher one, one writer,
one generation path, and every module stamped with its chapter.

Every import counts, including those inside functions. A module may import its own floor's modules
(without a circle) and anything below it.
"""
import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "instructlib"

# bottom to top; a unit is the first name under instructlib/ (package or module)
FLOORS = [
    {"config", "files", "fonts", "stats", "text", "tokenization", "lm"},
    {"nn", "data"},
    {"corpus", "pretrain"},
    {"models"},
    {"train", "generate"},
    {"evaluation"},
    {"deploy"},
    {"grading", "course", "polish", "cli"},  # tools for the course itself, above everything they use
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["instructlib", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of instructlib that ``name`` imports anywhere in its source (most specific module)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import instructlib.x.y` of a symbol: its module
                target = target.rpartition(".")[0]
            if target.startswith("instructlib") and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_unit_has_a_floor():
    units = {_unit(m) for m in MODULES} - {""}
    assert units <= set(FLOOR), f"add these to FLOORS: {sorted(units - set(FLOOR))}"


def test_no_import_goes_up_a_floor():
    upward = [f"{m} (floor {FLOOR[_unit(m)]}) imports {t} (floor {FLOOR[_unit(t)]})"
              for m, targets in GRAPH.items() for t in targets
              if _unit(m) and _unit(t) and FLOOR[_unit(t)] > FLOOR[_unit(m)]]
    assert not upward, "\n".join(upward)


# instructlib.generate holds one subpackage per chapter beside the modules all three share
GENERATE_CHAPTERS = {"templates": 6, "backtranslation": 7, "self_instruct": 8}


def _generate_chapter(module: str) -> int | None:
    """The chapter of ``module``'s subpackage of instructlib.generate (None outside the three)."""
    parts = module.split(".")
    return GENERATE_CHAPTERS.get(parts[2]) if len(parts) > 2 and parts[1] == "generate" else None


def test_generate_has_one_subpackage_per_chapter():
    """Each subpackage's modules are stamped with its chapter and import no later chapter's subpackage;
    the shared modules beside them import none (they serve every chapter)."""
    problems = []
    for module, targets in GRAPH.items():
        if _unit(module) != "generate":
            continue
        own = _generate_chapter(module)
        doc = ast.get_docstring(ast.parse(MODULES[module].read_text())) or ""
        if own is not None and not doc.startswith(f"Chapter {own:02d}:"):
            problems.append(f"{module}: docstring should begin 'Chapter {own:02d}:'")
        for target in targets:
            theirs = _generate_chapter(target)
            if theirs is not None and (own is None or theirs > own):
                problems.append(f"{module} (chapter {own or 'shared'}) imports {target} (chapter {theirs:02d})")
    assert not problems, "\n".join(problems)


def test_the_generate_layout_check_sees_each_chapter():
    assert _generate_chapter("instructlib.generate.self_instruct.rewrite") == 8
    assert _generate_chapter("instructlib.generate.templates") == 6
    assert _generate_chapter("instructlib.generate.funnel") is None
    assert "instructlib.generate.backtranslation.roundtrip" in GRAPH["instructlib.generate.self_instruct.rewrite"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_walker_sees_imports_inside_functions():
    assert "instructlib.models.loader" in GRAPH["instructlib.models.llm"]  # imported inside load_llm
    assert "instructlib.files" in GRAPH["instructlib.data.io"]


def _sources():
    return {name: path.read_text() for name, path in MODULES.items()}


def test_one_atomic_writer():
    """Temporary-file-and-rename lives only in instructlib.files."""
    pattern = re.compile(r"os\.replace\(|tempfile\.mkstemp\(|\.rename\(")
    offenders = [n for n, src in _sources().items() if n != "instructlib.files" and pattern.search(src)]
    assert not offenders, f"use instructlib.files instead of a hand-rolled atomic write in {offenders}"


def test_one_generation_path():
    """Text generation goes through models.llm (TinyGPT's own decoder is the thing it calls)."""
    allowed = {"instructlib.models.llm", "instructlib.nn.gpt"}
    offenders = [n for n, src in _sources().items()
                 if n not in allowed and re.search(r"\b(model|self\.model|net|hf)\.generate\(", src)]
    assert not offenders, f"generate through instructlib.models.llm.LLM in {offenders}"


def test_every_module_docstring_names_its_chapter():
    missing = []
    for name, path in MODULES.items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not re.match(r"(Chapter \d\d\b|Course tool\b|Exercises\b)", doc):
            missing.append(f"{name}: {doc[:60]!r}")
    assert not missing, "docstrings must begin 'Chapter NN: ...' (or 'Course tool: ...' / 'Exercises ...' for the course's own tools):\n" + "\n".join(missing)
