"""CI runs what a new user runs: the README's make targets and nothing else,
and `make test` itself installs what the tests need. (CI once installed the
browser before `make test`, so CI was green while the README's `make test`
failed on a fresh machine.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

# Shell plumbing that is not a command a user runs.
_PLUMBING = {"set", "cd", "export"}


def _commands(script: Path) -> list[list[str]]:
    commands = []
    for line in script.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words[0] not in _PLUMBING:
            commands.append(words)
    return commands


def _readme_targets(readme: Path) -> set[str]:
    return set(re.findall(r"\bmake ([a-z][a-z-]*)", readme.read_text()))


def test_ci_runs_only_readme_make_targets(repo_root: Path) -> None:
    readme = _readme_targets(repo_root / "README.md")
    commands = _commands(repo_root / ".ci" / "run")
    assert commands, ".ci/run runs nothing"
    for words in commands:
        assert words[0] == "make" and len(words) == 2, f".ci/run runs {words}, not a make target"
        assert words[1] in readme, f".ci/run runs `make {words[1]}`, which the README never lists"
    # The README's test command is among them.
    assert ["make", "test"] in commands


def _dry_run(repo_root: Path, target: str, ci: str) -> str:
    env = {**os.environ, "CI": ci}
    return subprocess.run(
        ["make", "-n", "-C", str(repo_root), target],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_make_test_installs_the_test_system_packages(repo_root: Path) -> None:
    planned = _dry_run(repo_root, "test", ci="")
    assert "ensure-system-deps.sh test" in planned
    assert planned.index("ensure-system-deps.sh test") < planned.index("pytest")


def test_make_run_installs_the_service_system_packages(repo_root: Path) -> None:
    planned = _dry_run(repo_root, "install", ci="")
    assert "ensure-system-deps.sh run" in planned
    assert "ensure-system-deps.sh test" not in planned  # no browser for `make run`


def _services_started(repo_root: Path, tmp_path: Path, ci: str) -> list[str]:
    """Runs `make test-services` with stand-in ensure scripts that log their names."""
    log = tmp_path / "started"
    for name in ("ensure-postgres.sh", "ensure-redis.sh"):
        stub = tmp_path / name
        stub.write_text(f"#!/bin/sh\necho {name} >> {log}\n")
        stub.chmod(0o755)
    subprocess.run(
        ["make", "-s", "-C", str(repo_root), "test-services", f"SCRIPTS={tmp_path}"],
        env={**os.environ, "CI": ci},
        check=True,
    )
    return log.read_text().split() if log.exists() else []


def test_make_test_under_ci_makes_sure_postgres_and_redis_are_up(
    repo_root: Path, tmp_path: Path
) -> None:
    planned = _dry_run(repo_root, "test", ci="true")
    assert "ensure-redis.sh" in planned
    assert planned.index("ensure-redis.sh") < planned.index("pytest")
    assert _services_started(repo_root, tmp_path, ci="true") == [
        "ensure-postgres.sh",
        "ensure-redis.sh",
    ]


def test_make_test_outside_ci_leaves_services_alone(repo_root: Path, tmp_path: Path) -> None:
    assert _services_started(repo_root, tmp_path, ci="") == []
