"""``make proto-check`` passes on the committed gen/ and fails once gen/ no
longer matches protos/, and ``make breaking`` fails on a wire-incompatible
change: both run on copies of the tree, so the real gen/ is never touched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.processes import ROOT

PROTO = Path("protos/hookkeeper/notifications/v1/callback_config.proto")


def _copy_tree(target: Path) -> None:
    for name in ("Makefile", "scripts", "protos", "gen"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    # The project's own venv (protoc and its plugins), never reinstalled:
    # `-o` below tells make its install stamp is up to date.
    (target / ".venv").symlink_to(ROOT / ".venv")


def _proto_check(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "proto-check"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_proto_check_fails_when_gen_is_stale(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    fresh = _proto_check(tmp_path)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "up to date" in fresh.stdout

    # A comment changed in a .proto: the generated descriptors change with it.
    proto = tmp_path / PROTO
    proto.write_text(proto.read_text().replace("//", "// Changed.\n//", 1))
    stale = _proto_check(tmp_path)
    assert stale.returncode != 0
    assert "gen/ is stale" in stale.stdout

    # `make proto` would fix it: regenerate, and the check passes again.
    subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "proto"], cwd=tmp_path, check=True, timeout=120
    )
    assert _proto_check(tmp_path).returncode == 0

    # A generated file edited by hand is caught too.
    stub = next((tmp_path / "gen").rglob("callback_config_pb2.pyi"))
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    assert _proto_check(tmp_path).returncode != 0


def test_make_breaking_refuses_a_wire_incompatible_change(tmp_path: Path) -> None:
    # Against a copy of today's protos (BREAKING_AGAINST) instead of git main,
    # so the test needs no history and changes no repository.
    base, work = tmp_path / "base", tmp_path / "work"
    for tree in (base, work):
        tree.mkdir()
        shutil.copy2(ROOT / "buf.yaml", tree / "buf.yaml")
        shutil.copytree(ROOT / "protos", tree / "protos")
    shutil.copy2(ROOT / "Makefile", work / "Makefile")
    (work / "node_modules").symlink_to(ROOT / "node_modules")

    def breaking() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-o", "node_modules/.installed", "breaking", f"BREAKING_AGAINST={base}"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )

    same = breaking()
    assert same.returncode == 0, same.stdout + same.stderr
    proto = work / PROTO
    text = proto.read_text()
    field = "string contact_email = 4"
    assert field in text
    proto.write_text(text.replace(field, "string contact_email = 14"))
    changed = breaking()
    assert changed.returncode != 0
    assert "contact_email" in changed.stdout + changed.stderr
