"""edgedet bench: statistics, shapes, schema, roofline counting and end-to-end runs on real
ONNX Runtime / OpenVINO / torch with tiny models built here with onnx.helper."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedet.bench.roofline import onnx_cost
from edgedet.bench.schema import errors, validate
from edgedet.bench.stats import summarize
from edgedet.errors import EdgedetError
from edgedet.runtimes.inputs import InputSpec, resolve_shape
from edgedet.runtimes.timing import LoopConfig, time_loop

QUICK = ["--duration-s", "0.2", "--min-iters", "5", "--warmup-s", "0.05", "--threads", "1"]


# ---------- tiny models ----------


def conv_relu(path, channels: int = 8, batch="N", size=None, k: int = 3) -> str:
    """x[batch,3,H,W] → Conv(channels, k×k, same padding) → Relu → y."""
    w = np.random.default_rng(0).standard_normal((channels, 3, k, k)).astype(np.float32)
    hw = ["H", "W"] if size is None else [size, size]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, *hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[k // 2] * 4),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    return _save(helper.make_graph(nodes, "conv_relu", [x], [y], [numpy_helper.from_array(w, "W")]), path)


def matmul(path, features: int, hidden: int, batch="N") -> str:
    """x[batch,features] @ W[features,hidden]: features·hidden·4 bytes of weights."""
    w = np.random.default_rng(0).standard_normal((features, hidden)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    return _save(helper.make_graph([node], "mm", [x], [y], [numpy_helper.from_array(w, "W")]), path)


def _save(graph, path) -> str:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


# ---------- pure parts ----------


def test_summary_statistics_of_known_values():
    st = summarize(list(range(1, 101)))
    assert (st.min, st.max, st.median, st.mean) == (1, 100, 50.5, 50.5)
    assert st.p90 == pytest.approx(90.1) and st.p99 == pytest.approx(99.01)
    assert st.std == pytest.approx(math.sqrt(sum((i - 50.5) ** 2 for i in range(1, 101)) / 99))
    assert st.cov == pytest.approx(st.std / 50.5)
    with pytest.raises(ValueError):
        summarize([])


def test_resolve_shape_fills_dynamic_dims_and_rejects_conflicts():
    dyn = InputSpec("x", ("N", 3, None, None), "float32")
    assert resolve_shape(dyn, 8, None) == (8, 3, 224, 224)
    assert resolve_shape(dyn, 2, 64) == (2, 3, 64, 64)
    static = InputSpec("x", (1, 3, 32, 32), "float32")
    assert resolve_shape(static, 1, None) == (1, 3, 32, 32)
    with pytest.raises(EdgedetError, match="static batch of 1"):
        resolve_shape(static, 4, None)
    with pytest.raises(EdgedetError, match="--input-size 64"):
        resolve_shape(static, 1, 64)
    with pytest.raises(EdgedetError, match="dynamic dimension 1"):
        resolve_shape(InputSpec("x", (1, "C", 8, 8), "float32"), 1, None)


class _CountingSession:
    """A plain Python workload (not a runtime): checks the loop's stopping rules."""

    def __init__(self):
        self.calls = 0

    def run_timed(self, n):
        self.calls += n
        return [0.01] * n


def test_time_loop_meets_both_duration_and_iterations():
    s = _CountingSession()
    r = time_loop(s, LoopConfig(warmup_s=0.02, duration_s=0.05, min_iters=7))
    assert r.wall_s >= 0.05 and len(r.latencies_ms) >= 7
    assert s.calls == 1 + r.warmup_iters + len(r.latencies_ms)
    r = time_loop(_CountingSession(), LoopConfig(warmup_s=0.0, duration_s=0.0, min_iters=5000))
    assert len(r.latencies_ms) >= 5000


def test_memory_high_water_mark_sees_a_fresh_allocation():
    # In a fresh process, as the bench child measures: inside pytest an allocator loaded by an
    # earlier test (OpenVINO's TBB malloc) may hand back already-resident memory.
    code = (
        "import numpy as np\n"
        "from edgedet.bench.memory import MIB, hwm_bytes, reset_hwm, rss_bytes\n"
        "base = rss_bytes()\n"
        "assert reset_hwm()\n"
        "block = np.ones(64 * MIB // 8)\n"  # touched, so resident
        "print((hwm_bytes() - base) / MIB)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) >= 60


def test_onnx_cost_counts_conv_and_matmul(tmp_path):
    p = conv_relu(tmp_path / "c.onnx", channels=8, k=3)
    c = onnx_cost(p, {"x": [2, 3, 16, 16]})
    assert c.flops == 2 * (2 * 8 * 16 * 16) * (3 * 3 * 3)
    assert c.weight_bytes == 8 * 3 * 3 * 3 * 4
    assert c.io_bytes == (2 * 3 * 16 * 16 + 2 * 8 * 16 * 16) * 4
    m = onnx_cost(matmul(tmp_path / "m.onnx", 32, 16), {"x": [4, 32]})
    assert m.flops == 2 * 4 * 16 * 32 and not m.uncounted


def test_openvino_ir_cost_matches_onnx_cost(tmp_path):
    import openvino as ov

    from edgedet.bench.roofline import openvino_cost

    for name, path, shape in (
        ("c", conv_relu(tmp_path / "c.onnx", channels=4), [2, 3, 8, 8]),
        ("m", matmul(tmp_path / "m.onnx", 16, 8), [3, 16]),
    ):
        xml = str(tmp_path / f"{name}.xml")
        ov.save_model(ov.convert_model(path), xml, compress_to_fp16=False)
        a, b = onnx_cost(path, {"x": shape}), openvino_cost(xml, {"x": shape})
        assert a.flops == b.flops > 0 and a.weight_bytes == b.weight_bytes and a.io_bytes == b.io_bytes


def test_schema_names_the_bad_field():
    assert any("$.results" in e for e in errors({"schema_version": 1}))
    with pytest.raises(EdgedetError, match=r"\$\.schema_version"):
        validate(
            {
                "schema_version": 99,
                "kind": "measured",
                "device": {},
                "runtime": {},
                "settings": {},
                "results": [],
            }
        )


# ---------- end to end on real runtimes ----------


def test_bench_onnxruntime_json_plot_and_schema(tmp_path, cli):
    model = conv_relu(tmp_path / "m.onnx")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code, text, err = cli(*[
            "bench",
            model,
            "--runtime",
            "onnxruntime",
            "--batch",
            "1,2",
            "--input-size",
            "32",
            *QUICK,
            "--json",
            str(out),
            "--plot",
            str(png),
        ])
    assert code == 0, err
    assert "measured: onnxruntime" in text and "1 threads" in text
    r = json.loads(out.read_text())
    validate(r)
    assert [x["batch"] for x in r["results"]] == [1, 2]
    for x in r["results"]:
        lat = x["latency_ms"]
        assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert x["iterations"] >= 5
        assert len(x["samples_ms"]) == len(range(0, x["iterations"], x["samples_stride"]))
        assert x["inputs"] == {"x": [x["batch"], 3, 32, 32]}
        assert x["peak_memory_mib"] > 0 and x["first_inference_ms"] > 0
        assert x["roofline"]["gflops"] == pytest.approx(2 * x["batch"] * 8 * 32 * 32 * 27 / 1e9)
        assert 0 < x["roofline"]["achieved_fraction"]
    assert r["runtime"]["effective"]["intra_op_num_threads"] == 1
    assert r["settings"]["threads"] == 1 and r["device"]["cpu_model"]
    assert r["settings"]["precision"] == "fp32" and r["device"]["isa"]["best"]
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("spelling", ["fp32", "f32", "FP32"])
def test_bench_precision_spellings_are_stored_canonically(spelling, tmp_path, cli):
    model = conv_relu(tmp_path / "m.onnx")
    out = tmp_path / "r.json"
    args = ["bench", model, "--runtime", "onnxruntime", "--input-size", "16", *QUICK, "--no-roofline"]
    code, text, err = cli(*[*args, "--precision", spelling, "--json", str(out)])
    assert code == 0, err
    assert json.loads(out.read_text())["settings"]["precision"] == "fp32" and ", fp32" in text


def test_bench_bad_precision_lists_the_accepted_values(tmp_path, cli):
    model = conv_relu(tmp_path / "m.onnx")
    code, _, err = cli(*["bench", model, "--runtime", "onnxruntime", *QUICK, "--precision", "fp64"])
    assert code == 2 and err.strip().splitlines() == [
        "edgedet: error: unknown --precision 'fp64'; accepted: fp32|f32, fp16|f16, bf16, int8"
    ]
    code, _, err = cli(*["bench", model, "--runtime", "onnxruntime", *QUICK, "--precision", "int8"])
    assert code == 2 and "--precision int8 is not offered here; choose from fp32, fp16, bf16" in err


def test_bench_openvino_ir_with_explicit_properties(tmp_path, cli):
    import openvino as ov

    xml = str(tmp_path / "m.xml")
    ov.save_model(ov.convert_model(conv_relu(tmp_path / "m.onnx")), xml, compress_to_fp16=False)
    out = tmp_path / "r.json"
    code, _, err = cli(*[
            "bench",
            xml,
            "--runtime",
            "openvino",
            "--batch",
            "2",
            "--input-size",
            "24",
            *QUICK,
            "--json",
            str(out),
        ])
    assert code == 0, err
    r = json.loads(out.read_text())
    eff = r["runtime"]["effective"]
    assert eff["INFERENCE_NUM_THREADS"] == "1" and eff["NUM_STREAMS"] == "1"
    assert eff["PERFORMANCE_HINT"].upper().endswith("LATENCY") and "f32" in eff["INFERENCE_PRECISION_HINT"]
    assert r["results"][0]["inputs"] == {"x": [2, 3, 24, 24]}
    assert r["results"][0]["roofline"] is not None  # the .onnx beside the .xml is counted


def test_bench_openvino_bf16_runs_or_is_refused_in_one_line(tmp_path, cli):
    """bf16 where this CPU's OpenVINO plugin has it (and no ISA cap hides it); one line where not."""
    import openvino as ov

    from edgedet.cpu import vector_isa

    xml = str(tmp_path / "m.xml")
    ov.save_model(ov.convert_model(conv_relu(tmp_path / "m.onnx")), xml, compress_to_fp16=False)
    out = tmp_path / "r.json"
    args = ["bench", xml, "--runtime", "openvino", "--input-size", "16", *QUICK, "--no-roofline"]
    code, _, err = cli(*[*args, "--precision", "bf16", "--json", str(out)])
    isa = vector_isa()
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") and (isa.bf16 or not isa.cap):
        assert code == 0, err
        r = json.loads(out.read_text())
        assert r["settings"]["precision"] == "bf16" and r["runtime"]["effective"]["INFERENCE_PRECISION_HINT"] == "bf16"
    else:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "no BF16 support" in lines[0], err
        assert not out.exists()


def test_bench_torch_model_name(tmp_path, cli):
    out = tmp_path / "r.json"
    code, text, err = cli(*[
            "bench",
            "quadranet25-xxs",
            "--runtime",
            "torch",
            "--input-size",
            "32",
            *QUICK,
            "--no-roofline",
            "--json",
            str(out),
        ])
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["runtime"]["name"] == "torch" and r["results"][0]["inputs"] == {"input": [1, 3, 32, 32]}


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "static_batch",
        "input_size",
        "no_manifest",
        "suffix",
        "missing",
        "tensorrt",
        "rpc_runtime",
        "model_name",
    ],
)
def test_bad_input_is_one_line_and_nonzero(case, tmp_path, cli):
    static = conv_relu(tmp_path / "s.onnx", batch=1, size=16)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    (tmp_path / "folder").mkdir()
    args = {
        "garbage": [str(bad), "--runtime", "onnxruntime"],
        "static_batch": [static, "--runtime", "onnxruntime", "--batch", "4"],
        "input_size": [static, "--runtime", "openvino", "--input-size", "32"],
        "no_manifest": [str(tmp_path / "folder"), "--runtime", "onnxruntime"],
        "suffix": [__file__, "--runtime", "onnxruntime"],
        "missing": [str(tmp_path / "nope.onnx"), "--runtime", "onnxruntime"],
        "tensorrt": [static, "--runtime", "tensorrt"],
        "rpc_runtime": [static, "--runtime", "onnxruntime", "--device", "rpc://127.0.0.1:1"],
        "model_name": ["quadranet25-xxs", "--runtime", "onnxruntime"],
    }[case]
    if case == "tensorrt" and not _tensorrt_missing():
        pytest.skip("TensorRT and a GPU are present: the missing-runtime message cannot be shown")
    code, _, err = cli(*["bench", *args, *QUICK])
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgedet: error: "), err
    expect = {
        "garbage": "cannot load",
        "static_batch": "static batch of 1",
        "input_size": "--input-size 32",
        "no_manifest": "manifest.json",
        "suffix": "runs .onnx",
        "missing": "no such artifact",
        "tensorrt": "missing",
        "rpc_runtime": "--runtime tvm",
        "model_name": "--runtime torch",
    }[case]
    assert expect in lines[0]


def _tensorrt_missing() -> bool:
    from edgedet.runtimes import tensorrt

    return tensorrt.missing("cuda") is not None


def test_artifact_folder_uses_manifest_and_checks_sha(tmp_path, capsys):
    import hashlib

    from edgedet.bench.target import resolve

    art = tmp_path / "art"
    art.mkdir()
    model = conv_relu(art / "model.onnx")
    manifest = {
        "format": "onnx",
        "files": {"model.onnx": hashlib.sha256(Path(model).read_bytes()).hexdigest()},
        "inputs": [{"name": "x", "shape": ["N", 3, 16, 16], "dtype": "float32"}],
    }
    (art / "manifest.json").write_text(json.dumps(manifest))
    t = resolve(str(art), "onnxruntime")
    assert t.path == model and t.inputs[0]["shape"] == [None, 3, 16, 16]
    with open(model, "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgedetError, match="sha256"):
        resolve(str(art), "onnxruntime")


def test_peak_memory_agrees_with_usr_bin_time(tmp_path):
    """Acceptance: the child's peak (VmHWM − baseline) within 10% of /usr/bin/time -v's max RSS minus
    the same baseline, for two models of clearly different size."""
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("/usr/bin/time is not installed")
    from edgedet.bench.runner import run_child
    from edgedet.runtimes import SessionSpec

    peaks = []
    for hidden in (2048, 8192):  # 16 MiB and 64 MiB of weights
        model = matmul(tmp_path / f"mm{hidden}.onnx", 2048, hidden)
        spec = SessionSpec(runtime="onnxruntime", model=model, batch=1, threads=1)
        out = run_child(
            spec, LoopConfig(warmup_s=0.0, duration_s=0.05, min_iters=3), wrapper=["/usr/bin/time", "-v"]
        )
        max_rss_kib = next(
            int(ln.split(":")[1]) for ln in out["_stderr"].splitlines() if "Maximum resident set size" in ln
        )
        independent = max_rss_kib / 1024 - out["baseline_rss_mib"]
        assert out["peak_memory_mib"] == pytest.approx(independent, rel=0.10)
        peaks.append(out["peak_memory_mib"])
    assert peaks[1] > peaks[0] + 40  # the 48 MiB larger model shows up


def test_hostinfo_json(tmp_path, cli):
    out = tmp_path / "h.json"
    code, text, err = cli(*["hostinfo", "--threads", "1", "--seconds", "0.1", "--json", str(out)])
    assert code == 0, err
    h = json.loads(out.read_text())
    assert h["schema_version"] == 2 and h["device"]["cpu_model"]
    assert h["device"]["isa"]["best"] in h["device"]["isa"]["features"] + ["scalar"]
    (p,) = h["peaks"]
    assert p["threads"] == 1 and p["gemm_gflops"] > 0 and p["copy_gbps"] > 0
    # bench reads it back for its roofline
    model = conv_relu(tmp_path / "m.onnx")
    res = tmp_path / "r.json"
    code, _, err = cli(*[
            "bench",
            model,
            "--runtime",
            "onnxruntime",
            "--input-size",
            "16",
            *QUICK,
            "--hostinfo",
            str(out),
            "--json",
            str(res),
        ])
    assert code == 0, err
    r = json.loads(res.read_text())
    assert r["roofline"]["peak"]["source"] == str(out)
    assert r["results"][0]["roofline"]["peak_gflops"] == pytest.approx(p["gemm_gflops"])


def test_benchmark_app_is_run_and_parsed(tmp_path):
    """The agreement suite's two sides on a tiny IR (no timing comparison here: that is the suite's job)."""
    import openvino as ov

    from edgedet.bench.reproduce.bench_agreement import run_benchmark_app, run_edgedet

    xml = str(tmp_path / "m.xml")
    ov.save_model(ov.convert_model(conv_relu(tmp_path / "m.onnx")), xml, compress_to_fp16=False)
    theirs = run_benchmark_app(xml, batch=1, size=16, threads=1, seconds=1, input_name="x")
    assert 0 < theirs["min"] <= theirs["median"] <= theirs["max"] and theirs["iterations"] > 0
    ours = run_edgedet(xml, batch=1, size=16, threads=1, seconds=0.2, warmup_s=0.05)
    assert ours["runtime"]["effective"]["PERFORMANCE_HINT"] == "LATENCY"


@pytest.mark.parametrize(
    "verb", [["bench"], ["hostinfo"], ["reproduce", "bench-agreement"], ["reproduce", "throughput"]]
)
def test_help_renders(verb, cli):
    code, out, err = cli(*[*verb, "--help"])
    assert code == 0 and "Usage" in out, err


@pytest.mark.slow
def test_reproduce_throughput_interleaves_and_adds_the_fused_reference(cli, tmp_path):
    """OpenVINO only, tiny input: every cell once per round, the fused QuadraNet25-t row, its
    ratios, the PNG; timings are not checked (that is the suite's job, not a test's)."""
    js, png = tmp_path / "t.json", tmp_path / "t.png"
    code, out, err = cli("reproduce", "throughput", "--runtime", "openvino", "--input-size", "32", "--threads", "1",
                         "--quick", "--rounds", "2", "--duration-s", "0.2", "--json", str(js), "--png", str(png))
    assert code == 0, err
    doc = json.loads(js.read_text())
    names = [r["name"] for r in doc["rows"]]
    assert "quadranet25-t (fused)" in names and {r["runtime"] for r in doc["rows"]} == {"openvino"}
    assert all(len(r["rounds_items_per_s"]) == 2 for r in doc["rows"])
    assert set(doc["throughput_ratios"]) == {"openvino"}
    assert "quadranet25-t (fused) / hornet" in doc["throughput_ratios"]["openvino"]
    ceil = doc["ceiling"]
    assert ceil["model"] == "quadranet25-t (fused)" and 0 < ceil["dense_share"] <= 1
    assert set(ceil["amdahl_max_ratio"]) == {"convnet", "swinnet", "hornet"}
    assert all(ceil["amdahl_max_ratio"][k] >= ceil["measured_ratio"][k] for k in ceil["measured_ratio"])
    assert "FullyConnected" in ceil["node_type_shares"]["quadranet25-t (fused)"]
    assert png.stat().st_size > 1000
