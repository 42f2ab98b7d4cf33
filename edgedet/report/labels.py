"""How every latency in the report says where it came from: measured (device, runtime,
threads, batch, precision) or predicted (profile, its calibration error)."""

from __future__ import annotations

from typing import Any


def measured_label(bench: dict[str, Any], result: dict[str, Any]) -> str:
    """`measured: <cpu>, <runtime> <version>, <n> threads, batch <b>, <precision>`."""
    dev, rt, st = bench.get("device", {}), bench.get("runtime", {}), bench.get("settings", {})
    where = dev.get("cpu_model") or dev.get("name") or "?"
    if dev.get("remote"):
        where = f"{where} via {dev['remote']}"
    threads = st.get("threads")
    thr = f"{threads} thread{'s' if threads != 1 else ''}" if threads is not None else "default threads"
    return (f"measured: {where}, {rt.get('name', '?')} {rt.get('version', '')}".rstrip()
            + f", {thr}, batch {result.get('batch', '?')}, {st.get('precision', '?')}")


def profile_error(profile: dict[str, Any]) -> tuple[float | None, str]:
    """(MAPE as a fraction or None, a short phrase naming the error and its basis)."""
    cal = profile.get("calibration") or {}
    mape = cal.get("mape")
    if not isinstance(mape, (int, float)):
        return None, "calibration error unknown"
    basis = cal.get("error_basis", "held-out")
    within = cal.get("within10")
    extra = f", {100 * within:.0f}% within ±10%" if isinstance(within, (int, float)) else ""
    return float(mape), f"{basis} MAPE {100 * mape:.1f}%{extra}"


def runtime_name(profile: dict[str, Any]) -> str:
    rt = profile.get("runtime")
    return rt.get("name", "?") if isinstance(rt, dict) else str(rt or "?")


def predicted_label(profile: dict[str, Any]) -> str:
    """`predicted: profile <id> (<kind>; <runtime>; <error>)`."""
    _, err = profile_error(profile)
    return (f"predicted: profile {profile.get('id', '?')} ({profile.get('kind', '?')}; "
            f"{runtime_name(profile)}; {err})")
