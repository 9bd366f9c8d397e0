"""Identity as multi-object tracking measures it: each factor's track against the objects'
centres, scored by py-motmetrics (MOTA, IDF1, identity switches).

**Tracks.** A decoder that draws each factor on its own (``num_parts > 1``: ``--decoder
additive`` or ``composite``, or one that reads an appearance per factor) gives factor k's
position at a frame as the **centre of mass of what it draws** at the filtered posterior mean:
its mask where the decoder has masks, else its layer summed over colour channels, less the
map's median pixel (the level a layer leaves everywhere, which would pull every centre towards
the middle of the frame) and clipped at 0. The paper's decoder draws the factors together, so
its tracks are the position probes' read-outs of the factors matched to objects
(``identity.probe_positions``), on the probes' scored half of the sequences.

**Hypotheses.** A factor that draws almost nothing at a frame is not a hypothesis there, or an
unused factor's faint noise would count as false positives: it must draw at least ``PRESENT``
of one object's mass, the mass all factors draw together, averaged over the frames, divided by
the number of objects. A probe's read-out is a hypothesis at every frame.

**Scores** (``tracking_scores``). Objects are the true centres of the objects' boxes; a track
and an object can be matched while they are within ``MATCH`` of the object box. py-motmetrics
matches them frame by frame, keeping last frame's matches where still within reach
(Bernardin & Stiefelhagen 2008), over all sequences, each a track of its own:
MOTA = 1 − (misses + false positives + identity switches) / object-frames, IDF1 = 2 IDTP /
(object-frames + hypothesis-frames) with the identity matching of Ristani et al. 2016 (one track
per object over a whole sequence), and the identity switches, also per 100 object-frames. Two
factors that exchange their objects are two switches, one per object.

**References** that read no model: a perfect slot code (``slot_code_scores``) and what motion
alone keeps (``motion_code_scores``: the true centres associated frame to frame by position, or
by position and a constant velocity).
"""

from __future__ import annotations

import motmetrics as mm
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

MATCH = 0.5  # a track matches an object within this share of the object box (pixels)
PRESENT = 0.1  # a factor is a hypothesis where it draws this share of one object's mass
CHUNK = 64  # sequences per motmetrics accumulator: one accumulator per sequence is slow


def object_centres(positions: np.ndarray, box: int) -> np.ndarray:
    """The centres (N, T, O, 2) of the objects' boxes, in the pixel coordinates of a centre of
    mass (pixel i at i), from their top-left corners ``positions`` (N, T, O, 2) as (x, y)."""
    return positions + (box - 1) / 2


def drawn_weights(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """What each factor draws at each pixel (N, K, H, W), from ``decoder.parts(z)``: the masks
    (N, K, 1, H, W) where there are, else the layers (N, K, C, H, W) summed over channels; less
    each map's median, clipped at 0."""
    drawn = parts["masks"] if "masks" in parts else parts["layers"]
    drawn = drawn.sum(2)  # (N, K, H, W)
    level = drawn.flatten(2).median(-1).values[..., None, None]  # (N, K, 1, 1)
    return (drawn - level).clamp(min=0)


def centres_of_mass(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (N, K, 2) as (x, y) = (column, row) and masses (N, K) of maps (N, K, H, W); a
    map of no mass has its centre at NaN."""
    H, W = weights.shape[-2:]
    mass = weights.sum((-2, -1))  # (N, K)
    x = (weights.sum(-2) * torch.arange(W, dtype=weights.dtype)).sum(-1) / mass
    y = (weights.sum(-1) * torch.arange(H, dtype=weights.dtype)).sum(-1) / mass
    return torch.stack([x, y], -1), mass


@torch.no_grad()
def decoder_tracks(
    decoder, means: torch.Tensor, appearance: torch.Tensor | None = None, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Each factor's centre of mass (N, T, K, 2) and drawn mass (N, T, K) at the filtered means
    (N, T, D) of N sequences; ``appearance`` (N, K, A), for a decoder that reads one, is each
    factor's appearance for the whole sequence."""
    N, T = means.shape[:2]
    centres, masses = [], []
    for start in range(0, N, max(1, batch_size // T)):
        z = means[start : start + max(1, batch_size // T)]  # (n, T, D)
        args = (z.flatten(0, 1),)  # (n T, D), rows ordered (sequence, step)
        if appearance is not None:
            args += (appearance[start : start + len(z)].repeat_interleave(T, 0),)  # (n T, K, A)
        centre, mass = centres_of_mass(drawn_weights(decoder.parts(*args)).float().cpu())
        centres.append(centre.view(len(z), T, -1, 2))
        masses.append(mass.view(len(z), T, -1))
    return torch.cat(centres).numpy(), torch.cat(masses).numpy()


def object_order(tracks: np.ndarray, present: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Per sequence, the objects in the order of the factors that track them: (N, O) indices.

    Objects that nothing but their own history tells apart (one colour) have an arbitrary index
    in the data, so a probe that maps factor k to object o across sequences cannot be met by
    any model. Per sequence, factors and objects are matched (Hungarian) on the mean distance
    of the factor's track (N, T, K, 2) from the object's centre (N, T, O, 2) over the frames
    where the factor draws (``present`` (N, T, K); a factor that never does costs the most);
    the matched objects come first, in their factors' order, then the others as they were."""
    N, num_objects = len(tracks), centres.shape[2]
    distance = np.linalg.norm(tracks[:, :, :, None] - centres[:, :, None], axis=-1)  # N T K O
    weight = present[..., None].astype(float)
    frames = weight.sum(1)  # (N, K, 1)
    cost = np.where(frames > 0, (distance * weight).sum(1) / np.maximum(frames, 1), np.inf)
    cost = np.nan_to_num(cost, posinf=1e9)
    order = np.empty((N, num_objects), dtype=int)
    for n in range(N):
        factors, objects = linear_sum_assignment(cost[n])  # factors in increasing order
        rest = [o for o in range(num_objects) if o not in set(objects)]
        order[n] = np.concatenate([objects, rest]).astype(int)
    return order


def hypotheses(masses: np.ndarray, num_objects: int) -> np.ndarray:
    """(N, T, K): whether factor k draws at least ``PRESENT`` of one object's mass at a frame,
    one object's mass being the mean over frames of all factors' mass over ``num_objects``."""
    one_object = masses.sum(-1).mean() / num_objects
    return (masses >= PRESENT * one_object) & (masses > 0)  # no mass, no centre


def slot_code_scores(centres: np.ndarray, threshold: float) -> dict:
    """What a perfect slot code scores, for reference: tracks that are the objects' centres
    (N, T, O, 2) sorted per frame along x (track 0 the leftmost object), and along y; each the
    ``mota``, ``idf1`` and ``id_switches_per_100`` of ``tracking_scores``. No model is read: a
    model's scores near these are those of a slot code."""
    out = {}
    for axis, name in enumerate("xy"):
        order = np.argsort(centres[..., axis], axis=2, kind="stable")
        slots = np.take_along_axis(centres, order[..., None], axis=2)
        scores = tracking_scores(slots, np.ones(slots.shape[:3], dtype=bool), centres, threshold)
        out[name] = {k: scores[k] for k in ("mota", "idf1", "id_switches_per_100")}
    return out


def motion_code_scores(centres: np.ndarray, threshold: float) -> dict:
    """What motion alone keeps, for reference: tracks that are the objects' true centres (N,
    T, O, 2) with their identity dropped at every frame after the first, and restored by
    associating each frame's centres with the tracks' predicted positions (Hungarian, least
    summed distance). ``nearest``: the prediction is the track's last position; ``velocity``:
    its last position plus its last step (from the third frame; at the second, the last
    position: one frame shows no velocity). Each the ``mota``, ``idf1`` and
    ``id_switches_per_100`` of ``tracking_scores``. No model is read: a perfect detector
    whose objects look the same, followed by a filter that knows positions (``nearest``) or
    positions and constant velocities (``velocity``)."""
    N, T, objects = centres.shape[:3]
    out = {}
    for name in ("nearest", "velocity"):
        tracks = np.empty_like(centres)
        tracks[:, 0] = centres[:, 0]
        for t in range(1, T):
            predicted = tracks[:, t - 1]
            if name == "velocity" and t >= 2:
                predicted = 2 * tracks[:, t - 1] - tracks[:, t - 2]
            cost = np.linalg.norm(predicted[:, :, None] - centres[:, t, None], axis=-1)  # N O O
            for n in range(N):
                _, taken = linear_sum_assignment(cost[n])  # track j takes object taken[j]
                tracks[n, t] = centres[n, t, taken]
        scores = tracking_scores(tracks, np.ones((N, T, objects), dtype=bool), centres, threshold)
        out[name] = {k: scores[k] for k in ("mota", "idf1", "id_switches_per_100")}
    return out


def tracking_scores(
    tracks: np.ndarray, present: np.ndarray, centres: np.ndarray, threshold: float
) -> dict:
    """MOTA, IDF1 and identity switches (module docstring) of tracks (N, T, K, 2), hypotheses
    where ``present`` (N, T, K), against object centres (N, T, O, 2), matched within
    ``threshold`` pixels."""
    N, T, K = present.shape
    objects = centres.shape[2]
    accumulators = []
    for first in range(0, N, CHUNK):
        accumulator = mm.MOTAccumulator()
        for n in range(first, min(N, first + CHUNK)):  # ids unique to a sequence
            for t in range(T):
                seen = np.flatnonzero(present[n, t])
                distances = mm.distances.norm2squared_matrix(
                    centres[n, t], tracks[n, t, seen], max_d2=threshold**2
                )
                accumulator.update(
                    (n * objects + np.arange(objects)).tolist(), (n * K + seen).tolist(),
                    distances.reshape(objects, len(seen)), frameid=n * T + t,
                )  # fmt: skip
        accumulators.append(accumulator)
    names = ["mota", "idf1", "num_switches", "num_misses", "num_false_positives",
             "num_objects", "num_predictions"]  # fmt: skip
    host = mm.metrics.create()  # compute_many would do the same and log its timings
    partials = [
        host.compute(accumulator, metrics=names, return_cached=True, return_dataframe=False)
        for accumulator in accumulators
    ]
    overall = host.compute_overall(partials, metrics=names, return_dataframe=False)
    switches = int(overall["num_switches"])
    object_frames = int(overall["num_objects"])
    return {
        "threshold_pixels": float(threshold),
        "sequences": N,
        "object_frames": object_frames,
        "hypothesis_frames": int(overall["num_predictions"]),
        "mota": float(overall["mota"]),
        "idf1": float(overall["idf1"]),
        "id_switches": switches,
        "id_switches_per_100": 100 * switches / object_frames,
        "misses": int(overall["num_misses"]),
        "false_positives": int(overall["num_false_positives"]),
    }
