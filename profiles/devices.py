"""Hardware facts (with sources), runtimes and calibration sets of the predicted profiles.

Peak compute and bandwidth are the published figures; how far a runtime gets from them is
what calibration fits (per op class), never hand-tuned here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATA_ROOT_HINT = "../shared/data (set EDGEDET_REFERENCE_DATA to override)"


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    hardware: dict
    runtime: dict
    element_bytes: int
    fusion: dict
    calibration_source: str  # "nnmeter:<device>" or "a100:<regime>"
    fit_fixed: bool = False  # fit a per-inference constant (host↔device transfer, sync)
    prior: dict = field(default_factory=dict)
    description: str = ""


_SD855 = (
    "Qualcomm Snapdragon 855 product brief: Kryo 485 prime core (Cortex-A76) at 2.84 GHz, "
    "Adreno 640 GPU, 4×16-bit LPDDR4X-2133 (34.1 GB/s)"
)
_TFLITE_FUSION = {"epilogues": ["bias", "bn", "act"], "layernorm_pattern": True, "gelu_pattern": True}

DEVICES: dict[str, DeviceSpec] = {
    "cortex-a76": DeviceSpec(
        id="cortex-a76",
        description="Pixel 4 prime core (Cortex-A76 @ 2.84 GHz), TFLite 2.1 CPU, 1 thread, FP32",
        hardware={
            "name": "Arm Cortex-A76 (Snapdragon 855 prime core, Pixel 4)",
            "peak_gflops": 45.44,
            "bandwidth_gbs": 34.1,
            "precision": "fp32",
            "derivation": "2 × 128-bit NEON FMA pipes = 8 FP32 FMA/cycle = 16 FLOP/cycle × 2.84 GHz",
            "sources": [
                "Arm Cortex-A76 Software Optimization Guide (two 128-bit ASIMD/FP FMA pipelines)",
                _SD855,
            ],
        },
        runtime={"name": "TFLite 2.1 CPU (nn-Meter cortexA76cpu_tflite21)", "threads": 1, "batch": 1},
        element_bytes=4,
        fusion=_TFLITE_FUSION,
        calibration_source="nnmeter:cortex-a76",
    ),
    "adreno640": DeviceSpec(
        id="adreno640",
        description="Mi 9 GPU (Adreno 640), TFLite 2.1 GPU delegate",
        hardware={
            "name": "Qualcomm Adreno 640 (Snapdragon 855, Xiaomi Mi 9)",
            "peak_gflops": 898.6,
            "bandwidth_gbs": 34.1,
            "precision": "fp16 storage (GPU delegate default), fp32 peak quoted",
            "sources": [
                "Adreno 640: 384 ALUs × 2 FLOP × 585 MHz ≈ 898.6 GFLOPS FP32 (Wikipedia 'Adreno', "
                "Qualcomm figures)",
                _SD855,
            ],
        },
        runtime={
            "name": "TFLite 2.1 GPU delegate (nn-Meter adreno640gpu_tflite21)",
            "threads": 1,
            "batch": 1,
        },
        element_bytes=2,
        fusion=_TFLITE_FUSION,
        calibration_source="nnmeter:adreno640",
    ),
    "adreno630": DeviceSpec(
        id="adreno630",
        description="Pixel 3 XL GPU (Adreno 630), TFLite 2.1 GPU delegate",
        hardware={
            "name": "Qualcomm Adreno 630 (Snapdragon 845, Pixel 3 XL)",
            "peak_gflops": 727.0,
            "bandwidth_gbs": 29.9,
            "precision": "fp16 storage (GPU delegate default), fp32 peak quoted",
            "sources": [
                "Adreno 630: 256 ALUs × 2 FLOP × 710 MHz ≈ 727 GFLOPS FP32 (Wikipedia 'Adreno')",
                "Qualcomm Snapdragon 845 product brief: 4×16-bit LPDDR4X-1866 (29.9 GB/s)",
            ],
        },
        runtime={
            "name": "TFLite 2.1 GPU delegate (nn-Meter adreno630gpu_tflite21)",
            "threads": 1,
            "batch": 1,
        },
        element_bytes=2,
        fusion=_TFLITE_FUSION,
        calibration_source="nnmeter:adreno630",
    ),
    "myriad-vpu": DeviceSpec(
        id="myriad-vpu",
        description="Intel Neural Compute Stick 2 (Myriad X VPU), OpenVINO 2019R2, FP16, over USB 3",
        hardware={
            "name": "Intel Movidius Myriad X VPU (Neural Compute Stick 2)",
            "peak_gflops": 1000.0,
            "bandwidth_gbs": 12.8,
            "onchip_bytes": 2.5 * 2**20,
            "precision": "fp16",
            "sources": [
                "Intel Movidius Myriad X product brief: Neural Compute Engine, 'over 1 TOPS' of DNN "
                "compute, 16 SHAVE cores, 2.5 MB of on-chip (CMX) memory: activations larger than "
                "it stream from DRAM (the `spill` term)",
                "In-package 4 Gbit LPDDR4; 12.8 GB/s assumes a 32-bit LPDDR4-3200 interface "
                "(Intel publishes no figure: an assumption, absorbed by the fitted memory scale)",
            ],
        },
        runtime={
            "name": "OpenVINO 2019R2 MYRIAD plugin (nn-Meter myriadvpu_openvino2019r2)",
            "threads": 1,
            "batch": 1,
        },
        element_bytes=2,
        fusion={"epilogues": ["bias", "bn", "act"], "layernorm_pattern": True, "gelu_pattern": True},
        calibration_source="nnmeter:myriad-vpu",
        fit_fixed=True,
    ),
    "a100-trt": DeviceSpec(
        id="a100-trt",
        description="NVIDIA A100 80GB SXM, TensorRT engine, FP16, kernels only (no pre/post-processing)",
        hardware={
            "name": "NVIDIA A100-SXM4-80GB",
            "peak_gflops": 312000.0,
            "bandwidth_gbs": 2039.0,
            "precision": "fp16 (tensor cores)",
            "sources": [
                "NVIDIA A100 datasheet: FP16 tensor 312 TFLOP/s dense, HBM2e 2,039 GB/s (80GB SXM), "
                "108 SMs, 40 MB L2"
            ],
        },
        runtime={"name": "TensorRT FP16 (Paddle-TRT, NVIDIA DeepLearningExamples)", "threads": 1, "batch": 1},
        element_bytes=2,
        fusion={
            "epilogues": ["bias", "bn", "act", "residual", "scale", "gelu"],
            "layernorm_pattern": True,
            "gelu_pattern": True,
        },
        calibration_source="a100:Paddle-TRT/TensorRT, excludes preprocessing|FP16 Inference Latency",
        fit_fixed=True,
    ),
    "a100-torch": DeviceSpec(
        id="a100-torch",
        description="NVIDIA A100 80GB, PyTorch eager (NGC 21.03), TF32; launch-bound at small batch",
        hardware={
            "name": "NVIDIA A100-80GB",
            "peak_gflops": 156000.0,
            "bandwidth_gbs": 2039.0,
            "precision": "tf32 (tensor cores)",
            "sources": ["NVIDIA A100 datasheet: TF32 tensor 156 TFLOP/s dense, HBM2e 2,039 GB/s (80GB SXM)"],
        },
        runtime={"name": "PyTorch eager (NGC 21.03), TF32", "threads": 1, "batch": 1},
        element_bytes=4,
        fusion={"epilogues": ["bias"], "layernorm_pattern": True, "gelu_pattern": True},
        calibration_source="a100:PyTorch 21.03 NGC eager|TF32 Inference Latency",
        fit_fixed=True,
    ),
}
