"""One module per runtime. Each defines:

- `FORMATS`: the file suffixes it runs (torch runs a registered model name instead);
- `missing(device) -> str | None`: what this machine lacks to run it, in one line, or None;
- `prepare_env(spec)`: environment variables that must be set before the runtime is imported
  (thread pools read them at start-up);
- `import_runtime()`: import the runtime library (so its import cost sits in the child's
  memory baseline, not in the model's peak);
- `versions() -> dict`: the versions a report should carry;
- `open(spec) -> Session`: load/compile the model and bind inputs for one batch.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass, field
from types import ModuleType

from edgedet.errors import EdgedetError
from edgedet.runtimes.inputs import InputSpec

RUNTIMES = ("torch", "onnxruntime", "openvino", "tvm", "tensorrt")


@dataclass
class SessionSpec:
    """What one child process measures: one model, one runtime, one batch."""

    runtime: str
    model: str  # a file path, or a registered model name for torch
    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    streams: int = 1
    precision: str = "fp32"  # canonical (edgedet.precision)
    input_size: int | None = None
    inputs: list[dict] | None = None  # declared inputs from a manifest (TVM libraries do not carry them)
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SessionSpec:
        return cls(**d)

    def declared_inputs(self) -> list[InputSpec]:
        return [InputSpec(i["name"], tuple(i["shape"]), i.get("dtype", "float32")) for i in self.inputs or []]


@dataclass
class Session:
    """A loaded model with inputs bound; subclasses implement `_infer` (host-timed) or override
    `run_timed` (device-timed)."""

    inputs: dict[str, tuple[int, ...]]  # bound input name → concrete shape
    info: dict = field(default_factory=dict)  # effective runtime settings worth reporting

    def _infer(self) -> None:
        raise NotImplementedError

    def run_timed(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            self._infer()
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    def memory(self) -> dict | None:
        """Device (GPU) memory the model holds, if the runtime can say; host RSS is measured apart."""
        return None

    def cost(self) -> dict | None:
        """FLOPs / weight bytes when the runtime knows them (torch); ONNX graphs are counted by the parent."""
        return None


def module(runtime: str) -> ModuleType:
    if runtime not in RUNTIMES:
        raise EdgedetError(f"unknown runtime '{runtime}'; choose from {', '.join(RUNTIMES)}")
    return importlib.import_module(f"edgedet.runtimes.{runtime}")


def check_available(runtime: str, device: str) -> None:
    """Raise one clear line when this machine cannot run `runtime` on `device`."""
    why = module(runtime).missing(device)
    if why:
        raise EdgedetError(f"--runtime {runtime} cannot run here: {why}")


def parse_rpc(device: str) -> tuple[str, int, str | None] | None:
    """rpc://HOST:PORT[/KEY] → (host, port, key or None); None for a local device."""
    if not device.startswith("rpc://"):
        return None
    rest = device[len("rpc://") :]
    addr, _, key = rest.partition("/")
    hostname, _, port = addr.rpartition(":")
    if not hostname or not port.isdigit():
        raise EdgedetError(f"--device {device}: expected rpc://HOST:PORT or rpc://HOST:PORT/KEY")
    return hostname, int(port), key or None


def first_line(e: BaseException) -> str:
    """A runtime's exception as one line: C++ runtimes wrap the cause in source-location lines,
    so those are skipped and the most specific remaining lines are kept."""
    text = str(e).strip() or type(e).__name__
    noise = ("Traceback", "File ", "Exception from", "Check '", "Summary:")
    lines = [ln.strip(" -") for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return ("; ".join(lines[-2:]) if len(lines) > 1 else (lines[0] if lines else text.splitlines()[0]))[:400]
