"""Reads the public API's documentation seeds (``../shared/seeds/`` beside the
repository): their example operations and their type tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ROOT

SEEDS = ROOT.parent / "shared" / "seeds"
# Copies kept with the tests, for machines without ../shared; a test checks
# they still equal the originals wherever those exist.
COPIES = Path(__file__).parent / "seed_copies"
_KINDS = {"InputObject": "INPUT_OBJECT", "Object": "OBJECT"}
_NOT_NULL = "Not nullable."


@dataclass(frozen=True)
class SeedField:
    """A documented field: its type name and whether it is non-null."""

    type_name: str
    non_null: bool
    description: str


@dataclass(frozen=True)
class SeedType:
    """A documented type: INPUT_OBJECT, OBJECT or SCALAR, and its fields."""

    kind: str
    description: str
    fields: dict[str, SeedField]


def seed_dir() -> Path:
    """The shared seeds when present, else the copies."""
    return SEEDS if SEEDS.is_dir() else COPIES


def seed_texts(folder: Path | None = None) -> dict[str, str]:
    """Every seed file's text by operation name (the line after the title)."""
    texts = {}
    for path in sorted((folder or seed_dir()).glob("*.txt")):
        text = path.read_text()
        operation = text.splitlines()[2].split()[0]
        texts[operation] = text
    return texts


def example(text: str) -> str:
    """The seed's example operation, verbatim minus the rendered line numbers."""
    block = text.split("\nExample\n", 1)[1].split("\nArguments\n", 1)[0].strip("\n")
    return "\n".join(re.sub(r"^\d+", "", line) for line in block.splitlines()) + "\n"


def types(text: str) -> dict[str, SeedType]:
    """The seed's ``Types`` table."""
    lines = text.split("\nTypes\n", 1)[1].splitlines()
    found: dict[str, SeedType] = {}

    def starts_type(i: int) -> bool:
        return (
            i + 1 < len(lines)
            and bool(lines[i])
            and (lines[i + 1] in _KINDS or lines[i + 1] == lines[i])
        )

    i = 0
    while i < len(lines):
        if not starts_type(i) or lines[i] == "Name":
            i += 1
            continue
        name, kind = lines[i], lines[i + 1]
        description = lines[i + 3]
        if kind not in _KINDS:
            found[name] = SeedType("SCALAR", description, {})
            i += 2
            continue
        fields: dict[str, SeedField] = {}
        i = lines.index("FieldDescription", i) + 1
        while i < len(lines) and lines[i] and not starts_type(i):
            header = lines[i]
            j = i + 1
            while not lines[j].startswith("Type: "):
                j += 1
            fields[header.removesuffix(_NOT_NULL)] = SeedField(
                lines[j].removeprefix("Type: "),
                header.endswith(_NOT_NULL),
                " ".join(line for line in lines[i + 1 : j] if line),
            )
            i = j + 1
        found[name] = SeedType(_KINDS[kind], description, fields)
    return found
