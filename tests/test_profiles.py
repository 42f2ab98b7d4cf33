"""Device profiles: every shipped profile validates; broken ones are rejected by field."""

from __future__ import annotations

import copy
import json

import pytest

from edgedet.errors import EdgedetError
from edgedet.profiles import from_document, load_profile, shipped_ids

PREDICTED = ["cortex-a76", "myriad-vpu", "adreno640", "adreno630", "a100-trt"]


def test_shipped_profiles_load_and_state_their_error():
    ids = shipped_ids()
    assert set(PREDICTED) <= set(ids)
    for pid in ids:
        p = load_profile(pid)
        assert p.id == pid and p.kind in ("predicted", "measured")
        assert 0 <= p.calibration["within10"] <= 1 and p.calibration["mape"] >= 0
        if p.kind == "predicted":
            assert p.hardware["sources"] and p.hardware["peak_gflops"] > 0
            assert p.calibration["set"], "calibration set recorded"


def test_unknown_id_lists_shipped_ids():
    with pytest.raises(EdgedetError, match="cortex-a76"):
        load_profile("no-such-device")


def _write(tmp_path, doc) -> str:
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    return str(p)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("kind"), "'kind'"),
        (lambda d: d.__setitem__("kind", "guessed"), "'kind'"),
        (
            lambda d: d["predictor"]["classes"]["conv"].pop("compute_scale"),
            "predictor.classes.conv.compute_scale",
        ),
        (
            lambda d: d["predictor"]["classes"]["conv"].__setitem__("overhead_us", -1),
            "predictor.classes.conv.overhead_us",
        ),
        (lambda d: d["hardware"].__setitem__("sources", []), "hardware.sources"),
        (lambda d: d["calibration"].pop("mape"), "calibration.mape"),
        (lambda d: d.__setitem__("schema_version", 99), "schema_version"),
        (lambda d: d["predictor"].__setitem__("type", "forest"), "predictor.type"),
    ],
)
def test_broken_profile_names_the_field(tmp_path, mutate, field):
    doc = copy.deepcopy(load_profile("cortex-a76").doc)
    mutate(doc)
    with pytest.raises(EdgedetError) as e:
        load_profile(_write(tmp_path, doc))
    assert field in str(e.value)


def test_measured_profile_schema(tmp_path):
    doc = {
        "schema_version": 1,
        "id": "x",
        "kind": "measured",
        "runtime": {"name": "onnxruntime", "threads": 1},
        "element_bytes": 4,
        "hardware": {"name": "cpu"},
        "predictor": {"type": "linear", "classes": {"conv": {"coef": {"flops": 1e-5}}}},
        "calibration": {"mape": 0.1, "within10": 0.5, "method": "m"},
    }
    assert from_document(doc).kind == "measured"
    doc["predictor"]["classes"]["conv"]["coef"] = {"colour": 1.0}
    with pytest.raises(EdgedetError, match="predictor.classes.conv.coef.colour"):
        from_document(doc)


def test_measured_profile_on_another_isa_warns_naming_both(tmp_path, capsys):
    from edgedet.cli.main import main
    from edgedet.cpu import VectorIsa, vector_isa

    doc = {
        "schema_version": 1,
        "id": "elsewhere",
        "kind": "measured",
        "runtime": {"name": "onnxruntime", "threads": 1},
        "element_bytes": 4,
        "hardware": {"name": "cpu", "isa": {"best": "amx", "features": ["avx2", "avx512f", "amx"]}},
        "predictor": {"type": "linear", "classes": {"conv": {"coef": {"flops": 1e-5}}}},
        "calibration": {"mape": 0.1, "within10": 0.5, "method": "m"},
    }
    prof = from_document(doc)
    avx2 = VectorIsa("x86_64", ("avx2",), ("avx2",))
    assert prof.isa_warning(avx2) == (
        "profile 'elsewhere' was measured on a amx CPU; this host is avx2: its kernel timings may not hold here"
    )
    assert prof.isa_warning(VectorIsa("x86_64", ("amx",), ("amx",))) is None
    assert load_profile("cortex-a76").isa_warning(avx2) is None  # predicted profiles carry no host ISA
    path = _write(tmp_path, doc)
    main(["predict", "quadranet25-xxs", "--device", path, "--allow-unknown", "--input-size", "64"])
    err = capsys.readouterr().err
    host = vector_isa().best
    assert (f"measured on a amx CPU; this host is {host}" in err) == (host != "amx")


def test_not_json_is_rejected(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("{ not json")
    with pytest.raises(EdgedetError, match="not readable JSON"):
        load_profile(str(p))
