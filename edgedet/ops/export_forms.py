"""Export mode: the one seam through which an exporter swaps an op for its runtime form.

An op with an export form (`fixed_size_nms`, `roi_align_batched`) looks here on every call:
inside `export_forms(name=fn, ...)` it calls `fn` instead of its eager computation. Every
caller, however it imported the op, is covered — nothing is patched by module name. The
forms are held in a context variable, so a swap never leaks into another thread or task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

OPS = ("fixed_size_nms", "roi_align_batched")

_FORMS: ContextVar[dict[str, Callable] | None] = ContextVar("edgedet_export_forms", default=None)


@contextmanager
def export_forms(**forms: Callable) -> Iterator[None]:
    """Within the block, op `name` runs as `forms[name]` (the exporter's traced form)."""
    unknown = sorted(set(forms) - set(OPS))
    if unknown:
        raise ValueError(f"no op {', '.join(unknown)} has an export form (ops: {', '.join(OPS)})")
    token = _FORMS.set({**(_FORMS.get() or {}), **forms})
    try:
        yield
    finally:
        _FORMS.reset(token)


def export_form(name: str) -> Callable | None:
    """The form op `name` must run as now, or None (eager: its own computation)."""
    forms = _FORMS.get()
    return None if forms is None else forms.get(name)
