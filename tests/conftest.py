"""Shared test fixtures: the one way tests run the `edgedet` command.

`cli(*args)` runs it in-process through the real entry point (`edgedet.cli.main.main`, what
the console script calls) and returns exit code, stdout and stderr; `edgedet_process(*args)`
runs `python -m edgedet` as a child (start-up, signals, a clean process), one thread and a
wide console in both, so rich does not wrap the one-line errors tests read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from edgedet.cli.main import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def __iter__(self):  # code, out, err = cli(...)
        return iter((self.code, self.out, self.err))

    def assert_one_line_error(self, *words: str) -> None:
        """Bad input: exit code 2 and one stderr line `edgedet: error: …` holding `words`."""
        lines = self.err.strip().splitlines()
        assert self.code == 2, (self.code, self.out, self.err)
        assert len(lines) == 1 and lines[0].startswith("edgedet: error:"), self.err
        for w in words:
            assert w in lines[0], lines[0]


def edgedet_env(**extra: str) -> dict[str, str]:
    """The child's environment: one OpenMP thread, a 200-column console, plus `extra`."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **extra}


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def edgedet_process() -> Callable[..., subprocess.CompletedProcess | subprocess.Popen]:
    """`edgedet_process(*args, env=None, cwd=None, timeout=600)` → CompletedProcess (text
    output captured); with `popen=True` a running Popen (stderr merged into stdout)."""

    def run(*args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 600,
            popen: bool = False):
        cmd = [sys.executable, "-m", "edgedet", *[str(a) for a in args]]
        full_env = edgedet_env(**(env or {}))
        if popen:
            return subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)

    return run
