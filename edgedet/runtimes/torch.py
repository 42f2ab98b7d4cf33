"""PyTorch eager: a registered model name built with `edgedet.models.create` (imported here
only: bench otherwise uses nothing but file formats), `torch.set_num_threads(threads)`,
inference mode, and a device synchronise before the clock stops on CUDA."""

from __future__ import annotations

import importlib.util

from edgedet.errors import EdgedetError
from edgedet.precision import TORCH_DTYPE
from edgedet.runtimes import Session, SessionSpec

FORMATS: tuple[str, ...] = ()  # runs model names, not files


def missing(device: str) -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "the torch package is not installed"
    if device not in ("cpu", "cuda"):
        return f"device '{device}' is not supported by the torch runtime (use cpu or cuda)"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return f"no CUDA GPU is visible to this torch build ({torch.__version__})"
    return None


def prepare_env(spec: SessionSpec) -> None:
    return None


def import_runtime() -> None:
    import torch

    import edgedet.models  # noqa: F401  (the model zoo's imports belong to the baseline)

    torch.set_num_interop_threads(1)  # only possible before any parallel work starts


def versions() -> dict:
    import torch

    return {"torch": torch.__version__}


class TorchSession(Session):
    def __init__(self, model, x, cuda: bool, inputs: dict, info: dict):
        super().__init__(inputs=inputs, info=info)
        self.model, self.x, self.cuda = model, x, cuda

    def _infer(self) -> None:
        import torch

        with torch.inference_mode():
            self.model(self.x)
        if self.cuda:
            torch.cuda.synchronize()

    def memory(self) -> dict | None:
        if not self.cuda:
            return None
        import torch

        return {
            "allocated_peak_mib": torch.cuda.max_memory_allocated() / 2**20,
            "reserved_peak_mib": torch.cuda.max_memory_reserved() / 2**20,
            "method": "torch.cuda.max_memory_allocated / max_memory_reserved (caching allocator)",
        }

    def cost(self) -> dict | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            self.model(self.x)
        weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return {
            "flops": int(counter.get_total_flops()),
            "weight_bytes": weight_bytes,
            "io_bytes": self.x.numel() * self.x.element_size(),
            "source": "torch.utils.flop_counter on the model (conv/matmul, 1 MAC = 2 FLOPs)",
        }


def open(spec: SessionSpec) -> Session:
    import torch

    from edgedet.models import create  # lazily, like torch itself: `missing()` reports torch absent

    torch.set_num_threads(spec.threads)
    torch.set_grad_enabled(False)
    dtype = getattr(torch, TORCH_DTYPE[spec.precision])
    model = create(spec.model).eval().to(device=spec.device, dtype=dtype)
    size = spec.input_size or 224
    x = torch.randn(spec.batch, 3, size, size, generator=torch.Generator().manual_seed(spec.seed))
    x = x.to(device=spec.device, dtype=dtype)
    try:
        with torch.inference_mode():
            model(x)  # shape check only; the timed first inference happens in the loop
    except RuntimeError as e:
        raise EdgedetError(
            f"model '{spec.model}' does not accept input {list(x.shape)}: {str(e).splitlines()[0]}"
        ) from None
    info = {
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "dtype": str(dtype),
        "mode": "eager, inference_mode",
    }
    return TorchSession(model, x, spec.device == "cuda", {"input": tuple(x.shape)}, info)
