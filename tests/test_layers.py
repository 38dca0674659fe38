"""The layers hold (README, "Architecture"): import-linter's contract in pyproject.toml passes on
the tree, and fails on a copy of the tree with one upward import planted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lavie", "curation", "training", "evaluation", "cascade", "ray_jobs")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the packages found under ``root`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml'))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_layer_imports_only_the_layers_below_it():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    rows = tmp_path / "curation" / "rows.py"
    rows.write_text(rows.read_text() + "\nfrom ray_jobs.cluster import connect  # planted: curation sits below ray_jobs\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "1 broken" in result.stdout and "curation.rows -> ray_jobs.cluster" in result.stdout, result.stdout
