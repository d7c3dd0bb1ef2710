"""The package layers: every project import, including those written inside functions, points down or sideways.

The order, lowest first (README "How it fits together" draws the same picture):

1. the drf core: errors, config, models, sampling, grad_window, frames, rewards, geometry, checkpoint, logging, ...
2. ``prompts``: question sets
3. ``critics``: VLM critics
4. ``trainers``: the recipes
5. applications: ``drf.report``, ``drf.toyworld``, ``drf.plan`` and every CLI module (``drf.cli``, ``*.commands``)

A function-local import of a project module is allowed in a CLI module (its handlers import what they run, so that
``drf --help`` stays fast) and elsewhere only with a ``# lazy: <why>`` comment on its line or the line above.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("drf", "prompts", "critics", "trainers")
APPLICATIONS = ("drf.report", "drf.toyworld", "drf.plan")
CLI_MODULES = ("cli", "commands", "__main__")
LAYERS = {1: "drf core", 2: "prompts", 3: "critics", 4: "trainers", 5: "applications"}


def layer_of(module: str) -> int:
    if module.rpartition(".")[2] in CLI_MODULES or module.startswith(tuple(a + "." for a in APPLICATIONS)):
        return 5
    if module in APPLICATIONS:
        return 5
    return {"drf": 1, "prompts": 2, "critics": 3, "trainers": 4}[module.split(".")[0]]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (``a.b.C`` -> ``a.b``), or None for other libraries."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for each project import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    local = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append((target, node.lineno, id(node) in local))
    return found


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    modules = project_modules()
    return {module: imports(module, path, modules) for module, path in modules.items()}


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = [
        f"{module} ({LAYERS[layer_of(module)]}) imports {target} ({LAYERS[layer_of(target)]}) at line {line}"
        for module, edges in graph().items()
        for target, line, _ in edges
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = {module: {target for target, _, _ in found} for module, found in graph().items()}
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [module, target]))
            elif target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_say_why():
    modules = project_modules()
    unexplained = []
    for module, edges in graph().items():
        if module.rpartition(".")[2] in CLI_MODULES:
            continue
        lines = modules[module].read_text(encoding="utf-8").splitlines()
        for target, line, local in edges:
            here, above = lines[line - 1], lines[line - 2] if line > 1 else ""
            if local and "# lazy:" not in here and not above.strip().startswith("# lazy:"):
                unexplained.append(f"{modules[module].relative_to(ROOT)}:{line}: imports {target} inside a function")
    assert not unexplained, "\n".join(unexplained)


def test_the_layer_check_sees_function_local_imports(tmp_path):
    """The walk must count an import written inside a function, or the layer test would pass on a hidden back-edge."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from trainers.base import Trainer\n")
    modules = {"drf.mod": path, "trainers.base": path}
    assert imports("drf.mod", path, modules) == [("trainers.base", 2, True)]
    assert layer_of("trainers.base") > layer_of("drf.mod")


# The modules of drf.models a trainer may import: the protocol and the registry. A family's adapter module
# (drf.models.wan, drf.models.ltx, ...) reaches a trainer only through them.
FAMILY_NEUTRAL = ("drf.models.base", "drf.models.registry")


def test_trainers_import_no_model_family_module():
    named = [
        f"{module} imports {target} at line {line}; use drf.models.base / drf.models.registry"
        for module, edges in graph().items()
        if module.startswith("trainers")
        for target, line, _ in edges
        if target.startswith("drf.models.") and target not in FAMILY_NEUTRAL
    ]
    assert not named, "\n".join(named)


IMPORT_PATH = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


def import_paths(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``(project module, line)`` for each string constant in ``path`` of the form ``"module:attribute"``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = IMPORT_PATH.match(node.value)
            target = _resolve(match.group(1), modules) if match else None
            if target is not None:
                found.append((target, node.lineno))
    return found


def test_no_import_path_string_names_a_higher_layer():
    """A "module:attr" string resolved at run time is an import the layer walk would not see."""
    modules = project_modules()
    upward = [
        f"{modules[module].relative_to(ROOT)}:{line}: names {target} ({LAYERS[layer_of(target)]}) by string"
        for module, path in modules.items()
        for target, line in import_paths(path, modules)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_string_check_sees_an_upward_import_path(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text('HOOK = "drf.report.builder:write_report"\n')
    modules = {"trainers.mod": path, "drf.report.builder": path}
    assert import_paths(path, modules) == [("drf.report.builder", 1)]
    assert layer_of("drf.report.builder") > layer_of("trainers.mod")
