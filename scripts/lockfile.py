"""The lock's link to pyproject.toml: `requirements.lock` records a digest of the dependencies it
was resolved from, and `make` refuses a lock that no longer matches them.

    python scripts/lockfile.py check LOCK     exit 2 with one line naming `make lock` on a mismatch
    python scripts/lockfile.py stamp LOCK     write the digest into the lock (`make lock` does)

Only the dependency lists count (``[project] dependencies``, ``[project.optional-dependencies]``,
``requires-python``), so editing pytest or linter settings needs no new lock.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries the same parser
    from pip._vendor import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
MARKER = "# pyproject dependencies sha256: "


def digest() -> str:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = {key: project.get(key) for key in ("dependencies", "optional-dependencies", "requires-python")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(MARKER):
            return line[len(MARKER) :].strip()
    return None


def main(command: str, lock: Path) -> int:
    if command == "stamp":
        lines = [line for line in lock.read_text().splitlines() if not line.startswith(MARKER)]
        lock.write_text("\n".join([lines[0], MARKER + digest(), *lines[1:]]) + "\n")
        return 0
    if not lock.exists():
        print(f"make: {lock} is missing: run `make lock`", file=sys.stderr)
        return 2
    if recorded(lock) != digest():
        print(f"make: {lock} does not match the dependencies in pyproject.toml: run `make lock`", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "stamp"):
        print("usage: lockfile.py check|stamp LOCK", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
