"""Prometheus metrics of the milter, checked by scraping the real HTTP endpoint."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mailroute.adapters.metrics import Metrics, directory_size
from mailroute.adapters.milter import MilterServer, MilterSettings
from mailroute.item import Context, MailItem
from mailroute.limits import Limits
from mailroute.pipeline import Pipeline
from mailroute.results import Outcome
from tests.adapters.test_milter_adapter import Slow, one_message
from tests.mta.common import free_port


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


class Refuse:
    name = "refuse"

    def apply(self, item: MailItem, ctx: Context) -> MailItem | Outcome:
        return Outcome.reject()


def test_messages_by_verdict_and_filter_durations_and_errors_are_scraped(
        tmp_path: Path) -> None:
    metrics = Metrics("milter")
    port = metrics.serve("127.0.0.1", 0)
    try:
        quarantine = tmp_path / "q"
        quarantine.mkdir()
        (quarantine / "a.eml").write_bytes(b"x")
        (quarantine / "a.json").write_bytes(b"{}")
        metrics.track_size("quarantine", directory_size(quarantine))
        accepting = MilterServer(Pipeline(filters=(Slow(0.0),)), MilterSettings(workers=1),
                                 metrics=metrics)
        one_message(accepting, tmp_path / "a.sock")
        refusing = MilterServer(Pipeline(filters=(Slow(0.0), Refuse())),
                                MilterSettings(workers=1), metrics=metrics)
        one_message(refusing, tmp_path / "b.sock")
        small = MilterServer(Pipeline(filters=(Slow(0.0),), limits=Limits(max_message_size=100)),
                             MilterSettings(workers=1), metrics=metrics)
        one_message(small, tmp_path / "c.sock", b"x" * 500)
        samples = _scrape(port)
    finally:
        metrics.close()
    assert samples['mailroute_messages_total{adapter="milter",verdict="accept"}'] == 1
    assert samples['mailroute_messages_total{adapter="milter",verdict="reject"}'] == 2
    assert samples['mailroute_filter_results_total{adapter="milter",filter="slow",'
                   'result="changed"}'] == 2
    assert samples['mailroute_filter_results_total{adapter="milter",filter="refuse",'
                   'result="reject"}'] == 1
    assert samples['mailroute_message_duration_seconds_count{adapter="milter"}'] == 3
    assert samples['mailroute_messages_in_flight{adapter="milter"}'] == 0
    assert samples['mailroute_queue_size{adapter="milter",queue="quarantine"}'] == 1
    assert samples['mailroute_queue_size{adapter="milter",queue="workers"}'] == 0


def test_internal_failures_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("bug in the mapping")

    monkeypatch.setattr("mailroute.adapters.milter.result_actions", broken)
    metrics = Metrics("milter")
    port = metrics.serve("127.0.0.1", 0)
    try:
        server = MilterServer(Pipeline(filters=(Slow(0.0),)), MilterSettings(workers=1),
                              metrics=metrics)
        one_message(server, tmp_path / "m.sock")
        samples = _scrape(port)
    finally:
        metrics.close()
    assert samples['mailroute_errors_total{adapter="milter",kind="internal"}'] == 1
    assert samples['mailroute_messages_total{adapter="milter",verdict="tempfail"}'] == 1


def test_the_milter_command_serves_metrics_until_sigterm(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailroute", "milter", "--config", str(policy), "--socket",
         f"unix:{tmp_path / 'm.sock'}", "--metrics", f"127.0.0.1:{port}", "--log", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                samples = _scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert samples['mailroute_messages_in_flight{adapter="milter"}'] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    with pytest.raises(urllib.error.URLError, match="Connection refused"):   # exporter gone
        _scrape(port)


def test_metrics_without_a_free_address_or_well_formed_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailroute.cli import main

    policy = tmp_path / "policy.toml"
    policy.write_text("")
    assert main(["milter", "--config", str(policy), "--socket", f"unix:{tmp_path / 's'}",
                 "--metrics", "9100"]) == 2
    assert "--metrics must be HOST:PORT" in capsys.readouterr().err
