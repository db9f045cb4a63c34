"""The test suite's own layout: helpers live in tests/support/, fixtures in
conftest.py, and no test imports conftest (pytest loads it; importing it as a
module runs it twice and hides where a helper lives)."""

from __future__ import annotations

import ast
from pathlib import Path


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_module_imports_conftest(repo_root: Path) -> None:
    offenders = [
        str(path.relative_to(repo_root))
        for folder in ("tests", "bench")
        for path in sorted((repo_root / folder).rglob("*.py"))
        if any(m.endswith("conftest") for m in _imported_modules(path))
    ]
    assert offenders == []
