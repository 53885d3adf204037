"""Imports run downwards only, and no module imports itself round a loop.

The layer order is read from the code block under "## The layers" in docs/architecture.md (top layer first;
a line that does not start with a space names a layer's members: ``jobs/`` a package, ``errors.py`` a
module). Every import of every module under diffsearch/ is read with ``ast`` (those inside functions and
under ``if TYPE_CHECKING`` too: an import in a function is still a dependency), so the doc and the code
cannot drift apart: a new package missing from the block fails here too.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Upward imports another branch removes (the sweep API built on the sweep job); each must still exist,
# so a stale line here fails too and is deleted once the import is gone.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def read_layers(markdown: str) -> list[list[str]]:
    """The members of each layer, top first, from the first code block after "## The layers"."""
    section = markdown.split("## The layers", 1)[1]
    block = re.search(r"```[^\n]*\n(.*?)```", section, re.S).group(1)
    layers = []
    for line in block.splitlines():
        if not line or line[0].isspace():
            continue  # a description's continuation
        members = []
        for token in line.split():
            if not (token.endswith("/") or token.endswith(".py")):
                break
            members.append(token)
        assert members, f"a layer line names no package or module: {line!r}"
        layers.append(members)
    return layers


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str) -> set[str]:
    """The modules of ``package`` that ``name`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".")
                if node.level
                else node.module or ""
            )
            for alias in node.names:  # ``from pkg import module`` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name and (m == package or m.startswith(package + "."))}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules, package) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, package: str, layers: list[list[str]]) -> int | None:
    """The index of the layer whose member holds ``module`` (``jobs/`` holds diffsearch.jobs.*)."""
    rest = module[len(package) :].lstrip(".").split(".") if module != package else ["__init__"]
    for depth, members in enumerate(layers):
        for member in members:
            if member.endswith("/") and rest[0] == member[:-1]:
                return depth
            if member.endswith(".py") and len(rest) == 1 and rest[0] == member[:-3]:
                return depth
    return None


def upward_imports(graph: dict[str, set[str]], package: str, layers: list[list[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target, package, layers) < layer_of(module, package, layers):
                found.append(f"{module} -> {target}")
    return found


def check(
    root: Path, package: str, layers: list[list[str]], known_upward: set[tuple[str, str]] = frozenset()
) -> list[str]:
    """Every problem, one line each: a module in no layer, an upward import, a cycle."""
    graph = import_graph(root, package)
    problems = [f"{m} is in no layer of docs/architecture.md" for m in graph if layer_of(m, package, layers) is None]
    if problems:
        return problems
    upward = upward_imports(graph, package, layers)
    problems += [f"upward import {line}" for line in upward if tuple(line.split(" -> ")) not in known_upward]
    problems += [
        f"known upward import {a} -> {b} is gone: delete it from KNOWN_UPWARD"
        for a, b in known_upward
        if f"{a} -> {b}" not in upward
    ]
    problems += [f"import cycle {' <-> '.join(c)}" for c in cycles(graph)]
    return problems


def test_the_layer_block_names_real_packages():
    layers = read_layers(ARCHITECTURE.read_text())
    assert [members[0] for members in layers][:4] == ["testing/", "cli/", "jobs/", "sweeps/"]
    for members in layers:
        for member in members:
            assert (ROOT / "diffsearch" / member).exists(), f"docs/architecture.md names {member}, which is gone"


def test_no_upward_import_and_no_cycle():
    layers = read_layers(ARCHITECTURE.read_text())
    assert check(ROOT, "diffsearch", layers, KNOWN_UPWARD) == []


PLANTED = {
    "__init__.py": "",
    "low/__init__.py": "",
    "low/a.py": "def f():\n    from planted.low import b  # inside a function: still an edge\n    return b\n",
    "low/b.py": "from planted.low.a import f\n",
    "high.py": "import planted.low.a\n",
    "leaf.py": "",
}
LAYERS = textwrap.dedent("""\
    ## The layers

    ```
    high.py      top
    low/         below it
    leaf.py __init__.py   the bottom
    ```
""")


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "planted" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_and_an_upward_import_fail(tmp_path):
    write_package(tmp_path, PLANTED)
    layers = read_layers(LAYERS)
    assert layers == [["high.py"], ["low/"], ["leaf.py", "__init__.py"]]
    assert check(tmp_path, "planted", layers) == ["import cycle planted.low.a <-> planted.low.b"]
    (tmp_path / "planted" / "leaf.py").write_text("from planted import high\n")
    assert check(tmp_path, "planted", layers) == [
        "upward import planted.leaf -> planted.high",
        "import cycle planted.low.a <-> planted.low.b",
    ]
    (tmp_path / "planted" / "new.py").write_text("")
    assert check(tmp_path, "planted", layers) == ["planted.new is in no layer of docs/architecture.md"]


def test_a_clean_package_passes(tmp_path):
    write_package(tmp_path, {**PLANTED, "low/a.py": "import planted.leaf\n", "low/b.py": "from . import a\n"})
    assert check(tmp_path, "planted", read_layers(LAYERS)) == []
