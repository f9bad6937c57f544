"""The shared number formatting: table cells, confidence intervals, chart labels and NaN-safe JSON."""

import json
import math
from dataclasses import dataclass

from capeval.formatting import fmt_ci, fmt_number, json_safe, plain_number


@dataclass
class _Row:
    value: float
    ci: tuple[float, float]


def test_json_safe_writes_nan_and_infinities_as_null_and_dataclasses_as_dicts():
    data = json_safe({"row": _Row(math.nan, (0.25, math.inf)), 3: [1.5, -math.inf]})
    assert data == {"row": {"value": None, "ci": [0.25, None]}, "3": [1.5, None]}
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_table_numbers_and_intervals():
    assert fmt_number(0.12345) == "0.123"
    assert fmt_number(0.5, 2, sign=True) == "+0.50"
    assert fmt_number(None) == "-" and fmt_number(math.nan) == "-"
    assert fmt_ci(0.1, 0.25) == "[0.100, 0.250]"
    assert fmt_ci(1200.04, 1300.96, 1) == "[1200.0, 1301.0]"
    assert fmt_ci(math.nan, 0.3, missing="nan") == "[nan, 0.300]"


def test_plain_numbers_drop_needless_decimals():
    assert plain_number(5.0) == "5" and plain_number(10) == "10"
    assert plain_number(2.5) == "2.5" and plain_number(0.1 + 0.2) == "0.30000000000000004"
    assert plain_number(1 / 3, 3) == "0.333"
    assert plain_number(1234.5678, 10) == "1234.5678"
