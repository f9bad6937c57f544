"""How numbers are written: for people (tables, charts, messages) and for JSON (NaN and infinities as null)."""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON data: dataclasses become dicts, keys strings, and NaN and infinities null
    (valid JSON for any reader; Python's json would write NaN)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def fmt_number(x: float | None, digits: int = 3, sign: bool = False, missing: str = "-") -> str:
    """`x` with `digits` decimals (and a + for positive values with `sign`); `missing` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return missing
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_ci(low: float | None, high: float | None, digits: int = 3, missing: str = "-") -> str:
    """A confidence interval as "[low, high]"."""
    return f"[{fmt_number(low, digits, missing=missing)}, {fmt_number(high, digits, missing=missing)}]"


def plain_number(v: float, digits: int | None = None) -> str:
    """A number as short text: a whole number without decimals ("3", not "3.0"), else `digits`
    significant digits (all of them when None)."""
    r = round(v)
    if abs(v - r) < 1e-9:
        return str(int(r))
    return f"{v:.{digits}g}" if digits else repr(float(v))
