"""The layer contract (pyproject [tool.importlinter]) holds on the tree, and it does catch an
upward import (a low layer importing the CLI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _linter():
    spec = importlib.util.spec_from_file_location("lint_imports", ROOT / ".ci" / "lint_imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_layer_contract_is_kept(tmp_path):
    li = _linter()
    li.assemble(tmp_path)
    assert (tmp_path / "edgedet" / "profiles" / "predict.py").exists()  # the mapped folders are in the view
    res = li.lint(tmp_path, capture=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_an_upward_import_breaks_the_contract(tmp_path):
    li = _linter()
    li.assemble(tmp_path)
    (tmp_path / "edgedet" / "runtimes" / "upward.py").write_text("from edgedet.cli import main  # noqa\n")
    res = li.lint(tmp_path, capture=True)
    assert res.returncode != 0
    assert "edgedet.runtimes.upward -> edgedet.cli" in res.stdout
