"""Input tensors built from a model's declared input shapes: the dynamic batch is filled
with the requested batch, dynamic spatial sizes with --input-size; anything else that does
not fit is a clear error (never a silent reshape)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedet.errors import EdgedetError

Dim = int | str | None  # a fixed size, or a symbolic / unknown (dynamic) one

DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def is_static(d: Dim) -> bool:
    return isinstance(d, int) and d >= 0


def resolve_shape(spec: InputSpec, batch: int | None, input_size: int | None) -> tuple[int, ...]:
    """The concrete shape to feed `spec` at `batch` (None: the model's static batch, or 1);
    errors name the input and the conflict."""
    shape = list(spec.shape)
    if not shape:
        return ()
    if batch is None:
        batch = shape[0] if is_static(shape[0]) else 1
    if is_static(shape[0]):
        if shape[0] != batch:
            raise EdgedetError(
                f"model input '{spec.name}' has a static batch of {shape[0]} (shape {_fmt(spec.shape)}) "
                f"but batch {batch} was requested; bench it with --batch {shape[0]} "
                "or export with a dynamic batch"
            )
    else:
        shape[0] = batch
    spatial = range(2, len(shape)) if len(shape) == 4 else range(0)
    for i in range(1, len(shape)):
        if is_static(shape[i]):
            if i in spatial and input_size is not None and shape[i] != input_size:
                raise EdgedetError(
                    f"model input '{spec.name}' has a static size {_fmt(spec.shape)} but --input-size "
                    f"{input_size} was requested; drop --input-size or export at {input_size}"
                )
            continue
        if i in spatial:
            shape[i] = input_size or DEFAULT_INPUT_SIZE
        else:
            raise EdgedetError(
                f"model input '{spec.name}' has a dynamic dimension {i} ({shape[i]!r}) in "
                f"{_fmt(spec.shape)} that bench cannot choose; export it with a fixed size"
            )
    return tuple(int(d) for d in shape)


def make_input(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Deterministic data of the right shape and type (values do not change dense-model timings)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)
    if dt.kind in "iu":
        return np.zeros(shape, dtype=dt)
    if dt.kind == "b":
        return np.zeros(shape, dtype=dt)
    raise EdgedetError(f"bench cannot make inputs of type {dtype}")


def _fmt(shape: tuple[Dim, ...]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
