"""A short hash of the product code that generates a benchmark's input, for its cache key.

A hand-bumped version alone was forgotten once: the sandbox's DWCA writer changed (the 2M-row
archive grew from 1.88 to 1.96 GB) while its cached archive kept its name, so a stale input would
have been reused silently. :func:`source_fingerprint` hashes the source of the given modules and of
every ``gbifdl_assets`` module they import, transitively (read from the files, without importing;
a package's ``__init__`` is not followed, so the sandbox's web app does not key its data).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

__all__ = ["source_fingerprint"]

_ROOT = Path(__file__).resolve().parents[2]
_PACKAGE = "gbifdl_assets"


def _path(module: str) -> Path | None:
    base = _ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules imported by name
            # a package's __init__ only re-exports; its submodules are what generate anything
            if (path_of := _path(target)) is not None and path_of.name != "__init__.py":
                found.add(target)
    return {m for m in found if m == _PACKAGE or m.startswith(_PACKAGE + ".")}


def source_fingerprint(*modules: str) -> str:
    """12 hex digits over the sources of ``modules`` and their ``gbifdl_assets`` imports."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _path(module)
        if path is None:  # a name imported from a module, not a module itself
            continue
        seen[module] = path
        todo.extend(_imports(module, path) - seen.keys())
    digest = hashlib.sha256()
    for module in sorted(seen):
        digest.update(module.encode() + b"\0" + seen[module].read_bytes() + b"\0")
    return digest.hexdigest()[:12]
