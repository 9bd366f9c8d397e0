"""Records of measurements that were not made, in place of their numbers in metrics.json.

Every part of an evaluation (the bound, the MI, the correlation, the probes, the intervention
test, the prediction, each generation) either holds its numbers or one of these records,
``{"applicable": false, "note": "..."}``:

- not applicable: the data have no ground truth for it (``alignment.not_applicable``);
- not computable: the data are too few for it (e.g. 3 (z_t, z_t+1) pairs for a KSG with k=3);
- failed: it raised a numerical error (a NaN reaching a distribution, a singular matrix), with
  the reason in one line; ``"failed": true`` tells it apart, and the evaluation's exit status
  says so.

``value`` reads a number that may be missing for any of these reasons; ``plain`` and
``write_csv`` write the metrics and their tables.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

MODELS = ("trained", "untrained")  # what every evaluation measures: the run and its floor
# What a numerical failure raises: torch.distributions' argument validation and scikit-learn's
# input checks raise ValueError, torch's linear algebra RuntimeError, numpy ArithmeticError.
NUMERICAL_ERRORS = (ValueError, RuntimeError, ArithmeticError)

_INVALID_PARAMETER = re.compile(r"Expected parameter (\w+) .* of distribution (\w+)")


def made(measurement: dict) -> bool:
    """True for a measurement's numbers; False for a not applicable, not computable or failed
    record (metrics written before these records existed hold numbers only)."""
    return measurement.get("applicable", True)


def has(m: dict, part: str) -> bool:
    """Whether one model's metrics hold the numbers of ``part`` (not n/a, failed or absent)."""
    return part in m and made(m[part])


def value(m: dict, part: str, key: str):
    """``m[part][key]`` of one model's metrics, or None when ``part`` was not made."""
    return m[part].get(key) if has(m, part) else None


def not_computable(reason: str) -> dict:
    """The record of a measurement the data are too few for."""
    return {"applicable": False, "note": f"not computable: {reason}"}


def failed(error: BaseException) -> dict:
    """The record of a measurement that raised ``error``: its reason in one line."""
    return {"applicable": False, "failed": True, "note": f"failed: {reason(error)}"}


def is_failed(measurement: dict) -> bool:
    return bool(measurement.get("failed", False))


def reason(error: BaseException) -> str:
    """``error`` in one line, without the tensor that torch prints after an invalid parameter."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    match = _INVALID_PARAMETER.search(text)  # Pyro may put its own line first
    if match and "invalid values" in text:
        return f"{match[1]} of a {match[2]} distribution is NaN or infinite"
    line = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return line if len(line) <= 200 else line[:199] + "…"


def plain(value):
    """JSON-ready: NaN and infinity (an undefined score, e.g. cross MI with one group) become
    null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_csv(path: Path, header: list[str], rows) -> None:
    """A table: ``header``, then one line per row of ``rows``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
