"""The set-up `make` runs: the committed lock matches pyproject.toml's dependencies (a lock that
does not is refused in one line naming `make lock`), and the venv's packages carry compiled
bytecode, without which every process of the suite compiles torch, diffusers and ray again."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "scripts" / "lockfile.py"), "check", str(root / "requirements.lock")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_committed_lock_matches_pyproject():
    result = _check(ROOT)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_lock_that_does_not_match_is_refused_in_one_line(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lockfile.py", tmp_path / "scripts")
    shutil.copy(ROOT / "requirements.lock", tmp_path)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "dependencies = [\n" in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace("dependencies = [\n", 'dependencies = [\n    "rich-argparse",\n', 1))
    result = _check(tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"make: {tmp_path / 'requirements.lock'} does not match the dependencies in pyproject.toml: run `make lock`\n"


def test_the_installed_packages_carry_bytecode():
    for module in ("torch", "diffusers", "ray"):
        source = importlib.util.find_spec(module).origin
        assert Path(importlib.util.cache_from_source(source)).exists(), f"{module} was installed without bytecode (uv --compile-bytecode)"
