"""The package's shape, read from its source with ``ast`` (nothing is imported): layers import
downward (nothing imports the command line, no import cycle), private names stay in their module,
functions stay short, no block of code is written twice, and the command line starts without
torch or DALI."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "imagenet_pipe"
MAX_FUNCTION_LINES = 80
REPEATED_LINES = 6
ENTRY_POINTS = {"imagenet_pipe.__main__"}  # `python -m imagenet_pipe` runs the command line


def _name_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_name_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in FILES.items()}


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(package module imported, name taken from it or None) for one import statement; an import of
    a submodule (``from . import report``) counts as an import of that module."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names if alias.name in FILES]
    if node.level:
        here = module.split(".") if FILES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base not in FILES:
        return []
    return [(f"{base}.{alias.name}", None) if f"{base}.{alias.name}" in FILES else (base, alias.name)
            for alias in node.names]


def _imports() -> dict[str, set[tuple[str, str | None]]]:
    """module -> what it imports from the package, at module level or inside functions (a lazy
    import is a dependency too)."""
    out: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out[module].update((target, name) for target, name in _imported(module, node) if target != module)
    return out


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_nothing_outside_the_command_line_imports_it():
    offenders = sorted(f"{module} imports {target}" for module, targets in _imports().items()
                       for target, _ in targets
                       if (target == "imagenet_pipe.cli" or target.startswith("imagenet_pipe.cli."))
                       and not module.startswith("imagenet_pipe.cli") and module not in ENTRY_POINTS)
    assert offenders == []


def test_no_import_cycle():
    graph = {module: {target for target, _ in targets} for module, targets in _imports().items()}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
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
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in FILES:
        if module not in index:
            visit(module)
    assert cycles == []


def _defined_in(tree: ast.AST) -> set[str]:
    """Every name a module defines or binds: functions, classes, assigned names and attributes, arguments."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
    return names


def test_no_private_name_is_used_outside_its_module():
    """``from x import _name``, ``module._name``, and ``obj._name`` on anything but ``self`` / ``cls``
    where this module defines no ``_name`` (a private attribute of another module's object)."""
    offenders = []
    for module, targets in _imports().items():
        offenders += [f"{module}: from {target} import {name}" for target, name in targets
                      if name is not None and _is_private(name)]
    for module, tree in TREES.items():
        defined = _defined_in(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in ("self", "cls") and node.attr not in defined:
                offenders.append(f"{module}:{node.lineno}: .{node.attr}")
    assert offenders == []


def test_no_function_is_longer_than_80_lines():
    long = [f"{module}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, tree in TREES.items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_no_block_of_six_lines_is_written_twice():
    """Six consecutive code lines (blank lines, comments and import statements left out) that occur
    at two places of the package."""
    places: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for module, tree in TREES.items():
        imports = {line for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for line in range(node.lineno, node.end_lineno + 1)}
        lines = [(number, text.strip()) for number, text in enumerate(FILES[module].read_text().splitlines(), 1)]
        code = [(n, t) for n, t in lines if t and not t.startswith("#") and n not in imports]
        for i in range(len(code) - REPEATED_LINES + 1):
            places[tuple(t for _, t in code[i:i + REPEATED_LINES])].append(f"{module}:{code[i][0]}")
    repeated = {block[0]: where for block, where in places.items() if len(where) > 1}
    assert repeated == {}


def test_the_command_line_starts_without_torch_or_dali():
    """Building the parser of every command, and importing the package's public doors, loads
    neither torch nor DALI (`imagenet-pipe convert` must not pay for them)."""
    code = """
import sys
import imagenet_pipe
from imagenet_pipe.cli import COMMANDS, build_parser

parser = build_parser()
for argv in (["convert", "imagenet1k", "src"], ["verify", "d"], ["sync", "a", "b"], ["datasets"],
             ["fake", "imagenet1k", "o"], ["demo"], ["bench", "d"], ["eval", "d", "--model", "small"]):
    assert parser.parse_args(argv).command == argv[0]
assert len(COMMANDS) == 8
import imagenet_pipe.bench, imagenet_pipe.evaluation, imagenet_pipe.storage
heavy = sorted(m for m in ("torch", "nvidia.dali", "boto3") if m in sys.modules)
print("heavy:", heavy)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "heavy: []"
