"""One word for what a run's factors became, read off ``dvip evaluate``'s probes.

The target of docs/results.md, applied to the position probes of the trained model's used
factors (every factor but the unused ones, below):

- ``dropped``: some digit is read from the whole latent with R^2 below ``HOLDS`` (0.3): no
  factor encodes it, whatever the others do; or no used factor does (below).
- ``objects``: every digit's position is read from its matched factor with R^2 >= 0.8, and no
  factor holds more than R^2 0.3 of a digit it is not matched to (leakage; so the gap between
  matched and leakage is at least 0.5). 0.3 is below every entangled control measured
  (largest leakage 0.44-0.77), the target's "clearly below the entangled model's".
- ``axis split``: some digit's x is held (R^2 >= ``HOLDS_COORD``, 0.5) by one factor that does
  not hold its y, and its y by another that does not hold its x: the factors cut that digit by
  axis (the paper's box makes such a split as independent as a digit).
- ``slots``: the factors hold the digits ordered by x (or y), not the digits: against the
  positions sorted per frame along that axis (``alignment.slot_alignment``) the smallest
  matched R^2 is at least ``HOLDS_COORD`` (0.5) and at least ``LEAKAGE`` (0.3) above the
  smallest matched R^2 against the digits themselves (both on positions). Each factor then
  passes from one digit to the other whenever they cross along that axis, which the identity
  measure counts; same-coloured digits (``--channels 1``) are where this happens. Checked
  first: a linear probe reads no digit from a slot code, not even from the whole latent, so
  the rules below would call it ``dropped`` or ``under-encoded``; and it cannot hold with
  ``objects`` (matched 0.8 + 0.3 > 1). (Added after two same-colour runs that the rules
  below called ``under-encoded``; its thresholds are the existing ones.)
- ``under-encoded``: the grouping is right but some digit is read weakly: no leakage (every
  factor holds under R^2 0.3 of the digits it is not matched to), no digit held by two
  factors, and each digit under the matched 0.8 is read no better from the whole latent
  (whole-latent R^2 under 0.8 too). The factor has its digit and nothing else, coarsely.
- ``mixed``: anything else (a digit held by several factors, duplicated or spread).

**Unused factors.** A factor whose KL costs under ``UNUSED_NATS`` (0.1 nats per frame, the
ELBO's KL of that factor, ``kl_per_factor_per_frame`` in the alignment record) is **unused**
(``unused_factors``), whatever its posterior mean reads: what it passes to the decoder, a
sample, is indistinguishable from the prior's noise, even where its mean still moves with a
digit (a probe reads the guide's mean, which can move far below its noise). The verdict is that
of the used factors (``used_alignment``): unused factors are left out of the matching and of
the leakage, and named at the end of the reason. Two factors holding one digit each and six
unused ones are ``objects``, whatever the six's means read. A digit that no used factor reads
at ``HOLDS`` (0.3) is ``dropped`` when only unused factors read it, or when fewer factors are
used than there are digits and the matching leaves it without one; fewer used factors than
digits are never ``objects``. Alignments without the KL (metrics written before it, a failed
bound, the groups of a one-factor model, which are not the prior's factors) call no factor
unused. ``verdict_record`` keeps what the verdict reads, so that a table can be recounted.

**More factors than digits** (K > N). Each digit is matched to its best used factor
(``linear_sum_assignment`` on the used rows of the (K, N) probe matrix matches every digit and
leaves the other factors unmatched); an unmatched used factor that holds part of a digit is
leakage.

The thresholds are the documented target's, fixed before any run they judge. For a model
without factors the verdict is that of its most favourable split into groups, or of the
decoder's blocks where a per-factor decoder has them, and says which.
"""

from __future__ import annotations

import numpy as np

from .alignment import alignment_summary
from .outcome import made

MATCHED = 0.8  # a digit's matched R^2
LEAKAGE = 0.3  # the most a factor may hold of a digit it is not matched to
HOLDS = 0.3  # whole-latent R^2 below this: the digit is not encoded at all
HOLDS_COORD = 0.5  # a factor "holds" a coordinate when its probe reads it this well
UNUSED_NATS = 0.1  # a factor costing less KL per frame than this carries nothing
BLOCKS = "the decoder's blocks"  # the probes' groups of a one-factor model with block rendering


def unused_factors(alignment: dict) -> list[int]:
    """The factors that cost under ``UNUSED_NATS`` of KL per frame, whatever their probes read;
    [] when the alignment holds no KL per factor."""
    kl = alignment.get("kl_per_factor_per_frame")
    if kl is None:
        return []
    K = len(alignment["r2"])
    if len(kl) != K:
        raise ValueError(f"alignment: kl_per_factor_per_frame has {len(kl)} values for {K} factors")
    # None: a NaN KL, as metrics.json writes it; it is not a small one
    return [k for k in range(K) if kl[k] is not None and kl[k] < UNUSED_NATS]


def used_alignment(alignment: dict) -> dict:
    """The used factors' probes (every factor but ``unused_factors``) matched to the digits:
    ``alignment_summary`` of their rows, with ``assignment`` in the model's factor indices,
    ``factors`` those indices and ``without`` the digits the matching leaves without a used
    factor (only where fewer factors are used than there are digits)."""
    r2 = np.asarray(alignment["r2"], dtype=float)  # (K, O)
    unused = set(unused_factors(alignment))
    factors = [k for k in range(len(r2)) if k not in unused]
    if not factors:
        nan = float("nan")
        summary = dict(assignment=[], matched=[], min_matched=nan, max_leakage=nan, min_gap=nan)
    else:
        summary = alignment_summary(r2[factors])
        summary["assignment"] = [[factors[k], o] for k, o in summary["assignment"]]
    matched = {o for _, o in summary["assignment"]}
    without = [o for o in range(r2.shape[1]) if o not in matched]
    return {**summary, "factors": factors, "without": without}


def verdict_record(alignment: dict) -> dict:
    """The parts of an alignment record that ``alignment_verdict`` reads, so that a table can
    keep them (as JSON) and recount its verdicts when the rules change."""
    keys = ("applicable", "note", "protocol", "r2", "whole_r2", "kl_per_factor_per_frame")
    record = {key: alignment[key] for key in keys if key in alignment}
    if "by_coordinate" in alignment:
        coords = alignment["by_coordinate"]
        record["by_coordinate"] = {key: coords[key] for key in ("coordinates", "r2")}
    if "by_slot" in alignment:
        record["by_slot"] = {axis: {"r2": s["r2"]} for axis, s in alignment["by_slot"].items()}
    if "position" in alignment.get("by_target", {}):
        record["by_target"] = {"position": {"r2": alignment["by_target"]["position"]["r2"]}}
    return record


def alignment_verdict(alignment: dict) -> dict:
    """``{"verdict": word, "reason": one line}`` for ``metrics["trained"]["alignment"]``, judged
    on the used factors (``used_alignment``); the reason ends by naming the unused ones."""
    if not made(alignment):
        return {"verdict": "n/a", "reason": alignment.get("note", "no ground truth")}
    verdict = _verdict(alignment, used_alignment(alignment))
    unused = unused_factors(alignment)
    if unused:
        names = ", ".join(map(str, unused))
        verdict["reason"] += f"; unused: factor{'s' if len(unused) > 1 else ''} {names} " + (
            f"(KL < {UNUSED_NATS:g} nats per frame, left out of the matching)"
        )
    return verdict


def _verdict(alignment: dict, used: dict) -> dict:
    factors = used["factors"]
    r2 = np.asarray(alignment["r2"], dtype=float)[factors]  # (K used, O) position probes
    whole = np.asarray(alignment["whole_r2"], dtype=float)  # (O,)
    protocol = alignment.get("protocol", "factors")
    split_note = {"factors": "", BLOCKS: " (the decoder's blocks)"}.get(protocol, " (best split)")
    slots = _slots(alignment, factors)  # first: a slot code reads no digit linearly, nor drops one
    if slots is not None:
        return {"verdict": "slots", "reason": slots + split_note}
    dropped = [o for o, w in enumerate(whole) if not w >= HOLDS]
    if dropped:
        reasons = ", ".join(f"digit {o} (whole-latent R² {whole[o]:.2f})" for o in dropped)
        return {"verdict": "dropped", "reason": f"not encoded: {reasons}{split_note}"}
    lost = _lost(alignment, used)
    if lost:
        return {"verdict": "dropped", "reason": f"no used factor reads {lost}{split_note}"}
    if not used["without"] and used["min_matched"] >= MATCHED and used["max_leakage"] < LEAKAGE:
        return {
            "verdict": "objects",
            "reason": f"matched ≥ {used['min_matched']:.2f}, "
            f"leakage ≤ {used['max_leakage']:.2f}{split_note}",
        }
    coords = alignment.get("by_coordinate")
    if coords is not None and r2.shape[0] > 1:
        names = list(coords["coordinates"])
        by_coord = np.asarray(coords["r2"], dtype=float)[factors]  # (K used, O, C)
        x, y = names.index("x"), names.index("y")
        splits = []
        for o in range(by_coord.shape[1]):
            holds_x = by_coord[:, o, x] >= HOLDS_COORD  # (K used,)
            holds_y = by_coord[:, o, y] >= HOLDS_COORD
            only_x, only_y = np.flatnonzero(holds_x & ~holds_y), np.flatnonzero(holds_y & ~holds_x)
            if len(only_x) and len(only_y):
                fx, fy = factors[only_x[0]], factors[only_y[0]]
                splits.append(f"digit {o}: x in factor {fx}, y in factor {fy}")
        if splits:
            return {"verdict": "axis split", "reason": "; ".join(splits) + split_note}
    shared = [
        f"digit {o} in factors "
        + ", ".join(str(factors[k]) for k in np.flatnonzero(r2[:, o] >= HOLDS_COORD))
        for o in range(r2.shape[1])
        if (r2[:, o] >= HOLDS_COORD).sum() > 1
    ]
    if shared:
        return {"verdict": "mixed", "reason": "; ".join(shared) + split_note}
    # (factor, digit, matched R^2) of each matched digit read under MATCHED
    weak = [(k, o, r) for (k, o), r in zip(used["assignment"], used["matched"]) if r < MATCHED]
    clean = not used["without"] and used["max_leakage"] < LEAKAGE
    if clean and all(whole[o] < MATCHED for _, o, _ in weak):
        reasons = ", ".join(
            f"digit {o} read at R² {r:.2f} from factor {k} only (whole latent {whole[o]:.2f})"
            for k, o, r in weak
        )
        return {"verdict": "under-encoded", "reason": reasons + split_note}
    # a digit left without a used factor of its own is held by one that has another digit
    orphans = [f"digit {o} has no used factor of its own; " for o in used["without"]]
    reason = f"matched {used['min_matched']:.2f}, gap {used['min_gap']:.2f}"
    return {"verdict": "mixed", "reason": "".join(orphans) + reason + split_note}


def _lost(alignment: dict, used: dict) -> str:
    """The digits that no used factor reads at ``HOLDS`` although the latent encodes them: only
    unused factors read them, or fewer used factors than digits left them without one; ""
    where there are none (the digits the whole latent misses are ``dropped`` before)."""
    r2 = np.asarray(alignment["r2"], dtype=float)  # (K, O)
    factors = used["factors"]
    unused = [k for k in range(len(r2)) if k not in factors]
    lost = []
    for o in range(r2.shape[1]):
        if factors and r2[factors, o].max() >= HOLDS:
            continue
        best = max(unused, key=lambda k: r2[k, o], default=None)
        if best is not None and r2[best, o] >= HOLDS:
            lost.append(f"digit {o} (only unused factor {best} does, R² {r2[best, o]:.2f})")
        elif o in used["without"]:
            lost.append(f"digit {o} ({len(factors)} used factors for {r2.shape[1]} digits)")
    return ", ".join(lost)


def _slots(alignment: dict, factors: list[int]) -> str | None:
    """The reason of a ``slots`` verdict (see the module docstring) read from the used
    ``factors``, or None; never where they are fewer than the digits."""
    by_slot = alignment.get("by_slot")  # absent for one digit and from older metrics
    if not by_slot:
        return None
    position = alignment.get("by_target", {}).get("position")
    r2 = np.asarray(position["r2"] if position else alignment["r2"], dtype=float)  # (K, O)
    if len(factors) < r2.shape[1]:
        return None
    by_identity = alignment_summary(r2[factors])["min_matched"]
    by_axis = {
        axis: alignment_summary(np.asarray(slot["r2"], dtype=float)[factors])
        for axis, slot in by_slot.items()
    }
    axis, slot = max(by_axis.items(), key=lambda item: item[1]["min_matched"])
    if slot["min_matched"] >= HOLDS_COORD and slot["min_matched"] - by_identity >= LEAKAGE:
        held = ", ".join(f"factor {factors[k]}: slot {o}" for k, o in slot["assignment"])
        return (
            f"the factors hold the digits ordered by {axis} ({held}; smallest matched R² "
            f"{slot['min_matched']:.2f}, against {by_identity:.2f} by digit): each factor "
            f"changes digit when two cross in {axis}"
        )
    return None
