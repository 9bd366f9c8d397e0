"""Do factors keep their digit when two digits cross? Identity swaps against Moving MNIST truth.

With every digit in its own colour channel a factor can hold "the red digit" and never lose it;
with one channel (``--channels 1``) two digits that meet look alike, and a factor may leave
its digit for the other. This counts how often, on the held-out sequences the probes are
scored on.

**Which digit a factor follows** (``probe_positions``, ``followed_digits``). Every factor
matched to a digit by the position probes gets a probe of its own (ridge, or the MLP of
``--probe``, on standardised inputs and targets) from its posterior mean at step t to its
matched digit's position (x, y) at step t, fitted on the alignment's fitting half of the
sequences, at every step (a position needs no velocity, and step 1 is where a factor first
takes its digit), and applied to the other half. At each step the factor **follows** the
digit whose true position is nearest its predicted one. The probe learns the map from the
factor's code to a position on the frames where the factor holds its matched digit; where it
holds the other digit, its prediction lands on that one.

**Crossings** (``crossings``). Digits a and b cross while their centres are closer than
``CROSSING`` (half) of the digit box: 14 pixels at 64×64, 7 at 32×32, where the digits
overlap. (Positions are box corners and every digit has the same box, so the distance of the
corners is that of the centres.) A crossing is a maximal run of such steps of one pair; it is
counted only with a step before it and a step after it in the sequence, to compare.

**Swaps** (``identity_swaps``). A crossing of a and b **swaps identity** when some followed
factor follows a at the step before it and b at the step after it, or b then a. Each crossing
counts once, however many factors change (two factors exchanging their digits are one swap).
The steps inside a crossing are not read: there the nearer digit is a coin toss.
``swaps_per_crossing`` is swapped crossings / crossings (None, n/a, without a crossing), and
``consistent_share`` the share of sequences in which every followed factor follows one digit
at every step at which no two digits are closer than the threshold, first to last.

The untrained floor is measured the same way: its probes read almost nothing, so its
predictions sit near the mean position and which digit is nearer is close to chance.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .alignment import fit_score_split, regressor, standardise

CROSSING = 0.5  # digits cross while their centres are closer than this share of the digit box


def probe_positions(
    features: np.ndarray,
    positions: np.ndarray,
    groups: list[np.ndarray],
    assignment: list[list[int]],
    seed: int = 0,
    model: str = "ridge",
) -> tuple[np.ndarray, np.ndarray]:
    """Each matched factor's predicted position of its digit at every step of the scored half.

    Args:
        features: posterior means (N, T, D).
        positions: true positions (N, T, O, 2), in pixels.
        groups: the units of each factor.
        assignment: ``[factor, digit]`` pairs (``alignment_summary``).
        seed, model: the alignment's fit/score split and probe.

    Returns:
        predicted positions (n, T, M, 2) of the M matched factors, in pixels, and the indices
        (n,) of the scored sequences they are of.
    """
    fit, score = fit_score_split(len(features), seed)
    T = features.shape[1]
    predicted = []
    for k, o in assignment:
        x, d = features[..., groups[k]], len(groups[k])  # (N, T, d_k)
        x_fit, x_score = standardise(x[fit].reshape(-1, d), x[score].reshape(-1, d))
        y_fit = positions[fit, :, o].reshape(-1, 2)  # (n_fit T, 2)
        mean, std = y_fit.mean(0), np.where(y_fit.std(0) > 0, y_fit.std(0), 1.0)
        probe = regressor(model, seed).fit(x_fit, (y_fit - mean) / std)
        predicted.append((probe.predict(x_score) * std + mean).reshape(len(score), T, 2))
    return np.stack(predicted, 2), score


def followed_digits(predicted: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The digit (n, T, M) whose true position (n, T, O, 2) is nearest each factor's predicted
    position (n, T, M, 2)."""
    distance = np.linalg.norm(predicted[:, :, :, None] - positions[:, :, None], axis=-1)
    return distance.argmin(-1)  # (n, T, M) over the O digits


def close_steps(positions: np.ndarray, threshold: float) -> np.ndarray:
    """(n, T): whether some two digits' centres are closer than ``threshold`` pixels."""
    close = np.zeros(positions.shape[:2], dtype=bool)
    for a, b in combinations(range(positions.shape[2]), 2):
        close |= np.linalg.norm(positions[:, :, a] - positions[:, :, b], axis=-1) < threshold
    return close


def crossings(positions: np.ndarray, threshold: float) -> list[tuple[int, int, int, int, int]]:
    """``(sequence, a, b, first, last)`` for every crossing of digits a < b in positions
    (n, T, O, 2): a maximal run of steps first..last at which their centres are closer than
    ``threshold``, with a step before it and one after it."""
    T = positions.shape[1]
    found = []
    for a, b in combinations(range(positions.shape[2]), 2):
        close = np.linalg.norm(positions[:, :, a] - positions[:, :, b], axis=-1) < threshold
        edges = np.diff(np.pad(close.astype(int), ((0, 0), (1, 1))), axis=1)  # (n, T + 1)
        # a run starts where edges is +1 and ends before the next -1; row-major order pairs them
        for (n, first), (_, end) in zip(np.argwhere(edges == 1), np.argwhere(edges == -1)):
            if first > 0 and end < T:
                found.append((int(n), a, b, int(first), int(end) - 1))
    return found


def identity_swaps(follows: np.ndarray, positions: np.ndarray, threshold: float) -> dict:
    """Crossings, swaps and consistent sequences (see the module docstring) from the digit
    each factor follows (n, T, M) and the true positions (n, T, O, 2)."""
    events = crossings(positions, threshold)
    swaps = 0
    for n, a, b, first, last in events:
        before, after = follows[n, first - 1], follows[n, last + 1]  # (M,)
        swaps += bool(np.any(((before == a) & (after == b)) | ((before == b) & (after == a))))
    apart = ~close_steps(positions, threshold)  # (n, T)
    consistent = [
        all(len(np.unique(follows[n, apart[n], m])) <= 1 for m in range(follows.shape[2]))
        for n in range(len(follows))
    ]
    return {
        "threshold_pixels": float(threshold),
        "sequences": len(follows),
        "crossings": len(events),
        "swaps": swaps,
        "swaps_per_crossing": swaps / len(events) if events else None,
        "consistent_share": float(np.mean(consistent)),
    }
