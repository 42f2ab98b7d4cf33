"""edgedet.exporters: ONNX / OpenVINO / TensorRT / TVM lowering with parity checks."""
