"""Start-up cost of ``mailroute process``: one process per message, as Postfix pipe(8) runs it.

Median wall time over RUNS runs of: ``python -c pass`` (the interpreter alone), alterMIME on
the same message (the C tool an administrator would use instead), and ``mailroute process``
with an empty policy, the disclaimer policy of examples/disclaimer and the gateway policy of
examples/gateway. Runs alternate between the commands, so drift in the machine's speed
touches them alike. Targets (issue 12): empty ≤ 3.5x, disclaimer ≤ 4.5x, gateway ≤ 5x
``python -c pass``. ``mailroute pipe`` (the Postfix pipe(8) / Exim adapter) is timed too,
handing on to a stand-in ``sendmail`` that only reads the message (its log line goes where
``--log auto`` sends it: syslog when /dev/log exists, else standard error).

``mailroute`` is the console script installed beside the interpreter, as Postfix pipe(8) or
an Exim transport runs it (``python -m mailroute`` when there is none).

Bytecode is compiled first (``compileall`` of mailroute and the environment's site-packages),
as a wheel install does: with ``PYTHONDONTWRITEBYTECODE`` set, as on this workplace's
machines, every run would otherwise compile every module again.

    .venv/bin/python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import base64
import compileall
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = ROOT / "examples" / "messages" / "02-outbound-alternative.eml"
ENVELOPE = ["--mail-from", "anna.weber@example.net", "--rcpt", "max@partner.example"]


def _gateway_policy(folder: Path) -> Path:
    """A copy of examples/gateway/policy.toml with a marker key file of its own."""
    gateway = folder / "gateway"
    shutil.copytree(ROOT / "examples" / "gateway", gateway)
    shutil.copytree(ROOT / "examples" / "disclaimer", folder / "disclaimer")
    (gateway / "run").mkdir(exist_ok=True)
    keys = gateway / "run" / "marker-keys.toml"
    secret = base64.b64encode(os.urandom(32)).decode()
    keys.write_text(f'tag = "benchq"\norg_id = "example.net"\n[[key]]\nid = "k1"\n'
                    f'secret = "{secret}"\n')
    keys.chmod(0o600)
    return gateway / "policy.toml"


def _run(command: list[str], stdin: Path) -> float:
    with stdin.open("rb") as handle:
        start = time.perf_counter()
        done = subprocess.run(command, stdin=handle, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} exited {done.returncode}: {done.stderr[:200]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    python = sys.executable
    script = Path(python).with_name("mailroute")
    mailroute = [str(script)] if script.is_file() else [python, "-m", "mailroute"]
    for tree in {str(ROOT / "src"), *site.getsitepackages()}:
        compileall.compile_dir(tree, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        empty = folder / "empty.toml"
        empty.write_text("")
        commands: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            "mailroute, empty policy": [*mailroute, "process", "--config",
                                        str(empty), *ENVELOPE],
            "mailroute, disclaimer policy": [
                *mailroute, "process", "--config",
                str(ROOT / "examples" / "disclaimer" / "policy.toml"), *ENVELOPE],
            "mailroute, gateway policy": [*mailroute, "process", "--config",
                                          str(_gateway_policy(folder)), *ENVELOPE],
        }
        # mailroute pipe as pipe(8) runs it, handing on to a sendmail that only reads
        sendmail = folder / "sendmail"
        sendmail.write_text("#!/bin/sh\nexec cat > /dev/null\n")
        sendmail.chmod(0o755)
        for name, policy in (("empty", empty),
                             ("gateway", folder / "gateway" / "policy.toml")):
            commands[f"mailroute pipe, {name} policy"] = [
                *mailroute, "pipe", "--config", str(policy), "--sender", ENVELOPE[1],
                "--reinject", f"sendmail:{sendmail}", "--", ENVELOPE[3]]
        altermime = shutil.which("altermime")
        if altermime:
            footer = ROOT / "examples" / "disclaimer" / "footer.txt"
            copy = folder / "altermime.eml"
            commands["alterMIME"] = ["sh", "-c", f"cat > {copy} && {altermime} "
                                     f"--input={copy} --disclaimer={footer} --force-for-bad-html"]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():  # one warm-up each
            _run(command, MESSAGE)
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(_run(command, MESSAGE))
    base = statistics.median(times["python -c pass"])
    targets = {"mailroute, empty policy": 3.5, "mailroute, disclaimer policy": 4.5,
               "mailroute, gateway policy": 5.0}
    print(f"median wall time over {runs} runs (load average {os.getloadavg()[0]:.1f})")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        target = targets.get(name)
        verdict = "" if target is None else (
            f"  target <= {target}x: {'met' if ratio <= target else 'MISSED'}")
        print(f"{name:32s} {median * 1000:8.1f} ms  {ratio:5.1f}x python -c pass{verdict}")


if __name__ == "__main__":
    main()
