"""Disclaimer insertion over the whole corpus: mailroute in-process vs alterMIME per message.

mailroute runs as the Python entry point of CLI.md (``mailroute.load_policy`` +
``pipeline.process``) in this process; alterMIME runs as a pipe filter does, one process per
message (``altermime --input=F --disclaimer=… --disclaimer-html=…`` on a copy, since it
edits in place), so its figures include process start-up, as in notes/adapters.md §5.2. Both
get the same UTF-8 templates. Per size class the median time per message is printed with the
ratio alterMIME / mailroute; the 20 MB messages are timed separately (best of N) with peak
memory: alterMIME's peak RSS (wait4) and mailroute's tracemalloc peak beyond the input
(both hold the input; the output copy is included).

Targets (issue 3): small and medium >= 5x faster than alterMIME; 28 MB message no slower,
with peak memory <= 2x the message size.

    .venv/bin/python benchmarks/disclaimer.py [--runs N] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._corpus import corpus_dir, manifest
from benchmarks._results import Results, add_json_argument

import mailroute

SMALL = 64 * 1024
LARGE = 8 * 1024 * 1024
# The footer of notes/adapters.md §1.2 ("Grüße aus Köln" and a marker string, UTF-8).
TEXT = ("-- \nVertraulich / Confidential. mailroute-disclaimer-v1\n"
        "Grüße aus Köln, {{display_name}}\n")
HTML = ('<p style="color:#555">Vertraulich / Confidential. mailroute-disclaimer-v1<br>'
        "Grüße aus Köln, {{display_name}}</p>")
RENDERED_TEXT = TEXT.replace("{{display_name}}", "Anna Schmidt")
RENDERED_HTML = HTML.replace("{{display_name}}", "Anna Schmidt")
POLICY = """[[pipeline]]
filter = "disclaimer"
text = "footer.txt"
html = "footer.html"
var = ["display_name=Anna Schmidt"]
"""


def size_class(size: int) -> str:
    """small (< 64 KB), medium (< 8 MB) or large."""
    return "small" if size < SMALL else "medium" if size < LARGE else "large"


def altermime_command(altermime: str, work: Path, folder: Path) -> list[str]:
    """The alterMIME pipe-filter command line for ``work`` (edited in place)."""
    return [altermime, f"--input={work}", f"--disclaimer={folder / 'altermime.txt'}",
            f"--disclaimer-html={folder / 'altermime.html'}"]


def altermime_time(altermime: str, source: Path, work: Path, folder: Path) -> float:
    """Seconds for one alterMIME run (process start-up included) on a copy of ``source``."""
    shutil.copyfile(source, work)
    start = time.perf_counter()
    done = subprocess.run(altermime_command(altermime, work, folder), check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"altermime failed on {source.name}")
    return elapsed


def altermime_rss(altermime: str, source: Path, work: Path, folder: Path) -> int:
    """alterMIME's peak RSS in bytes, from GNU time (a child forked from this big Python
    process would report this process's RSS as its own)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not Path(gnu_time).exists():
        raise SystemExit("GNU time is needed for alterMIME's peak RSS (Debian package time)")
    shutil.copyfile(source, work)
    report = work.with_suffix(".rss")
    subprocess.run([gnu_time, "-f", "%M", "-o", str(report),
                    *altermime_command(altermime, work, folder)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return int(report.read_text().split()[-1]) * 1024


def mailroute_time(pipeline: mailroute.Pipeline, data: bytes, runs: int) -> float:
    """Best of ``runs`` in-process runs, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = pipeline.process(data)
        best = min(best, time.perf_counter() - start)
        if result.action != "accept":
            raise RuntimeError(result.reply)
    return best


_CHILD = """
import sys
from pathlib import Path
import mailroute
pipeline = mailroute.load_policy(sys.argv[1])
data = Path(sys.argv[2]).read_bytes()
if sys.argv[3] == "process":
    result = pipeline.process(data)
    assert result.action == "accept"
    with open("/dev/null", "wb") as sink:  # written out as the pipe adapter writes it
        for chunk in result.chunks():
            sink.write(chunk)
"""


def mailroute_rss_growth(policy: Path, source: Path, report: Path) -> int:
    """Peak RSS of a fresh interpreter that processes ``source``, minus the peak of one that
    only loads the policy and reads the message (GNU time; bytes)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    peaks = []
    for mode in ("read", "process"):
        subprocess.run([gnu_time, "-f", "%M", "-o", str(report), sys.executable, "-c", _CHILD,
                        str(policy), str(source), mode], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peaks.append(int(report.read_text().split()[-1]) * 1024)
    return peaks[1] - peaks[0]


def mailroute_peak(pipeline: mailroute.Pipeline, data: bytes) -> int:
    """tracemalloc peak of one run beyond the input (which the caller already holds)."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = pipeline.process(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def main() -> int:
    """Run both tools over the corpus and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per message (best is kept)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (generated when missing)")
    add_json_argument(parser)
    args = parser.parse_args()
    altermime = shutil.which("altermime")
    if altermime is None:
        raise SystemExit("altermime is not installed (scripts/setup-system installs it)")
    folder = corpus_dir(args.corpus) if args.corpus else corpus_dir()
    entries = manifest(folder)
    with tempfile.TemporaryDirectory() as temp:
        work_dir = Path(temp)
        (work_dir / "footer.txt").write_text(TEXT, encoding="utf-8")
        (work_dir / "footer.html").write_text(HTML, encoding="utf-8")
        (work_dir / "altermime.txt").write_text(RENDERED_TEXT, encoding="utf-8")
        (work_dir / "altermime.html").write_text(RENDERED_HTML, encoding="utf-8")
        (work_dir / "policy.toml").write_text(POLICY, encoding="utf-8")
        pipeline = mailroute.load_policy(work_dir / "policy.toml")
        classes: dict[str, list[tuple[float, float, int, str]]] = {}
        large: list[tuple[str, int, float, float, int, int, int]] = []
        for entry in entries:
            source = folder / str(entry["file"])
            data = source.read_bytes()
            kind = size_class(len(data))
            ours = mailroute_time(pipeline, data, args.runs)
            theirs = min(altermime_time(altermime, source, work_dir / "work.eml", work_dir)
                         for _ in range(args.runs))
            if kind == "large":
                large.append((source.name, len(data), ours, theirs,
                              mailroute_peak(pipeline, data),
                              mailroute_rss_growth(work_dir / "policy.toml", source,
                                                   work_dir / "child.rss"),
                              altermime_rss(altermime, source, work_dir / "work.eml", work_dir)))
            else:
                classes.setdefault(kind, []).append((ours, theirs, len(data), source.name))
    results = Results("disclaimer")
    series = ["mailroute", "alterMIME"]
    medians = results.chart("Disclaimer insertion, median per message", "ms", series,
                            lower_is_better=True)
    print(f"corpus: {len(entries)} messages in {folder}; best of {args.runs} runs each")
    print(f"{'class':<8}{'n':>5}{'mailroute ms':>15}{'altermime ms':>15}{'ratio':>8}"
          f"{'mailroute MB/s':>17}{'altermime MB/s':>17}")
    for kind in ("small", "medium"):
        rows = classes.get(kind, [])
        if not rows:
            continue
        ours_med = statistics.median(r[0] for r in rows)
        theirs_med = statistics.median(r[1] for r in rows)
        total = sum(r[2] for r in rows) / 1e6
        print(f"{kind:<8}{len(rows):>5}{ours_med * 1e3:>15.3f}{theirs_med * 1e3:>15.3f}"
              f"{theirs_med / ours_med:>7.1f}x{total / sum(r[0] for r in rows):>17.0f}"
              f"{total / sum(r[1] for r in rows):>17.0f}")
        medians.append({"case": f"{kind} ({len(rows)} messages)",
                        "values": {series[0]: ours_med * 1e3, series[1]: theirs_med * 1e3}})
        per_message = sorted((r[1] / r[0], r[3]) for r in rows)
        below = sum(1 for ratio, _ in per_message if ratio < 5)
        print(f"{'':<8}per-message ratio: min {per_message[0][0]:.1f}x ({per_message[0][1]}), "
              f"median {statistics.median(r for r, _ in per_message):.1f}x, "
              f"max {per_message[-1][0]:.1f}x; {below} of {len(rows)} below 5x")
    for name, size, ours, theirs, our_peak, our_rss, their_rss in large:
        print(f"large   {name}: {size / 1e6:.1f} MB; mailroute {ours * 1e3:.1f} ms, "
              f"altermime {theirs * 1e3:.1f} ms, ratio {theirs / ours:.1f}x")
        print(f"        peak memory: mailroute allocates {our_peak / 1e6:.1f} MB beyond the "
              f"input ({our_peak / size:.2f}x the message; input + output "
              f"{(our_peak + size) / size:.2f}x), its RSS grows {our_rss / 1e6:.1f} MB "
              f"({our_rss / size:.2f}x) over reading the message; altermime RSS "
              f"{their_rss / 1e6:.1f} MB (it streams)")
        medians.append({"case": f"large ({size / 1e6:.0f} MB)",
                        "values": {series[0]: ours * 1e3, series[1]: theirs * 1e3}})
    if not large:
        print("large: none in this corpus (generated with --no-large?)")
    results.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
