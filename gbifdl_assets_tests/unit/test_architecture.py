"""The import contract and the size rules of ARCHITECTURE.md, checked on the source.

* the core (gbif, annotations, sampling, media, export, specs, storage, vocabulary ...) never imports
  dagster or the Dagster layer, checked statically (every import statement, also inside functions)
  and by importing every core module in a fresh interpreter;
* ``gbif/`` never imports the spec model: the API client knows nothing of training sets;
* the sandbox imports nothing of the product but the shared vocabulary;
* no module imports another module's private (``_name``) names;
* no product module is over 800 lines, and no asset function is over 50.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gbifdl_assets"
#: The Dagster layer: may import dagster and the core. Everything else is core (or the sandbox).
DAGSTER_LAYER = ("gbifdl_assets.defs", "gbifdl_assets.definitions")
#: What the sandbox may import from the product.
SANDBOX_MAY_IMPORT = ("gbifdl_assets.sandbox", "gbifdl_assets.vocabulary")
MAX_MODULE_LINES = 800
MAX_ASSET_FUNCTION_LINES = 50


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def _tree(name: str) -> ast.Module:
    return ast.parse(_modules()[name].read_text(), filename=str(_modules()[name]))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = _modules()[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import statement, function bodies included."""
    found = []
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((_absolute(module, node), [a.name for a in node.names], node.lineno))
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _core_modules() -> list[str]:
    return [
        m
        for m in _modules()
        if not _within(m, DAGSTER_LAYER)
        and not _within(m, ("gbifdl_assets.sandbox",))
        and m not in ("gbifdl_assets.demo", "gbifdl_assets.cli")
    ]


def test_the_core_never_imports_dagster_or_the_dagster_layer():
    offenders = [
        f"{module}:{line} imports {target}"
        for module in _core_modules()
        for target, _, line in _imports(module)
        if _within(target, ("dagster",)) or target.startswith("dagster_") or _within(target, DAGSTER_LAYER)
    ]
    assert not offenders, "\n".join(offenders)


def test_importing_the_whole_core_loads_no_dagster():
    # The static check misses imports through third-party packages; a fresh interpreter does not.
    modules = [m for m in _core_modules() if m != "gbifdl_assets"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_gbif_never_imports_the_spec_model():
    offenders = [
        f"{module}:{line} imports {target}"
        for module in _modules()
        if _within(module, ("gbifdl_assets.gbif",))
        for target, _, line in _imports(module)
        if _within(target, ("gbifdl_assets.specs",))
    ]
    assert not offenders, "\n".join(offenders)


def test_the_sandbox_imports_only_the_shared_vocabulary():
    offenders = [
        f"{module}:{line} imports {target}"
        for module in _modules()
        if _within(module, ("gbifdl_assets.sandbox",))
        for target, _, line in _imports(module)
        if _within(target, ("gbifdl_assets",)) and not _within(target, SANDBOX_MAY_IMPORT)
    ]
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for module in _modules():
        for target, names, line in _imports(module):
            if not _within(target, ("gbifdl_assets",)) or target == module:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") for part in target.split(".") if part != "__init__"):
                offenders.append(f"{module}:{line} imports {private or ''} from {target}")
    assert not offenders, "\n".join(offenders)


def test_no_tests_import_private_names_of_the_product():
    tests = Path(__file__).resolve().parents[1]
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gbifdl_assets."):
                private = [
                    a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
                ]
                if private:
                    offenders.append(f"{path.relative_to(tests)}:{node.lineno} imports {private}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_product_module_is_over_800_lines(module):
    lines = len(_modules()[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines; split it by topic"


def _is_asset_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in ("asset", "multi_asset")


def test_no_asset_function_is_over_50_lines():
    offenders = []
    for module in _modules():
        if not _within(module, DAGSTER_LAYER):
            continue
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.FunctionDef) and any(_is_asset_decorator(d) for d in node.decorator_list):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_ASSET_FUNCTION_LINES:
                    offenders.append(f"{module}.{node.name}: {lines} lines")
    assert not offenders, "\n".join(offenders)
