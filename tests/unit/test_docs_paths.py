"""Every repository path the documentation names exists (the layout moved
once already; a stale path sends a reader nowhere)."""

from __future__ import annotations

import re
from pathlib import Path

# Top-level folders of the repository; a `quoted/path` starting with one is a
# path in it.
_ROOTS = {"service", "gateway", "gen", "tests", "scripts", "bench", "docs", "protos", "examples"}
_QUOTED_PATH = re.compile(r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*)`")


def test_paths_named_in_docs_exist(repo_root: Path) -> None:
    documents = [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]
    missing = []
    for document in documents:
        for match in _QUOTED_PATH.finditer(document.read_text()):
            path = match.group(1)
            if path.split("/")[0] in _ROOTS and not (repo_root / path).exists():
                missing.append(f"{document.name}: {path}")
    assert missing == []
