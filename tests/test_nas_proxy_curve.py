"""The proxy learning-curve tool (docs/nas.md, proxy recipe) runs and writes its curve."""

import json

from edgedet.nas.proxy_curve import main


def test_proxy_curve_writes_a_curve(tmp_path):
    out = tmp_path / "curve.json"
    main(["--steps", "4", "--eval-every", "2", "--images", "64", "--val", "20", "--batch", "8",
          "--sampling", "sandwich", "--stem-stride", "2", "--init", "torch", "--json", str(out)])
    rec = json.loads(out.read_text())
    assert [r["step"] for r in rec["curve"]] == [2, 4]
    assert all(0.0 <= r["val_acc_sampled"] <= 1.0 and r["loss"] > 0 for r in rec["curve"])
    assert rec["args"]["sampling"] == "sandwich"
