"""DESIGN.md's layering rules, checked on the source: imports only point down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = {"PySide6", "qasync", "pyqtgraph", "shiboken6"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["nat", "signaling"])
def test_lower_layers_do_not_import_app_or_qt(package: str) -> None:
    for path in sources(package):
        bad = imported_roots(path) & (QT_MODULES | {"app"})
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_engine_does_not_import_qt() -> None:
    for path in sources("app"):
        if "ui" in path.relative_to(ROOT / "app").parts[:1]:
            continue
        bad = imported_roots(path) & QT_MODULES
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
