"""Run the bundled gateway policy over the bundled messages and show what it did.

Each message goes through `mailroute process` exactly as Postfix pipe(8) or an Exim transport
filter would run it: the message on standard input, the envelope as flags, the result on
standard output and the verdict in the exit code.

    .venv/bin/python examples/demo.py [--policy examples/gateway/policy.toml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from mailroute.dryrun import message_diff
from mailroute.marker.keyfile import new_key_file, write_key_file

HERE = Path(__file__).resolve().parent
EXIT_MEANING = {0: "accepted", 1: "negative", 65: "rejected: malformed (5.6.0)",
                69: "rejected by policy", 75: "temporary failure", 78: "configuration error"}


def ensure_marker_keys(policy: Path) -> None:
    """Create the demo's marker key file with a fresh secret, mode 0600, if it is missing
    (what `mailroute marker keygen` does)."""
    path = policy.parent / "run" / "marker-keys.toml"
    if path.exists():
        return
    path.parent.mkdir(exist_ok=True)
    write_key_file(path, new_key_file(tag="g7k2qd", org_id="example.net", now=time.time(),
                                      kid="demo1"))


def show(name: str, before: bytes, after: bytes, code: int, stderr: str) -> None:
    """Print the verdict and a unified diff of the message."""
    print(f"=== {name}: exit {code} ({EXIT_MEANING.get(code, '?')})")
    label = "log" if code == 0 else "reply"
    for line in stderr.strip().splitlines()[:2]:
        print(f"    {label}: {line}")
    if code != 0:
        return
    diff = message_diff(before, after)
    print("\n".join("    " + line for line in diff) if diff else "    (unchanged)")


def main() -> int:
    """Process every bundled message; return non-zero if a result is not the expected one."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", type=Path, default=HERE / "gateway" / "policy.toml")
    args = parser.parse_args()
    ensure_marker_keys(args.policy)
    envelopes = tomllib.loads((HERE / "messages" / "envelopes.toml").read_text())
    for path in sorted((HERE / "messages").glob("*.eml")):
        envelope = envelopes[path.name]
        flags = ["--mail-from", envelope["mail_from"]]
        for rcpt in envelope["rcpt_to"]:
            flags += ["--rcpt", rcpt]
        data = path.read_bytes()
        done = subprocess.run(
            [sys.executable, "-m", "mailroute", "process", "--config", str(args.policy),
             *flags], input=data, capture_output=True, check=False)
        show(path.name, data, done.stdout, done.returncode, done.stderr.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
