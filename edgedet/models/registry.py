"""Model registry in the spirit of timm: `create(name, **overrides)` and `names()`.

Fixed names are registered with `@register(name)`; name families with a parameter after a
prefix (`quadranet-arch:<path>`, `plain-detr-<backbone>`, …) with `register_family`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

from edgedet.errors import EdgedetError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, tuple[Callable[..., nn.Module], list[str]]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn

    return deco


def register_family(prefix: str, factory: Callable[..., nn.Module], examples: list[str] | None = None) -> None:
    """`factory(param, **overrides)` builds `<prefix><param>`; `examples` are listed by names()."""
    _FAMILIES[prefix] = (factory, examples or [])


def names() -> list[str]:
    """Every concrete registered name (family examples included)."""
    out = list(_MODELS)
    for _, examples in _FAMILIES.values():
        out.extend(e for e in examples if e not in out)
    return out


def create(name: str, **overrides) -> nn.Module:
    """Build a registered model; unknown names and overrides are clear errors."""
    if name in _MODELS:
        return _call(name, _MODELS[name], (), overrides)
    for prefix in sorted(_FAMILIES, key=len, reverse=True):
        if name.startswith(prefix) and len(name) > len(prefix):
            return _call(name, _FAMILIES[prefix][0], (name[len(prefix):],), overrides)
    hint = difflib.get_close_matches(name, names(), n=3)
    more = f"; did you mean {', '.join(hint)}?" if hint else "; `edgedet models` lists them"
    raise EdgedetError(f"unknown model '{name}'{more}")


def _call(name: str, fn: Callable[..., nn.Module], args: tuple, overrides: dict) -> nn.Module:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        bad = [k for k in overrides if k not in params]
        if bad:
            allowed = [k for k in params if k not in ("param",)][len(args):]
            raise EdgedetError(f"model '{name}' has no option {', '.join(bad)} (options: {', '.join(allowed)})")
    model = fn(*args, **overrides)
    model.edgedet_name = name
    return model
