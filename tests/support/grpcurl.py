"""Drives a server with the real grpcurl binary, through reflection only (no
proto files), and reads its answers: the JSON response, or the status with its
details when the call fails."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.support.processes import GRPCURL

# grpcurl exits with 64 + the status code when the RPC itself fails.
_STATUS_EXIT_BASE = 64
_CODES = {code.value[0]: code for code in grpc.StatusCode}
CONFIGS = "hookkeeper.notifications.v1.CallbackConfigService"
SECRETS = "hookkeeper.notifications.v1.SecretRotationService"


@dataclass
class Reply:
    """One grpcurl call's outcome."""

    code: grpc.StatusCode
    # The response message on OK, the google.rpc.Status as JSON otherwise.
    body: dict[str, Any]
    stderr: str = ""

    @property
    def message(self) -> str:
        """The status message of a failed call."""
        return str(self.body.get("message", ""))

    @property
    def details(self) -> list[dict[str, Any]]:
        """The status details of a failed call, as grpcurl printed them."""
        return list(self.body.get("details", []))

    def field_violations(self) -> dict[str, str]:
        """field → description of every google.rpc.BadRequest violation."""
        found: dict[str, str] = {}
        for detail in self.details:
            if detail.get("@type") == "type.googleapis.com/google.rpc.BadRequest":
                for violation in detail.get("field_violations", []):
                    found[violation["field"]] = violation.get("description", "")
        return found


@dataclass
class Grpcurl:
    """grpcurl against one address, with a default bearer token; plaintext
    unless ``transport`` says otherwise (e.g. ``["-cacert", CA, "-cert", …]``)."""

    address: str
    token: str | None = None
    timeout: float = 30
    extra_args: list[str] = field(default_factory=list)
    transport: list[str] = field(default_factory=lambda: ["-plaintext"])

    def run(self, verb: str, *symbols: str) -> str:
        """``grpcurl ADDRESS list|describe [SYMBOL]``; returns stdout."""
        result = subprocess.run(
            [GRPCURL, *self.transport, self.address, verb, *symbols],
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"grpcurl {verb} {' '.join(symbols)} failed: {result.stderr}")
        return result.stdout

    def command(
        self, method: str, *, token: str | bool | None = True, verbose: bool = False
    ) -> list[str]:
        """The argv of a call to ``method`` reading its request from stdin.

        ``token=True`` sends the default token, ``None``/``False`` none, a
        string that token.
        """
        args = [GRPCURL, *self.transport, "-format-error", "-emit-defaults", *self.extra_args]
        if verbose:
            args.append("-v")
        bearer = self.token if token is True else token or None
        if bearer is not None:
            args += ["-H", f"authorization: Bearer {bearer}"]
        return [*args, "-d", "@", self.address, method]

    def call(
        self, method: str, request: dict[str, Any] | None = None, *, token: str | bool | None = True
    ) -> Reply:
        """Calls ``method`` (``package.Service/Method``) with ``request`` as JSON."""
        result = subprocess.run(
            self.command(method, token=token),
            input=json.dumps(request or {}),
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        return parse(result.returncode, result.stdout, result.stderr)

    def ok(self, method: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """Calls ``method`` and returns the response, failing unless the status is OK."""
        reply = self.call(method, request)
        assert reply.code is grpc.StatusCode.OK, (
            f"{method}: {reply.code.name} {reply.body} {reply.stderr}"
        )
        return reply.body


def parse(returncode: int, stdout: str, stderr: str) -> Reply:
    """A Reply from grpcurl's exit code and output (run with -format-error)."""
    if returncode == 0:
        return Reply(grpc.StatusCode.OK, json.loads(stdout), stderr)
    if returncode > _STATUS_EXIT_BASE:
        # With -format-error, grpcurl writes the status as JSON to stderr.
        code = _CODES[returncode - _STATUS_EXIT_BASE]
        return Reply(code, json.loads(stderr), stderr)
    raise AssertionError(f"grpcurl failed before any RPC (exit {returncode}): {stderr}")
