"""``make bench``: runs every benchmark section and writes docs/benchmarks.md.

Each section module exposes ``async def measure() -> Section``. Figures are
ratios against a baseline measured in the same run, since the machine is noisy.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Section modules, in report order. Each capability adds its own.
SECTIONS = [
    "bench.grpc_api",
    "bench.grpc_tls",
    "bench.workers",
    "bench.telemetry",
    "bench.delivery",
    "bench.gateway",
]
# The million-configuration run takes minutes more; BENCH_SCALE=1 adds it.
if os.environ.get("BENCH_SCALE") == "1":
    SECTIONS += ["bench.scale", "bench.delivery_scale", "bench.delivery_hosts"]

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


@dataclass
class Section:
    """One part of the report: a title, a markdown body and target verdicts."""

    title: str
    body: str
    # (target description, met?)
    targets: list[tuple[str, bool]] = field(default_factory=list)


def _section_lines(section: Section) -> list[str]:
    lines = [f"## {section.title}", "", section.body.strip(), ""]
    if section.targets:
        lines += ["| target | met |", "| --- | --- |"]
        lines += [f"| {t} | {'yes' if ok else 'NO'} |" for t, ok in section.targets]
        lines.append("")
    return lines


def _splice(existing: str, sections: list[Section]) -> str:
    """``existing`` with each section replaced (or appended) by title, so a
    run of some sections (``python -m bench.run bench.grpc_tls``) keeps the
    others' figures."""
    parts = existing.split("\n## ")
    head, blocks = parts[0], {p.split("\n", 1)[0]: "## " + p for p in parts[1:]}
    for section in sections:
        note = f"*(section re-measured alone on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)*\n\n"
        lines = _section_lines(section)
        blocks[section.title] = "\n".join([lines[0], "", note.rstrip(), *lines[1:]])
    return "\n".join([head.rstrip() + "\n", *(b.rstrip() + "\n" for b in blocks.values())])


def _render(sections: list[Section]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"Python {platform.python_version()}, {platform.machine()}. "
        "Every figure is compared with a baseline measured in the same run.",
        "",
    ]
    for section in sections:
        lines += _section_lines(section)
    return "\n".join(lines)


async def _main(selected: list[str]) -> None:
    sections = []
    for name in selected or SECTIONS:
        module = importlib.import_module(name)
        print(f"bench: {name} ...", flush=True)
        sections.append(await module.measure())
    if selected and OUTPUT.exists():
        OUTPUT.write_text(_splice(OUTPUT.read_text(), sections))
    else:
        OUTPUT.write_text(_render(sections))
    print(OUTPUT.read_text())


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
