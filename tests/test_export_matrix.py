"""`edgedet reproduce export-matrix`: one fast cell, and the whole matrix (slow)."""

from __future__ import annotations

import json

import pytest

from edgedet.bench.reproduce.export_matrix import COLUMNS, MODELS, run_matrix
from edgedet.cli.main import main


def test_one_cell_and_sampled_arch(tmp_path):
    doc = run_matrix(["arch-json"], ["onnx"], input_size=64, log=lambda s: None)
    assert doc["schema_version"] == 1 and doc["all_passed"]
    (arch,) = doc["cells"]
    assert arch["model"] == "arch-json" and arch["passed"] and arch["max_abs_err"] <= 1e-4
    assert arch["custom_ops"] == ["edgedet.QuadraConv"] and arch["runtime"] == "onnxruntime"


def test_unknown_column_is_one_line(capsys):
    assert main(["reproduce", "export-matrix", "--columns", "onnx,coreml"]) == 2
    assert "unknown column(s) coreml" in capsys.readouterr().err


@pytest.mark.slow
def test_full_matrix_passes(tmp_path):
    path = tmp_path / "matrix.json"
    code = main(["reproduce", "export-matrix", "--json", str(path)])
    doc = json.loads(path.read_text())
    assert len(doc["cells"]) == len(MODELS) * len(COLUMNS)
    failed = [(c["model"], c["column"], c["error"]) for c in doc["cells"] if not c["passed"]]
    assert code == 0 and not failed, failed
