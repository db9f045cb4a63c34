"""The deployable stack's structure (Docker does not run here): services,
health checks, start order, and that everything the files name exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from hookkeeper.service.cli import main
from hookkeeper.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def depends(name: str) -> dict[str, str]:
    raw = SERVICES[name].get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {k: v.get("condition", "service_started") for k, v in raw.items()}


def test_every_part_of_the_stack_is_there() -> None:
    assert {
        "postgres",
        "migrate",
        "service",
        "gateway",
        "otel-collector",
        "jaeger",
        "mailpit",
    } <= set(SERVICES)


@pytest.mark.parametrize("name", ["postgres", "service", "gateway", "mailpit"])
def test_long_running_parts_have_health_checks(name: str) -> None:
    check = SERVICES[name].get("healthcheck")
    assert check and check.get("test"), f"{name} has no health check"


def test_start_up_order() -> None:
    assert depends("migrate")["postgres"] == "service_healthy"
    assert depends("service")["migrate"] == "service_completed_successfully"
    assert depends("gateway")["service"] == "service_healthy"
    assert "otel-collector" in depends("service")
    assert "mailpit" in depends("service")
    assert SERVICES["migrate"].get("restart") == "no"


def test_conditions_point_at_services_that_can_meet_them() -> None:
    for name in SERVICES:
        for target, condition in depends(name).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} can never be healthy"
            if condition == "service_completed_successfully":
                assert SERVICES[target].get("restart", "no") == "no"


def test_the_start_order_has_no_cycle() -> None:
    done: set[str] = set()
    pending = set(SERVICES)
    while pending:
        ready = {n for n in pending if set(depends(n)) <= done}
        assert ready, f"dependency cycle among {sorted(pending)}"
        done |= ready
        pending -= ready


def _commands() -> list[list[str]]:
    found = []
    for service in SERVICES.values():
        command = service.get("command")
        if isinstance(command, str):
            command = command.split()
        if command and command[0] == "hookkeeper":
            found.append(command)
    return found


def test_every_hookkeeper_command_it_names_exists() -> None:
    commands = _commands()
    assert {c[1] for c in commands} >= {"migrate", "serve", "gateway"}
    for command in commands:
        group: click.Command = main
        for word in command[1:]:
            if word.startswith("-") or not isinstance(group, click.Group):
                break  # options, or the arguments of a command
            assert isinstance(group, click.Group), f"{' '.join(command)}: {word} is an argument?"
            sub = group.commands.get(word)
            assert sub is not None, f"`{' '.join(command)}`: no command {word!r} in the CLI"
            group = sub


def test_hookkeeper_variables_it_sets_are_real_settings() -> None:
    known = {f"HOOKKEEPER_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES.items():
        env = service.get("environment") or {}
        for variable in env:
            if variable.startswith("HOOKKEEPER_"):
                assert variable in known, f"{name}: {variable} is not a setting (ignored!)"
            # The test-only clock never belongs in a deployment.
            assert "UNSAFE" not in variable


def test_python_health_probes_compile() -> None:
    for name in ("service", "gateway"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        compile(test[3], f"{name}-healthcheck", "exec")
    assert "/healthz" in (ROOT / "gateway" / "hookkeeper" / "gateway" / "app.py").read_text()


def test_mounted_files_exist_and_the_collector_pipelines_are_wired() -> None:
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    for pipeline in collector["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(collector["receivers"])
        assert set(pipeline["exporters"]) <= set(collector["exporters"])
        assert set(pipeline.get("processors", [])) <= set(collector["processors"])
    endpoint = SERVICES["service"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint.endswith(":4317")
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_the_dockerfile_is_multi_stage_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert len(stages) >= 2
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in {"0", "root"}
    # The last stage copies the build from an earlier one rather than building.
    last = text[text.rindex("\nFROM") :]
    assert "COPY --from=" in last
    assert "pip install" not in last


def test_the_stack_speaks_mtls_with_certificates_it_generates() -> None:
    certs = SERVICES["certs"]
    assert certs["command"][:3] == ["hookkeeper", "tls", "dev-certs"]
    folder = certs["command"][3]
    assert certs.get("restart") == "no"
    service_env = SERVICES["service"]["environment"]
    assert "HOOKKEEPER_GRPC_ALLOW_PLAINTEXT" not in service_env
    for key, name in [
        ("HOOKKEEPER_GRPC_TLS_CERT_FILE", "server.pem"),
        ("HOOKKEEPER_GRPC_TLS_KEY_FILE", "server.key"),
        ("HOOKKEEPER_GRPC_TLS_CLIENT_CA_FILE", "ca.pem"),
    ]:
        assert service_env[key] == f"{folder}/{name}"
    gateway_env = SERVICES["gateway"]["environment"]
    for key, name in [
        ("HOOKKEEPER_GATEWAY_GRPC_TLS_CA_FILE", "ca.pem"),
        ("HOOKKEEPER_GATEWAY_GRPC_TLS_CERT_FILE", "gateway.pem"),
        ("HOOKKEEPER_GATEWAY_GRPC_TLS_KEY_FILE", "gateway.key"),
    ]:
        assert gateway_env[key] == f"{folder}/{name}"
    for name in ("service", "gateway"):
        assert any(v.startswith("certs:") for v in SERVICES[name]["volumes"])
    assert depends("service")["certs"] == "service_completed_successfully"
    # The probe needs a client certificate too (mTLS).
    assert "gateway.pem" in SERVICES["service"]["healthcheck"]["test"][3]
