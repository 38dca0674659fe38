"""One pytest selection under two (or more) virtual environments, alternately, side by side.

Used before fixing ``requirements.lock`` to a torch release: the suite's time depends on the
pinned versions (torch's import time, its CPU kernels, what a Ray worker or a `lavie` subprocess
loads), and only a run of the real tests, interleaved so that the machine's load falls on every
interpreter alike, says which pin keeps it fast.

    python benchmarks/bench_interpreters.py --python .venv/bin/python --python /tmp/v214/bin/python \
        --repeats 3 -- tests/cascade/test_unet3d_variants.py

Prints each interpreter's torch version, its wall times (pytest's own process included, as
`make test` pays it) and the median, then the ratio of every median to the first one's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def torch_version(python: str) -> str:
    result = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench_interpreters: error: {python}: torch does not import ({result.stderr.strip().splitlines()[-1:]})")
    return result.stdout.strip()


def run_once(python: str, pytest_args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"bench_interpreters: error: {python}: the tests failed:\n{result.stdout[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_interpreters", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", required=True, help="an interpreter (a venv's bin/python); twice or more")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("pytest_args", nargs="+", help="the pytest selection (after --)")
    args = parser.parse_args(argv)
    if len(args.python) < 2 or args.repeats < 1:
        parser.error("give --python at least twice and --repeats >= 1")
    missing = [p for p in args.python if not Path(p).exists()]
    if missing:
        parser.error(f"no such interpreter: {missing[0]}")
    versions = {python: torch_version(python) for python in args.python}
    times: dict[str, list[float]] = {python: [] for python in args.python}
    for _ in range(args.repeats):
        for python in args.python:  # interleaved: load on the machine falls on each alike
            times[python].append(run_once(python, args.pytest_args))
    first = statistics.median(times[args.python[0]])
    print(f"pytest {' '.join(args.pytest_args)}: {args.repeats} runs each, interleaved")
    print("| interpreter | torch | runs (s) | median (s) | ratio to the first |")
    print("|---|---|---|---|---|")
    for python in args.python:
        median = statistics.median(times[python])
        runs = ", ".join(f"{t:.1f}" for t in times[python])
        print(f"| `{python}` | {versions[python]} | {runs} | {median:.1f} | {median / first:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
