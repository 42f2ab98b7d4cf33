"""Kept for the documented `edgedet.nas.latency` Python API: the latency predictor now lives in
`edgedet.profiles` (docs/latency.md); this re-exports its public names."""

from edgedet.profiles import Kernel, Prediction, Profile, load_profile, predict_module, predict_onnx, shipped_ids

__all__ = ["Kernel", "Prediction", "Profile", "load_profile", "predict_module", "predict_onnx", "shipped_ids"]
