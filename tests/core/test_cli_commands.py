"""The `lavie` command imports only the module of the command it runs, and every command is still
registered by the module `COMMANDS` names for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lavie.cli import COMMANDS, build_parser, requested_command


def _commands(parser) -> set[str]:
    return set(parser._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_is_registered_by_its_module(command):
    assert command in _commands(build_parser(command))


def test_help_and_an_unknown_command_list_every_command():
    assert _commands(build_parser(None)) == set(COMMANDS) == _commands(build_parser("no-such"))


@pytest.mark.parametrize(("argv", "command"), [([], None), (["-h"], None), (["jobs", "--address", "x", "list"], "jobs")])
def test_the_command_is_the_first_argument(argv, command):
    assert requested_command(argv) == command


def test_a_jobs_command_does_not_import_the_model_stack():
    code = "import sys; from lavie.cli import build_parser; build_parser('jobs'); print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
