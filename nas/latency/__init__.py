"""Latency prediction: kernel graphs (ONNX or nn.Module), per-profile fusion, roofline
(predicted) and fitted per-op (measured) predictors.

Public API: `load_profile`, `predict_module`, `predict_onnx`, `Prediction`, `Kernel`,
`Profile`.
"""

from edgedet.nas.latency.kernel import Kernel
from edgedet.nas.latency.predict import Prediction, predict_module, predict_onnx
from edgedet.profiles import Profile, load_profile, shipped_ids

__all__ = ["Kernel", "Prediction", "Profile", "load_profile", "predict_module", "predict_onnx", "shipped_ids"]
