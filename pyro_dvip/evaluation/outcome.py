"""Records of measurements that were not made, in place of their numbers in metrics.json.

Every part of an evaluation (the bound, the MI, the correlation, the probes, the intervention
test, the prediction, each generation) either holds its numbers or one of these records,
``{"applicable": false, "note": "..."}``:

- not applicable: the data have no ground truth for it (``alignment.not_applicable``);
- not computable: the data are too few for it (e.g. 3 (z_t, z_t+1) pairs for a KSG with k=3);
- failed: it raised a numerical error (a NaN reaching a distribution, a singular matrix), with
  the reason in one line; ``"failed": true`` tells it apart, and the evaluation's exit status
  says so.
"""

from __future__ import annotations

import re

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
