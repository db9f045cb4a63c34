"""The worker supervisor's policy, with real (tiny) child processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hookkeeper.service import supervisor
from hookkeeper.service.supervisor import RestartPolicy, Supervisor

FAST = RestartPolicy(stable_seconds=30, first_delay=0.01, max_delay=0.05, max_quick_failures=3)


def test_a_worker_that_keeps_failing_at_start_makes_the_supervisor_give_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    # Each start leaves a mark, then fails as a worker whose port is taken would.
    argv = [
        sys.executable,
        "-c",
        f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)",
    ]
    code = Supervisor(argv, 1, policy=FAST).run()
    assert code == 1
    assert starts.read_text() == "xxx"  # started, restarted twice, then given up
    assert "giving up" in caplog.text
    assert "exit code 3" in caplog.text


def test_a_worker_that_ran_long_enough_is_restarted_and_sigterm_stops_with_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    # The third start asks the supervisor to stop, as an operator would.
    program = f"""
import os, signal, sys, time
with open({str(starts)!r}, "a") as marks:
    marks.write("x")
if len(open({str(starts)!r}).read()) >= 3:
    os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(30)
sys.exit(3)
"""
    # Every run counts as stable: a quick failure would give up at once.
    policy = RestartPolicy(stable_seconds=0, first_delay=0.01, max_quick_failures=1)
    assert Supervisor([sys.executable, "-c", program], 1, policy=policy).run() == 0
    assert starts.read_text() == "xxx"
    assert caplog.text.count("restarting in 0.0 s") == 2


def test_each_worker_gets_its_own_telemetry_instance_id() -> None:
    first = supervisor._with_instance_id("deployment.environment=prod")
    second = supervisor._with_instance_id("deployment.environment=prod")
    assert first.startswith("deployment.environment=prod,service.instance.id=")
    assert first != second
    assert supervisor._with_instance_id("").startswith("service.instance.id=")
    # An operator's own choice is kept.
    assert supervisor._with_instance_id("service.instance.id=a") == "service.instance.id=a"


def test_zero_workers_means_one_per_available_cpu() -> None:
    assert supervisor.resolve_workers(3) == 3
    assert supervisor.resolve_workers(0) == supervisor.available_cpus() >= 1


def test_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Supervisor([sys.executable, "-c", "pass"], 0).run()


@pytest.mark.parametrize(("value", "index"), [(None, 0), ("0", 0), ("3", 3), ("x", 0), ("-2", 0)])
def test_a_worker_knows_which_copy_it_is(
    monkeypatch: pytest.MonkeyPatch, value: str | None, index: int
) -> None:
    if value is None:
        monkeypatch.delenv(supervisor.WORKER_INDEX_ENV, raising=False)
    else:
        monkeypatch.setenv(supervisor.WORKER_INDEX_ENV, value)
    assert supervisor.worker_index() == index
