"""`edgedet report`: a run directory made once by the real commands on tiny settings (search,
export, bench, a quick measured host profile, predict), reported; the page's numbers checked
against report/*.json, its images decoded, bad input refused, and the page opened in
headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from edgedet.cli.main import main

TINY_SEARCH = ["--skeleton", "c16-d16", "--epochs", "2", "--warmup-epochs", "1", "--synthetic-images", "64",
               "--batch-size", "16", "--train-size", "32", "--threads", "1", "--no-plots"]
SIZE = "32"


def _run(*args) -> None:
    code = main([str(a) for a in args])
    assert code == 0, args


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """search (myriad-vpu, 20 ms) → ONNX export → bench; quick host profile; predictions."""
    r = tmp_path_factory.mktemp("report-run")
    _run("search", "--device", "myriad-vpu", "--budget-ms", "20", *TINY_SEARCH, "--out", r / "search")
    model = f"quadranet-arch:{r / 'search' / 'arch.json'}"
    _run("export", model, "--format", "onnx", "--out", r / "export-onnx", "--input-size", SIZE)
    _run("bench", r / "export-onnx", "--runtime", "onnxruntime", "--threads", "1", "--warmup-s", "0.2",
         "--duration-s", "0.3", "--min-iters", "10", "--no-roofline", "--json", r / "bench-onnx.json")
    _run("profile", "--quick", "--time-budget-s", "10", "--runtime", "onnxruntime", "--out", r / "host.json")
    for dev in (r / "host.json", "cortex-a76"):
        name = Path(str(dev)).stem
        _run("predict", "--arch", r / "search" / "arch.json", "--device", dev, "--input-size", SIZE,
             "--allow-unknown", "--json", r / f"predict-{name}.json")
    return r


@pytest.fixture(scope="session")
def built(run_dir) -> Path:
    _run("report", run_dir)
    return run_dir


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r'src="data:image/png;base64,([^"]+)"',
                                                                         page)]


def test_report_numbers_come_from_the_json_beside_it(built):
    page = (built / "report.html").read_text()
    sections = {p.stem: json.loads(p.read_text()) for p in (built / "report").glob("*.json")}
    assert {"search", "architecture", "latency", "predictions", "predicted_vs_measured"} <= {
        k for k, v in sections.items() if v["missing"] is None}
    lat = sections["latency"]["rows"][0]
    bench = json.loads((built / "bench-onnx.json").read_text())["results"][0]["latency_ms"]
    assert lat["median_ms"] == bench["median"] and lat["p99_ms"] == bench["p99"]
    for sec in sections.values():
        for row in sec["rows"]:
            for key, v in row.items():
                if isinstance(v, float) and key not in ("error", "mape", "profile_mape"):
                    assert f"{v:.4g}" in page, (sec["name"], key, v)
    pvm = sections["predicted_vs_measured"]["rows"][0]
    assert pvm["error"] == pytest.approx(pvm["predicted_ms"] / pvm["measured_median_ms"] - 1)
    assert pvm["measured_median_ms"] == bench["median"]


def test_every_latency_is_labelled(built):
    sections = [json.loads(p.read_text()) for p in (built / "report").glob("*.json")]
    labelled = 0
    for sec in sections:
        for row in sec["rows"]:
            if any(k.endswith("_ms") for k in row):
                labels = [v for k, v in row.items() if k.endswith("label")]
                assert labels, (sec["name"], row)
                assert all(v.startswith(("measured: ", "predicted: ")) for v in labels), labels
                labelled += 1
    assert labelled >= 4
    bench_label = json.loads((built / "report" / "latency.json").read_text())["rows"][0]["latency_label"]
    assert "onnxruntime" in bench_label and "1 thread," in bench_label and "batch 1" in bench_label
    assert "fp32" in bench_label


def test_report_is_self_contained_with_plots(built):
    page = (built / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    imgs = _images(page)
    assert len(imgs) >= 5
    assert all(im.width > 100 and im.height > 100 for im in imgs)


def test_missing_inputs_are_named(tmp_path, built, cli):
    shutil.copy(built / "bench-onnx.json", tmp_path / "b.json")
    r = cli("report", tmp_path, "--out", tmp_path / "r.html")
    assert r.code == 0, r.err
    page = (tmp_path / "r.html").read_text()
    assert "Missing: no search.json" in page and "Missing: no predict JSON" in page
    assert len(_images(page)) == 1
    assert json.loads((tmp_path / "report" / "search.json").read_text())["missing"]


def test_bad_run_dir_is_one_line(tmp_path, cli):
    cli("report", tmp_path / "nope").assert_one_line_error("run directory not found")
    (tmp_path / "f.txt").write_text("x")
    cli("report", tmp_path / "f.txt").assert_one_line_error("not a directory")
    cli("report", tmp_path).assert_one_line_error("holds no edgedet outputs")
    assert not (tmp_path / "report.html").exists()


# Runs before the report's own markup: collects console errors and uncaught exceptions, then
# after load writes the checks into a <pre id="edgedet-check"> that --dump-dom prints.
PROBE = """<script>
window.__errs = [];
const _e = console.error; console.error = (...a) => { window.__errs.push(a.join(' ')); _e(...a); };
window.addEventListener('error', ev => window.__errs.push('uncaught: ' + ev.message));
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
               sections: [...document.querySelectorAll('section')].map(s => s.id), errors: window.__errs};
  const pre = document.createElement('pre'); pre.id = 'edgedet-check';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (`make sysdeps` installs Debian's "
                    "chromium; it needs apt-get and root or sudo)")
def test_report_in_headless_chromium(built, tmp_path):
    page = (built / "report.html").read_text().replace("<head>", "<head>" + PROBE, 1)
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="edgedet-check">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    check = json.loads(m.group(1).replace("&quot;", '"'))
    assert check["errors"] == [], check["errors"]
    assert check["images"] >= 5 and check["decoded"] == check["images"], check
    assert {"search", "architecture", "latency", "predictions", "predicted_vs_measured", "pareto"} <= set(
        check["sections"])
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1300,2400", (built / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    im = Image.open(shot)
    lo, hi = im.convert("L").getextrema()
    assert im.width == 1300 and hi - lo > 100  # drawn, not blank


def test_exports_say_how_each_custom_op_reached_the_runtime():
    """A fused kernel leaves `custom_ops` empty; the report still names it and how it ran."""
    from edgedet.report.sections import _custom_ops

    fused = {"custom_ops": [], "custom_ops_converted": {"edgedet.QuadraConv": "OpenVINO CPU extension"}}
    assert _custom_ops(fused) == "edgedet.QuadraConv: OpenVINO CPU extension"
    op = "edgedet.QuadraConv"
    local = {"custom_ops": [op], "custom_ops_converted": {op: "ONNX local function"}}
    assert _custom_ops(local) == "edgedet.QuadraConv: ONNX local function"
    assert _custom_ops({"custom_ops": []}) == "none"
