"""TVM targets carry the CPU's real features; a library needing features this CPU lacks is
refused with one line; default schedules vectorise an untuned build without changing results."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_bench import QUICK, conv_relu

from edgedet.cpu import cpu_flags
from edgedet.exporters import tvm_target as tt

tvm = pytest.importorskip("tvm", reason="TVM is an optional extra (edgedet[tvm])")

AVX2_FLAGS = {"sse4_1", "sse4_2", "avx", "f16c", "fma", "avx2"}
# Real cpuinfo flag names (x86 and Arm); a test picks one this CPU does not report.
RARE_FLAGS = ("avx512f", "avx512_fp16", "amx_tile", "avx10", "sha512", "asimddp", "sve2", "sme")


def test_x86_targets_follow_the_flags():
    v3 = tt.x86_host_target(AVX2_FLAGS)
    assert v3.target["mcpu"] == "x86-64-v3" and {"+avx2", "+fma"} <= set(v3.target["mattr"])
    assert "+avx512f" not in v3.target["mattr"] and v3.vector_width_bits == 256
    assert set(v3.requires_cpu_flags) == AVX2_FLAGS
    v4 = tt.x86_host_target(AVX2_FLAGS | {"avx512f", "avx512bw", "avx512dq", "avx512vl"})
    assert v4.target["mcpu"] == "x86-64-v4" and "+avx512f" in v4.target["mattr"] and v4.vector_width_bits == 512
    assert tt.x86_host_target({"sse4_1"}).target["mcpu"] == "x86-64"


def test_host_target_needs_only_what_this_cpu_has():
    host = tt.get_target("host")
    assert host.requires_cpu_flags and tt.missing_cpu_flags(host.requires_cpu_flags) == []
    tvm.target.Target(host.target)  # TVM accepts it


def test_cortex_a76_target_has_neon_and_dotprod():
    a76 = tt.get_target("cortex-a76")
    assert a76.target["mcpu"] == "cortex-a76" and {"+neon", "+dotprod"} <= set(a76.target["mattr"])
    assert a76.compiler == tt.CROSS_GCC and "asimddp" in a76.requires_cpu_flags
    assert tt.get_target("host-generic").target == {"kind": "llvm"}


def test_missing_flags_are_refused_in_one_line():
    lacking = next(f for f in RARE_FLAGS if f not in cpu_flags())
    with pytest.raises(Exception, match=f"lacks \\({lacking}"):
        tt.check_cpu_flags({"requires_cpu_flags": ["sse4_1", lacking], "target_name": "host"}, "model.so")
    tt.check_cpu_flags({"requires_cpu_flags": sorted(cpu_flags())[:3]}, "model.so")  # present: passes


@pytest.fixture(scope="module")
def featured_artifact(tmp_path_factory):
    """A conv+relu library built for this CPU's features with default schedules + manifest."""
    import onnx

    from edgedet.exporters import tvm as tx

    folder = tmp_path_factory.mktemp("tvm_feat")
    onnx_path = conv_relu(folder / "model.onnx", batch=1, size=16)
    host = tx.get_target("host")
    report = tx.build_library(onnx.load(onnx_path), host, folder / "model.so")
    manifest = {
        "format": "tvm",
        "target": "host",
        "inputs": [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}],
        "runtime": {"name": "tvm", "target_name": host.name, "target": host.target,
                    "requires_cpu_flags": list(host.requires_cpu_flags), **report.to_json()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, report


def test_featured_build_matches_onnxruntime(featured_artifact):
    import onnxruntime as ort

    from edgedet.exporters import tvm as tx

    folder, report = featured_artifact
    assert report.tuning == "untuned" and report.schedules.applied  # default schedules applied
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    ref = ort.InferenceSession(str(folder / "model.onnx")).run(None, {"x": x})[0]
    got = tx.run_library(folder / "model.so", [x])[0]
    np.testing.assert_allclose(got, ref, atol=1e-5 * max(1.0, float(np.abs(ref).max())), rtol=1e-5)


def test_bench_says_untuned_and_refuses_missing_features(featured_artifact, tmp_path, cli):
    folder, _ = featured_artifact
    out = tmp_path / "r.json"
    code, text, err = cli("bench", str(folder), "--runtime", "tvm", *QUICK, "--json", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["runtime"]["build"] == "untuned, built for host"
    assert "untuned" in text
    alien = tmp_path / "alien"
    shutil.copytree(folder, alien)
    m = json.loads((alien / "manifest.json").read_text())
    lacking = next(f for f in RARE_FLAGS if f not in cpu_flags())
    m["runtime"]["requires_cpu_flags"].append(lacking)
    (alien / "manifest.json").write_text(json.dumps(m))
    code, text, err = cli("bench", str(alien), "--runtime", "tvm", *QUICK)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lacking in lines[0] and "lacks" in lines[0]


def test_a_rule_that_raises_on_one_function_leaves_only_that_function_unscheduled(monkeypatch):
    """dlight's CPU GEMV asserts (`expr.extent == 1`) on some of ASAG's functions: the build
    must try the next rule for that function instead of failing the whole export."""
    from tvm import te

    from edgedet.exporters import tvm_schedules as ts

    class Crashing:
        def apply(self, func, target, tunable):
            raise AssertionError("expr.extent == 1")

    monkeypatch.setattr(ts, "_dlight_rules", lambda: [("crashing", Crashing())])
    a = te.placeholder((4, 32), name="a")
    k = te.reduce_axis((0, 32), "k")
    row_sum = te.compute((4,), lambda i: te.sum(a[i, k], axis=k), name="row_sum")
    double = te.compute((4, 32), lambda i, j: a[i, j] * 2.0, name="double")
    target = tvm.target.Target(tt.get_target("host").target)
    new, how = ts.schedule_function(te.create_prim_func([a, row_sum]), target, 8)
    assert new is None and "crashing: AssertionError" in how
    new, how = ts.schedule_function(te.create_prim_func([a, double]), target, 8)
    assert new is not None and how == "vectorized_injective"
    report = ts.ScheduleReport()
    mod = tvm.IRModule({"row_sum": te.create_prim_func([a, row_sum]), "double": te.create_prim_func([a, double])})
    ts.default_schedule_pass(target, 8, report)(mod)
    assert report.applied == {"double": "vectorized_injective"} and list(report.unscheduled) == ["row_sum"]
