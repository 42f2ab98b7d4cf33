"""edgedet.profiles: device profiles (JSON) and the latency predictor that reads them.

A profile describes a device (predicted: roofline efficiencies calibrated on reference data;
measured: per-kernel fits timed on this host). The predictor turns a model into a kernel graph
(`graph`, `module_graph`), fuses it the way the profile's runtime does (`fusion`, `layout`) and
prices each kernel (`cost`, `predict`). Host profiling (`measure`, `kernel_models`, `context`,
`fresh`, `host_timing`), few-shot adaptation (`adapt`) and calibration of the predicted profiles
(`calibrate`, `crossval`, `devices`) build the JSON files.

Public API: `load_profile`, `predict_module`, `predict_onnx`, `Prediction`, `Kernel`, `Profile`.
"""

from edgedet.profiles.kernel import Kernel
from edgedet.profiles.loader import PROFILE_DIR, Profile, from_document, load_profile, shipped_ids
from edgedet.profiles.predict import Prediction, predict_module, predict_onnx
from edgedet.profiles.schema import SCHEMA_VERSION, validate

__all__ = [
    "PROFILE_DIR",
    "Kernel",
    "Prediction",
    "Profile",
    "SCHEMA_VERSION",
    "from_document",
    "load_profile",
    "predict_module",
    "predict_onnx",
    "shipped_ids",
    "validate",
]
