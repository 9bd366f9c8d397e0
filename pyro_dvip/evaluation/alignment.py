"""Do factors become objects? Probes and an intervention against Moving MNIST ground truth.

**Probes.** For every factor k and digit o, a ridge regression (alpha 1 on standardised
inputs and targets) from factor k's posterior mean at step t to targets of digit o at step t
is fitted on half of the held-out sequences and scored on the other half: R^2[k, o], the mean
over the targets of the held-out coefficient of determination. ``evaluate`` headlines the
digit's position (x, y) and reports velocity (vx, vy) and all four beside it: positions are
linearly decodable from a trained model's posterior mean, velocities much less, and an average
over both would cap R^2 for a perfectly aligned model. Steps t >= 2 only: one frame shows no
velocity. A probe from the whole latent gives ``whole_r2[o]``: near 0 means digit o was not
encoded at all (a dropped object).

**Reading the probe matrix** (``alignment_summary``). Factors are matched to digits by
``linear_sum_assignment`` on R^2. For a matched factor, ``matched`` is R^2 on its digit and
``leakage`` the largest R^2 of that factor on any other digit. Aligned: high matched, low
leakage. A mixed factor: matched and leakage both high. An entangled model split into halves
scores a high matched R^2 from any half, so its leakage, not its matched R^2, separates it
from an aligned model. Judge alignment by the gap matched - leakage, against the untrained
floor measured with this same probe.

**Non-linear probes** (``model="mlp"``, ``dvip evaluate --probe mlp``). A linear probe cannot
tell a dropped digit from one coded non-linearly (a factor that costs KL while every ridge
probe reads ~0). The MLP probe (two hidden layers of 64, ReLU, L2 1e-3, early stopping on a
tenth of the fit half) reads any smooth code; it can also read more than ridge from an
untrained model's random features, so only its own floor means anything.

DCI-style scores (Eastwood & Williams 2018) use max(R^2, 0) as the importance of factor k
for digit o: disentanglement is 1 minus the entropy (base O) of each factor's importances
over digits, weighted by the factor's share of importance; completeness is 1 minus the
entropy (base K) of each digit's importances over factors, averaged over digits. Both are 1
for a one-to-one map and 0 when everything is mixed.

**Intervention** (``intervention``). Swap factor k between two sequences, decode, and
measure where the change in the image lands: ``fractions[k, c]`` is the share of the summed
squared change in colour channel c. Digit o is drawn in channel o, so an aligned factor puts
most of its change into one digit's channel. With fewer channels than digits (``--channels
1``: every digit in one channel) a channel names no digit, and the test does not apply
(``SHARED_CHANNEL``).

**Slots** (``slot_alignment``). A factor can hold "the leftmost digit" instead of one digit:
per frame it reads the position of whichever digit is left, and when two digits of one colour
cross in x it passes from one to the other. Against the digits' identities such a factor reads
each digit for half the time (matched R^2 near 0.3), which looks like a weakly encoded digit.
The same probes fitted against the positions **sorted per frame** by x (slot 0 the leftmost
digit), or by y, show it: a slot code reads its slots well. Colour channels give identity for
free, so slots are a failure of same-coloured objects (``--channels 1``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPRegressor

from .mutual_info import random_partition
from .options import PROBE_MODELS

COORDINATES = ("x", "y", "vx", "vy")  # the last axis of ground_truth_targets


def ground_truth_targets(positions: torch.Tensor, velocities: torch.Tensor) -> np.ndarray:
    """Per-digit probe targets (N, T, O, 4): position (x, y) and velocity (vx, vy)."""
    return torch.cat([positions, velocities], -1).cpu().numpy()


def standardise(fit: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays standardised by the fitting array's mean and standard deviation."""
    mean, std = fit.mean(0), fit.std(0)
    std = np.where(std > 0, std, 1.0)
    return (fit - mean) / std, (score - mean) / std


def fit_score_split(num_sequences: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sequences the probes are fitted on and those they are scored on: a seeded half each."""
    order = np.random.default_rng(seed).permutation(num_sequences)
    return order[: num_sequences // 2], order[num_sequences // 2 :]


def regressor(model: str, seed: int):
    """An unfitted probe of kind ``model`` (``PROBE_MODELS``), on standardised inputs."""
    if model == "ridge":
        return Ridge(alpha=1.0)
    return MLPRegressor(
        hidden_layer_sizes=(64, 64), alpha=1e-3, max_iter=500, early_stopping=True,
        random_state=seed,
    )  # fmt: skip


class Probe:
    """Held-out ridge or MLP probes on one fit/score split of sequences (see the module docstring).

    Args:
        features: latents (N, T, D), e.g. posterior means laid out factor by factor.
        targets: (N, T, O, F) ground truth per digit.
        seed: picks which half of the sequences fits the probes (and seeds the MLP).
        model: ``"ridge"`` or ``"mlp"`` (``PROBE_MODELS``).
    """

    def __init__(self, features, targets, seed: int = 0, model: str = "ridge"):
        N = len(features)
        if N < 4:
            raise ValueError(f"probes: need at least 4 held-out sequences, got {N}")
        if model not in PROBE_MODELS:
            raise ValueError(f"probe: unknown {model!r}; choose from {', '.join(PROBE_MODELS)}")
        self.model, self.seed = model, seed
        fit, score = fit_score_split(N, seed)

        def samples(array, rows):  # (len(rows) (T - 1), -1): steps t >= 2
            return array[rows, 1:].reshape(len(rows) * (array.shape[1] - 1), -1)

        self.x_fit, self.x_score = samples(features, fit), samples(features, score)
        self.num_objects, self.num_targets = targets.shape[2], targets.shape[3]
        y_fit, y_score = samples(targets, fit), samples(targets, score)
        self.y_fit, self.y_score = standardise(y_fit, y_score)

    def r2(self, units: np.ndarray, obj: int) -> float:
        """Held-out R^2 of a probe from the latent ``units`` to digit ``obj``."""
        x_fit, x_score = standardise(self.x_fit[:, units], self.x_score[:, units])
        cols = slice(obj * self.num_targets, (obj + 1) * self.num_targets)
        probe = regressor(self.model, self.seed)
        y_fit, y_score = self.y_fit[:, cols], self.y_score[:, cols]
        probe.fit(x_fit, y_fit[:, 0] if y_fit.shape[1] == 1 else y_fit)  # sklearn: 1-d y
        return float(r2_score(y_score, probe.predict(x_score).reshape(y_score.shape)))

    def matrix(self, groups: list[np.ndarray]) -> np.ndarray:
        """R^2[k, o] for unit groups (K,) and every digit: (K, O)."""
        return np.array([[self.r2(g, o) for o in range(self.num_objects)] for g in groups])

    def whole(self) -> np.ndarray:
        """R^2 from the whole latent to each digit: (O,)."""
        units = np.arange(self.x_fit.shape[1])
        return np.array([self.r2(units, o) for o in range(self.num_objects)])


def coordinate_r2(
    features: np.ndarray, targets: np.ndarray, groups: list[np.ndarray], seed: int = 0,
    model: str = "ridge",
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One probe per coordinate of every digit: R^2[k, o, c] of unit group k on coordinate c
    (``COORDINATES``) of digit o, shape (K, O, C), and from the whole latent, (O, C).

    Shows *how* a factor mixes digits. In the paper's box each axis of each digit bounces on
    its own, so a factor holding the x of every digit (an axis split) predicts itself as well as
    a digit does; by position it scores about 0.5 on every digit, by coordinate ~1 on every x
    and ~0 on every y.
    """
    N, T, objects, C = targets.shape
    probe = Probe(features, targets.reshape(N, T, objects * C, 1), seed=seed, model=model)
    return probe.matrix(groups).reshape(len(groups), objects, C), probe.whole().reshape(objects, C)


SLOT_AXES = ("x", "y")  # the coordinate the digits are sorted by in ``slot_alignment``


def slot_targets(positions: np.ndarray, axis: int) -> np.ndarray:
    """Positions (N, T, O, 2) with the O digits sorted per frame by coordinate ``axis`` (0: x,
    1: y): slot 0 holds the leftmost (topmost) digit's (x, y) at each step."""
    order = np.argsort(positions[..., axis], axis=-1, kind="stable")  # (N, T, O)
    return np.take_along_axis(positions, order[..., None], axis=2)


def slot_alignment(
    features: np.ndarray, positions: np.ndarray, groups: list[np.ndarray], seed: int = 0,
    model: str = "ridge",
) -> dict:  # fmt: skip
    """Position probes of every unit group against the slots of each axis (``slot_targets``):
    ``{axis name: {"r2": (K, O), "assignment", "min_matched", "max_leakage"}}``."""
    slots = {}
    for axis, name in enumerate(SLOT_AXES):
        probe = Probe(features, slot_targets(positions, axis), seed=seed, model=model)
        r2 = probe.matrix(groups)
        summary = alignment_summary(r2)
        slots[name] = {
            "r2": r2.tolist(),
            **{key: summary[key] for key in ("assignment", "min_matched", "max_leakage")},
        }
    return slots


def _entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of distributions along the last axis, in the given base (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(-1) / np.log(base)


def alignment_summary(r2: np.ndarray) -> dict:
    """Matching, matched R^2, leakage and DCI-style scores of a probe matrix (K, O)."""
    K, O = r2.shape  # noqa: E741 (the paper's letters: factors, objects)
    factors, objects = linear_sum_assignment(-r2)
    matched = r2[factors, objects]
    leakage = np.array(
        [np.delete(r2[k], o).max() if O > 1 else np.nan for k, o in zip(factors, objects)]
    )
    off_match = np.ones_like(r2, dtype=bool)
    off_match[factors, objects] = False

    importance = np.clip(r2, 0.0, None)
    total = importance.sum()
    disentanglement = completeness = float("nan")
    if total > 0 and O > 1:
        rows = importance.sum(1)
        p = importance / np.where(rows > 0, rows, 1.0)[:, None]
        disentanglement = float(((1 - _entropy(p, O)) * rows / total).sum())
    if total > 0 and K > 1:
        cols = importance.sum(0)
        p = (importance / np.where(cols > 0, cols, 1.0)).T  # (O, K)
        completeness = float(np.mean(np.where(cols > 0, 1 - _entropy(p, K), 0.0)))
    return {
        "assignment": [[int(k), int(o)] for k, o in zip(factors, objects)],
        "matched": matched.tolist(),
        "leakage": leakage.tolist(),
        "gap": (matched - leakage).tolist(),
        "min_matched": float(matched.min()),
        "max_leakage": float(r2[off_match].max()) if off_match.any() else float("nan"),
        "mean_gap": float(np.mean(matched - leakage)),
        # The mean can look fine while one digit is dropped; the smallest gap cannot.
        "min_gap": float(np.min(matched - leakage)),
        "disentanglement": disentanglement,
        "completeness": completeness,
    }


def best_probe_partition(
    probe: Probe, dim: int, group_size: int, partitions: int = 20, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """For a model without factors: of ``partitions`` random splits into groups of
    ``group_size``, the one most favourable to it (largest mean gap matched - leakage, on the
    scored half: it gets every chance). Returns the split, its R^2 matrix and every score."""
    rng = np.random.default_rng(seed)
    best, scores = None, []
    for _ in range(partitions):
        groups = random_partition(dim, group_size, rng)
        r2 = probe.matrix(groups)
        scores.append(alignment_summary(r2)["mean_gap"])
        if best is None or scores[-1] > max(scores[:-1]):
            best = (groups, r2)
    return best[0], best[1], scores


@torch.no_grad()
def intervention(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    groups: list[np.ndarray],
    pairs: int = 256,
    seed: int = 0,
) -> dict:
    """Swap each unit group between random pairs of latents z (n, D); decode to (n, C, H, W).

    Returns ``fractions`` (K, C), the share of squared change in each channel, and
    ``change`` (K,), the mean squared change per pixel (near 0: the factor does nothing, and
    its fractions mean little).
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(len(z), (pairs,), generator=g)
    b = (a + torch.randint(1, len(z), (pairs,), generator=g)) % len(z)  # b != a
    base = decode(z[a])
    fractions, change = [], []
    for units in groups:
        swapped = z[a].clone()
        index = torch.as_tensor(units)
        swapped[:, index] = z[b][:, index]
        energy = (decode(swapped) - base).pow(2).sum((0, 2, 3))  # (C,)
        fractions.append((energy / energy.sum().clamp_min(1e-12)).tolist())
        change.append(energy.sum().item() / (pairs * base[0].numel()))
    return {"pairs": pairs, "fractions": fractions, "change": change}


def intervention_summary(fractions: np.ndarray, num_objects: int) -> dict:
    """Match factors to digit channels on ``fractions`` (K, C): per matched factor the share
    of its change in its digit's channel."""
    share = np.asarray(fractions)[:, :num_objects]
    factors, objects = linear_sum_assignment(-share)
    return {
        "assignment": [[int(k), int(o)] for k, o in zip(factors, objects)],
        "matched_share": share[factors, objects].tolist(),
        "min_matched_share": float(share[factors, objects].min()),
    }


NO_GROUND_TRUTH = "not applicable: no ground truth"
# Digits drawn in fewer colour channels than there are digits (--channels 1), or discs drawn in
# RGB (--scene discs): no channel is one object's, so nothing may read an object from its channel.
SHARED_CHANNEL = "not applicable: objects share a colour channel"


def not_applicable(reason: str, cause: str = NO_GROUND_TRUTH) -> dict:
    """The record of a measurement the data do not allow: by default one needing ground truth
    on data without it (real video); ``cause`` names another (``SHARED_CHANNEL``)."""
    return {"applicable": False, "note": f"{cause} ({reason})"}
