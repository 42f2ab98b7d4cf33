"""The artifact contract: manifest fields, sha256, parity gate with nothing left behind,
checkpoint handling and one-line errors from `edgedet export`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgedet import models
from edgedet.errors import EdgedetError
from edgedet.exporters.artifact import load_manifest
from edgedet.exporters.onnx import run_onnxruntime
from edgedet.exporters.pipeline import ExportRequest, ParityFailed, export_artifact

torch.set_num_threads(1)


def _req(out, **kw) -> ExportRequest:
    return ExportRequest(**{"model": "quadranet25-xxs", "format": "onnx", "out": out, "input_size": 64, **kw})


def test_onnx_artifact_manifest_and_loader(tmp_path):
    out = tmp_path / "art"
    res = export_artifact(_req(out, dynamic_batch=True))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    m = load_manifest(out)
    d = m.data
    assert d["schema_version"] == 1 and m.format == "onnx" and m.precision == "fp32"
    assert d["source"]["model"] == "quadranet25-xxs" and d["source"]["arch"]["stages"][0]["width"] == 16
    assert d["source"]["weights"]["source"] == "seeded-init"
    assert m.custom_ops == ["edgedet.QuadraConv"]
    assert d["onnx"]["opset"] >= 17 and d["onnx"]["decomposed"] is False
    assert m.inputs == [{"name": "image", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
    assert m.outputs[0]["name"] == "logits" and m.outputs[0]["shape"] == ["batch", 1000]
    assert [c["batch"] for c in d["parity"]["cases"]] == [1, 2, 3]
    assert d["parity"]["passed"] and d["parity"]["max_abs_err"] <= d["parity"]["atol"] == 1e-4
    assert d["parity"]["rtol"] == 1e-3 and d["parity"]["cases"][0]["outputs"][0]["shape"] == [1, 1000]
    assert len(m.files["model.onnx"]["sha256"]) == 64 and m.model_file == out / "model.onnx"
    assert res.parity.max_abs_err == d["parity"]["max_abs_err"]
    # a modified file is caught by the loader
    with open(out / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgedetError, match="sha256"):
        load_manifest(out)


def test_parity_failure_leaves_nothing(tmp_path):
    out = tmp_path / "art"
    with pytest.raises(ParityFailed) as err:
        export_artifact(_req(out, atol=1e-12, rtol=0.0))
    assert err.value.result.max_abs_err > 1e-12 and "FAILED" in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["art.parity-report.json"]  # the report, no artifact


def test_checkpoint_training_format_and_plain_state_dict(tmp_path):
    torch.manual_seed(123)
    net = models.create("quadranet25-xxs", num_classes=10).eval()
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"checkpoint_version": 1, "model": net.state_dict(), "epoch": 3}, ckpt)
    plain = tmp_path / "plain.pt"
    torch.save(net.state_dict(), plain)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    for i, path in enumerate((ckpt, plain)):
        out = tmp_path / f"art{i}"
        export_artifact(_req(out, checkpoint=path))
        m = load_manifest(out)
        assert m.data["source"]["weights"]["source"] == "checkpoint"
        assert m.outputs[0]["shape"] == [1, 10]
        got = run_onnxruntime((out / "model.onnx").read_bytes(), {"image": x})[0]
        assert np.abs(got - ref).max() < 1e-4  # the checkpoint's weights, not the seeded init


def test_cli_errors_are_one_line(tmp_path, cli):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases = [
        (["--checkpoint", str(bad)], "cannot read checkpoint"),
        (["--format", "pdf"], "unsupported format 'pdf'"),
        (["--format", "tensorrt"], "pip install 'edgedet[tensorrt]'"),
        (["--format", "onnx", "--precision", "bf16"], "onnx exports are fp32"),
    ]
    for extra, msg in cases:
        args = ["export", "quadranet25-xxs", "--input-size", "64", "--out", str(tmp_path / "o"), *extra]
        if "--format" not in extra:
            args += ["--format", "onnx"]
        cli(*args).assert_one_line_error(msg)
    assert not (tmp_path / "o").exists()


def test_cli_export_and_parity_failure_exit(tmp_path, cli):
    out = tmp_path / "ok"
    r = cli("export", "quadranet25-xxs", "--format", "onnx", "--input-size", "64", "--out", out)
    assert r.code == 0 and "parity ok" in r.out, r.err
    assert json.loads((out / "manifest.json").read_text())["format"] == "onnx"
    fail = tmp_path / "fail"
    code, _, err = cli("export", "quadranet25-xxs", "--format", "onnx", "--input-size", "64", "--out", fail,
                       "--atol", "1e-12", "--rtol", "0")
    assert code == 2
    assert "max abs" in err and "max rel" in err and "no artifact was written, only" in err
    assert "first diverging node" in err  # the trace ran by itself
    assert not fail.exists() and (tmp_path / "fail.parity-report.json").exists()
