"""``evaluate``: every measurement on a trained run and on its untrained floor.

The untrained floor is a freshly initialised model of the same configuration (seeded with
``seed``), measured with exactly the same code, data and probes. A number means something only
by its distance from the floor: probes on standardised random features are not 0.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..build import RunError, build_model, load
from ..config import TrainConfig
from ..data import MovingMNISTBatch
from ..data.discs import disc_box
from ..data.moving_mnist import digit_box
from ..model import DVIP
from .alignment import (
    COORDINATES,
    SHARED_CHANNEL,
    Probe,
    alignment_summary,
    best_probe_partition,
    coordinate_r2,
    ground_truth_targets,
    intervention,
    intervention_summary,
    not_applicable,
    slot_alignment,
)
from .appearance import appearance_swap
from .bound import held_out_bound
from .correlation import block_summary, lagged_correlation
from .generations import (
    factor_layers,
    factor_rollouts,
    independent_generations,
    prior_samples,
    reconstructions,
)
from .held_out import held_out_data
from .identity import CROSSING, close_steps, followed_digits, identity_swaps, probe_positions
from .mutual_info import MIN_PAIRS, best_partition, contiguous_groups, factor_mi
from .object_score import object_score
from .options import PROBE_TARGETS, EvalOptions
from .outcome import MODELS, NUMERICAL_ERRORS, failed, has, is_failed, made, not_computable
from .outputs import write_csvs, write_figures, write_metrics
from .posterior import consecutive_pairs, filter_sequences
from .prediction import prediction_scores
from .report import write_report
from .scene import factor_scene
from .tracking import (
    MATCH,
    PRESENT,
    decoder_tracks,
    hypotheses,
    motion_code_scores,
    object_centres,
    object_order,
    slot_code_scores,
    tracking_scores,
)
from .verdict import BLOCKS, alignment_verdict, unused_factors

IDENTITY_SHOWN = 8  # scored sequences drawn in identity.png


def object_box(config: TrainConfig) -> int:
    """The side in pixels of one object's box: a digit's, or a disc's diameter."""
    return (disc_box if config.scene == "discs" else digit_box)(config.image_size)


def _own_groups(dvip: DVIP, config: TrainConfig, options: EvalOptions) -> tuple[list, str | None]:
    """The model's unit groups and what they are: its prior's factors, or, for a one-factor
    prior with a per-factor decoder (``--entangled --decoder additive``), the decoder's blocks;
    else contiguous groups of ``--groups`` units and None (a protocol chooses the groups).
    Raises ``ValueError`` when that size does not divide the latent."""
    blocks = max(dvip.num_factors, dvip.decoder.num_parts)
    if blocks > 1:
        what = "factors" if dvip.num_factors > 1 else BLOCKS
        return contiguous_groups(dvip.z_dim, dvip.z_dim // blocks), what
    return contiguous_groups(dvip.z_dim, options.group_size or config.factor_dim), None


def _mutual_info(dvip, config, options, z_t, z_next, metrics, arrays) -> list:
    """Table 2's MI and Figure 2's correlation on the pairs (z_t, z_next) into ``metrics`` and
    ``arrays``; returns the unit groups: the model's own, or the paper's best random partition
    of a one-factor model."""
    groups, protocol = _own_groups(dvip, config, options)
    partition = {}
    if protocol is None and len(groups[0]) == dvip.z_dim:
        protocol = "one group"
    elif protocol is None:
        groups, partition["scores"] = best_partition(
            z_t, z_next, len(groups[0]), options.partitions, options.select_pairs, seed=options.seed
        )
        protocol = f"best of {options.partitions} random partitions"
    mi = factor_mi(z_t, z_next, groups, bootstrap=options.bootstrap, seed=options.seed)
    metrics["mutual_info"] = {
        **mi,
        "protocol": protocol,
        **partition,
        "units": [g.tolist() for g in groups],
    }
    arrays["mi_matrix"] = np.array(mi["matrix"])
    _correlation(z_t, z_next, groups, metrics, arrays)
    return groups


def _correlation(z_t, z_next, groups, metrics, arrays) -> None:
    """Figure 2's lagged correlation, units laid out group by group so that blocks show."""
    order = np.concatenate(groups)
    corr = lagged_correlation(z_t[:, order], z_next[:, order])
    size = len(groups[0])
    summary = block_summary(corr, contiguous_groups(len(order), size))
    metrics["correlation"] = {**summary, "pairs": len(z_t)}
    arrays["correlation"], arrays["group_size"] = corr, size


def _latents_to_decode(dvip: DVIP, posterior, which: str, groups: list):
    """Each frame's latents (N T, D), the ``groups`` of their units and the decoder as one
    function of them; for a model with an appearance per factor, a^k's posterior mean joins
    each frame's latents, in factor k's group (a factor is its state and its appearance)."""
    z_all = posterior.flat(which).flatten(0, 1)  # (N T, D)
    if posterior.appearance is None:
        return z_all, groups, lambda z: dvip.render(z)
    T, D = posterior.means.shape[1], dvip.z_dim
    a = posterior.appearance.repeat_interleave(T, 0).flatten(1)  # (N T, K A)
    units = groups  # a split of an entangled factor: the appearances stay with their frame
    if dvip.num_factors == len(groups) == posterior.appearance.shape[1]:
        A = posterior.appearance.shape[2]
        units = [np.concatenate([g, D + k * A + np.arange(A)]) for k, g in enumerate(groups)]
    return torch.cat([z_all, a], 1), units, lambda v: dvip.render(v[:, :D], v[:, D:])


def _object_score(dvip: DVIP, posterior, groups: list, protocol: str, options) -> dict:
    """Label-free: the decoder's Jacobian at posterior samples, grouped like the MI."""
    if dvip.appearance_dim:
        return not_computable("the spatial transformer (grid_sample) has no forward-mode "
                              "derivative in PyTorch, which the Jacobian is taken by")  # fmt: skip
    z_all, units, decode = _latents_to_decode(dvip, posterior, "samples", groups)
    pick = np.random.default_rng(options.seed).permutation(len(z_all))[: options.contrast_frames]
    return {
        **object_score(decode, z_all[torch.as_tensor(pick)], units),
        "groups": protocol,
        "units": [g.tolist() for g in groups],
    }


def _alignment(dvip, config, data, posterior, options, metrics, arrays) -> list:
    """Probes and intervention against the ground truth of ``data`` into ``metrics`` and
    ``arrays``; returns the unit groups probed: the model's own, or the split of a one-factor
    model most favourable to it."""
    features = posterior.flat("means").cpu().numpy()  # (N, T, D)
    targets = ground_truth_targets(data.positions, data.velocities)  # (N, T, O, 4)
    # Every target set on the same groups: positions are usually linearly decodable and
    # velocities much less (docs/results.md), so their average hides aligned positions.
    probes = {
        name: Probe(features, targets[..., part], seed=options.seed, model=options.probe)
        for name, part in PROBE_TARGETS.items()
    }
    groups, protocol = _own_groups(dvip, config, options)
    if protocol is None:
        groups, _, _ = best_probe_partition(
            probes[options.probe_targets], dvip.z_dim, len(groups[0]), options.partitions,
            seed=options.seed,
        )  # fmt: skip
        protocol = f"most favourable of {options.partitions} random partitions"
    by_target = {
        name: {"r2": probe.matrix(groups).tolist(), "whole_r2": probe.whole().tolist()}
        for name, probe in probes.items()
    }
    r2 = np.array(by_target[options.probe_targets]["r2"])
    r2_coordinates, whole_coordinates = coordinate_r2(
        features, targets, groups, options.seed, options.probe
    )
    a = metrics["alignment"] = {
        "protocol": protocol,
        "targets": options.probe_targets,
        "probe": options.probe,
        "units": [g.tolist() for g in groups],
        "r2": r2.tolist(),
        "whole_r2": by_target[options.probe_targets]["whole_r2"],
        **alignment_summary(r2),
        "by_target": by_target,
        "by_coordinate": {
            "coordinates": list(COORDINATES),
            "r2": r2_coordinates.tolist(),
            "whole_r2": whole_coordinates.tolist(),
        },
    }
    if config.num_digits > 1:  # does a factor hold "the leftmost digit" instead of one digit?
        a["by_slot"] = slot_alignment(
            features, data.positions.cpu().numpy(), groups, options.seed, options.probe
        )
    if protocol == "factors" and has(metrics, "bound"):
        # the prior's factors are the probed groups: their KL tells an unused factor (verdict.py)
        a["kl_per_factor_per_frame"] = metrics["bound"]["kl_per_factor_per_frame"]
    verdict = alignment_verdict(a)  # the documented target, in one word
    a.update(verdict=verdict["verdict"], verdict_reason=verdict["reason"], unused=unused_factors(a))
    arrays["r2"] = r2
    _intervention(dvip, config, posterior, groups, options, metrics, arrays)
    return groups


def _intervention(dvip, config, posterior, groups, options, metrics, arrays) -> None:
    """Swap each probed group between sequences and see which colour channel changes, where
    each object has a channel of its own."""
    if config.scene == "discs" or config.channels < config.num_digits:
        drawn = (
            "discs drawn in RGB: every disc writes to every channel"
            if config.scene == "discs"
            else f"{config.num_digits} digits drawn in {config.channels} channel: no channel is "
            "one digit's"
        )
        metrics["intervention"] = not_applicable(
            f"{drawn}, and the test reads digit o's change in channel o", SHARED_CHANNEL
        )
        return
    z_flat, units, decode = _latents_to_decode(dvip, posterior, "means", groups)
    swap = intervention(lambda z: decode(z).cpu(), z_flat, units, options.intervention_pairs,
                        options.seed)  # fmt: skip
    fractions = np.array(swap["fractions"])
    metrics["intervention"] = {**swap, **intervention_summary(fractions, config.num_digits)}
    arrays["fractions"] = fractions


def _identity(config, data, posterior, groups, options, metrics, arrays) -> None:
    """Which digit each factor (of the probed ``groups``) matched by position follows, and its
    swaps at crossings (``identity.py``), into ``metrics`` and ``arrays``."""
    if config.num_digits < 2:
        metrics["identity"] = not_applicable(
            "no crossing, no other digit to follow", "not applicable: one digit per sequence"
        )
        return
    # matched on position, whatever the headline probe decodes: a factor follows a position
    position_r2 = np.array(metrics["alignment"]["by_target"]["position"]["r2"])
    assignment = alignment_summary(position_r2)["assignment"]
    features = posterior.flat("means").cpu().numpy()  # (N, T, D)
    positions = data.positions.cpu().numpy()  # (N, T, O, 2)
    predicted, scored = probe_positions(
        features, positions, groups, assignment, options.seed, options.probe
    )
    truth = positions[scored]
    follows = followed_digits(predicted, truth)  # (n, T, M)
    threshold = CROSSING * object_box(config)
    metrics["identity"] = {
        "factors": [k for k, _ in assignment],
        "digits": [o for _, o in assignment],
        "probe": options.probe,
        **identity_swaps(follows, truth, threshold),
    }
    arrays["identity"] = (follows[:IDENTITY_SHOWN], close_steps(truth, threshold)[:IDENTITY_SHOWN])


def draws_factors(dvip: DVIP) -> bool:
    """Whether the decoder draws each factor on its own, so that a factor's track can be read
    from what it draws; else (the paper's decoder) from the position probes."""
    return dvip.decoder.num_parts > 1 or dvip.decoder.appearance_dim > 0


ORDERED = (
    "per sequence, by the factors' tracks: objects of one colour have an arbitrary index in "
    "the data, so each sequence's objects are put in the order of the factors that track them "
    "(matched on the mean distance of track and object) before the probes are fitted"
)


def exchangeable(config: TrainConfig) -> bool:
    """Whether only their own history tells the objects apart: digits sharing a colour channel,
    discs of one colour."""
    if config.scene == "discs":
        return config.disc_colours == "same"
    return config.channels < config.num_digits


def _in_factor_order(dvip, config, data, posterior, options) -> MovingMNISTBatch:
    """``data`` with each sequence's objects in the order of the factors that track them
    (``tracking.object_order``)."""
    appearance = posterior.appearance if dvip.decoder.appearance_dim else None
    tracks, masses = decoder_tracks(
        dvip.decoder, posterior.flat("means"), appearance, options.batch_size
    )
    centres = object_centres(data.positions.cpu().numpy(), object_box(config))
    order = object_order(tracks, hypotheses(masses, config.num_digits), centres)
    index = torch.as_tensor(order, device=data.positions.device)  # (N, O)

    def reorder(t: torch.Tensor | None, axis: int) -> torch.Tensor | None:
        if t is None:
            return None
        shape = [*index.shape[:1]] + [1] * (axis - 1) + [index.shape[1]]
        shape += [1] * (t.dim() - axis - 1)
        return torch.take_along_dim(t, index.view(shape), dim=axis)

    return MovingMNISTBatch(data.frames, reorder(data.positions, 2), reorder(data.velocities, 2),
                            reorder(data.labels, 1), reorder(data.masks, 2))  # fmt: skip


def _scene(dvip, frames, posterior, options, metrics, arrays) -> None:
    """The label-free record (``scene.py``) into ``metrics["scene"]``, and the first
    ``options.examples`` sequences' frames and tracks for the track figures."""
    kl = metrics["bound"].get("kl_per_factor_per_frame") if made(metrics["bound"]) else None
    metrics["scene"], tracks = factor_scene(dvip, frames, posterior, kl, options.batch_size)
    if tracks is not None:
        shown = frames[: options.examples].cpu()
        arrays["tracks"] = (shown, tracks[: options.examples], metrics["scene"]["used"])


def _tracking(dvip, config, data, posterior, groups, options, metrics) -> None:
    """Each factor's track against the objects' centres, scored as multi-object tracking
    (``tracking.py``), into ``metrics``; ``groups`` are the probed groups (the paper's decoder
    is tracked by the probes' read-out)."""
    box = object_box(config)
    positions = data.positions.cpu().numpy()  # (N, T, O, 2) box corners
    if draws_factors(dvip):
        appearance = posterior.appearance if dvip.decoder.appearance_dim else None
        tracks, masses = decoder_tracks(
            dvip.decoder, posterior.flat("means"), appearance, options.batch_size
        )
        present = hypotheses(masses, config.num_digits)
        factors = list(range(tracks.shape[2]))
        source = "centre of mass of what each factor draws"
    else:
        position_r2 = np.array(metrics["alignment"]["by_target"]["position"]["r2"])
        assignment = alignment_summary(position_r2)["assignment"]
        features = posterior.flat("means").cpu().numpy()  # (N, T, D)
        corners, scored = probe_positions(
            features, positions, groups, assignment, options.seed, options.probe
        )
        tracks, positions = object_centres(corners, box), positions[scored]
        present = np.ones(tracks.shape[:3], dtype=bool)
        factors = [k for k, _ in assignment]
        source = f"{options.probe} position probe of each factor matched to an object"
    centres = object_centres(positions, box)
    metrics["tracking"] = {
        "tracks": source,
        "factors": factors,
        "presence_share": PRESENT if draws_factors(dvip) else None,
        **tracking_scores(tracks, present, centres, MATCH * box),
    }
    if config.num_digits > 1:  # the reference of a perfect left/right (top/bottom) slot code
        metrics["tracking"]["slot_code"] = slot_code_scores(centres, MATCH * box)
        metrics["tracking"]["motion_code"] = motion_code_scores(centres, MATCH * box)


def measure(dvip: DVIP, config: TrainConfig, data, options: EvalOptions) -> tuple[dict, dict]:
    """All measurements of one model on held-out ``data`` on the device: a MovingMNISTBatch
    (with ground truth), or VideoSequences, on which the probes, the intervention, the
    identity across crossings and the tracking are recorded as not applicable (and the
    intervention also where objects share a colour channel: ``--channels 1``, or the disc
    scene).

    Each part is made on its own: a part that fails numerically (a NaN reaching a distribution)
    is recorded as failed with its reason (:mod:`.outcome`) and the others are still made; the
    MI is not computable on 3 (z_t, z_t+1) pairs or fewer, the correlation on fewer than 3.

    Returns the metrics (JSON-ready) and the arrays the figures are drawn from.
    """
    dvip.eval()
    torch.manual_seed(options.seed)
    frames = data.frames
    metrics: dict = {}
    arrays: dict = {"images": {}}

    def attempt(names: tuple[str, ...], compute):
        """compute(), or None with every part in ``names`` recorded as failed."""
        try:
            return compute()
        except NUMERICAL_ERRORS as e:
            metrics.update({name: failed(e) for name in names})
            return None

    def record(name: str, compute) -> None:
        """``metrics[name]``: compute(), or the record of its failure."""
        metrics[name] = attempt((name,), compute) or metrics[name]

    latent_parts = (
        "mutual_info", "correlation", "alignment", "intervention", "identity", "tracking",
        "scene",
    )  # fmt: skip
    posterior = attempt(latent_parts, lambda: filter_sequences(dvip, frames, options.batch_size))
    record("bound", lambda: held_out_bound(
        dvip, frames[: options.bound_sequences], options.particles, options.iw_samples,
        options.batch_size,
    ))  # fmt: skip

    own = _own_groups(dvip, config, options)[0]
    groups = None  # the MI's: the model's own, or the best partition of a one-factor model
    if posterior is not None:
        z_t, z_next = (p.cpu().numpy() for p in consecutive_pairs(posterior.flat("samples")))
        if len(z_t) > MIN_PAIRS:
            if len(z_t) < options.samples:
                raise ValueError(
                    f"samples: only {len(z_t)} pairs available, asked for {options.samples}"
                )
            keep = np.random.default_rng(options.seed).permutation(len(z_t))[: options.samples]
            groups = attempt(("mutual_info", "correlation"), lambda: _mutual_info(
                dvip, config, options, z_t[keep], z_next[keep], metrics, arrays
            ))  # fmt: skip
        else:
            metrics["mutual_info"] = not_computable(
                f"{len(z_t)} (z_t, z_t+1) pairs; the KSG estimator (k = {MIN_PAIRS}) needs more"
            )
            if len(z_t) < 3:
                metrics["correlation"] = not_computable(
                    f"{len(z_t)} (z_t, z_t+1) pairs; a correlation needs 3 or more"
                )
            else:
                attempt(("correlation",), lambda: _correlation(z_t, z_next, own, metrics, arrays))
        protocol = "the factors, or contiguous groups (the MI could not choose them)"
        if groups is not None:
            protocol = metrics["mutual_info"]["protocol"]
        record("appearance_swap", lambda: appearance_swap(dvip, posterior, options.batch_size))
        attempt(("scene",), lambda: _scene(dvip, frames, posterior, options, metrics, arrays))
        record("object_score", lambda: _object_score(
            dvip, posterior, groups or own, protocol, options
        ))  # fmt: skip
    probe_groups = groups or own  # on video, generations show the MI groups
    if not isinstance(data, MovingMNISTBatch):  # no positions to probe, no channel per object
        metrics["alignment"] = not_applicable("real video has no object positions to probe")
        metrics["intervention"] = not_applicable("real video has no colour channel per object")
        metrics["identity"] = not_applicable("real video has no object positions to follow")
        metrics["tracking"] = not_applicable("real video has no object positions to track")
    elif posterior is not None:
        # without the probes' matching the identity cannot be made, nor the probes' tracks
        with_probes = ("alignment", "intervention", "identity")
        with_probes += () if draws_factors(dvip) else ("tracking",)
        truth = data  # exchangeable objects: each sequence's in the order of their factors
        if exchangeable(config) and draws_factors(dvip):
            truth = attempt(with_probes, lambda: _in_factor_order(dvip, config, data, posterior,
                                                                  options))  # fmt: skip
        probed = None
        if truth is not None:
            probed = attempt(with_probes, lambda: _alignment(
                dvip, config, truth, posterior, options, metrics, arrays
            ))  # fmt: skip
        if probed is not None:
            probe_groups = probed
            if truth is not data:
                metrics["alignment"]["objects_ordered"] = ORDERED
            attempt(("identity",), lambda: _identity(
                config, truth, posterior, probed, options, metrics, arrays
            ))  # fmt: skip
        if probed is not None or draws_factors(dvip):
            attempt(("tracking",), lambda: _tracking(
                dvip, config, data, posterior, probed, options, metrics
            ))  # fmt: skip

    T = frames.shape[1]
    context = options.context or max(1, T // 2)
    record("prediction", lambda: prediction_scores(
        dvip, frames[: options.prediction_sequences], context, options.rollouts,
        options.batch_size,
    ))  # fmt: skip

    shown = frames[: options.examples]
    generations = {  # name -> {image name: videos (n, T, C, H, W)}
        "reconstructions": lambda: {"reconstructions": reconstructions(dvip, shown)},
        "prior_samples": lambda: {
            "prior_samples": prior_samples(dvip, len(shown), T, frames.device)
        },
        "independent_factor": lambda: _numbered(
            "independent_factor", independent_generations(dvip, shown, probe_groups)
        ),
        "rollout_factor": lambda: _numbered("rollout_factor", factor_rollouts(dvip, shown)),
        "layers": lambda: factor_layers(dvip, shown),  # {layer_factor{k}, mask_factor{k}}
    }
    metrics["generations"] = {}
    for name, make in generations.items():
        try:
            arrays["images"].update(make())
        except NUMERICAL_ERRORS as e:
            metrics["generations"][name] = failed(e)
    arrays["truth"] = shown.cpu()
    return metrics, arrays


def _numbered(stem: str, videos) -> dict:
    """``{stem}{k}`` for the videos of each factor k."""
    return {f"{stem}{k}": v for k, v in enumerate(videos)}


def failures(metrics: dict) -> list[str]:
    """``"model part: reason"`` for every part of an evaluation that failed."""
    found = []
    for model in MODELS:
        parts = {**metrics[model], **metrics[model].get("generations", {})}
        for name, part in parts.items():
            if isinstance(part, dict) and is_failed(part):
                found.append(f"{model} {name}: {part['note'].removeprefix('failed: ')}")
    return found


def evaluate(
    run_dir: str | Path,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    **options,
) -> dict:
    """Evaluate a run directory into ``out`` (default ``RUN_DIR/eval``); return the metrics.

    ``checkpoint`` picks one checkpoint file (default: the newest that loads), e.g. to follow
    a measurement over training time.

    Writes metrics.json, CSV tables (summary, probe_r2, mutual_info, intervention, identity,
    prediction), PNG heatmaps and curves, image grids and GIFs under generations/ (with each
    factor's layer, and mask, for a per-factor decoder), and report.md. Every model, the
    floor included, gets the label-free object score (``object_score.py``). ``options`` are
    the fields of :class:`EvalOptions`.

    A video run (``config.data``) is measured on its own test split; the probes, the
    intervention, the identity across crossings and the tracking (``tracking.py``) need
    ground truth and are recorded as not applicable (no probe_r2, intervention or identity
    table or figure is written). Nor is the intervention applicable where objects share a
    colour channel (``--channels 1``), nor the identity with one digit per sequence.

    A part that fails numerically is recorded as failed with its reason (see :func:`measure`)
    and the others are made; ``metrics["failed"]`` lists them (``"model part: reason"``,
    empty when everything was made), and ``dvip evaluate`` then exits with status 1.
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "eval"
    opts = EvalOptions(**options)
    opts.validate()
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise RunError(f"{run_dir}: not a run directory (no config.json)")
    config = TrainConfig.load(config_path)
    if config.seq_len < 2:
        raise RunError(f"{run_dir}: sequences of {config.seq_len} frame have no (z_t, z_t+1)")
    if opts.context is not None and not 1 <= opts.context < config.seq_len:
        raise ValueError(
            f"context: must be between 1 and {config.seq_len - 1} for {config.seq_len}-frame "
            f"sequences, got {opts.context}"
        )
    trained = load(run_dir, checkpoint=checkpoint, device=opts.device)
    _own_groups(trained, config, opts)  # --groups must divide the latent: refused now
    torch.manual_seed(opts.seed)
    untrained = build_model(config).to(opts.device).eval()

    data, held_out, measured = held_out_data(run_dir, config, opts)
    data = data.to(opts.device)

    results, arrays = {}, {}
    for name, dvip in zip(MODELS, (trained, untrained)):
        results[name], arrays[name] = measure(dvip, config, data, measured)

    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "run_dir": str(run_dir),
        "checkpoint": str(checkpoint) if checkpoint is not None else "newest",
        "config": json.loads(config.to_json()),
        "options": asdict(opts),
        "sequences": len(data.frames),
        "held_out": held_out,
        **results,
    }
    metrics["failed"] = failures(metrics)
    write_csvs(out, results)
    write_figures(out, results, arrays, config.num_digits)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    write_metrics(out, metrics)
    write_report(out, metrics)
    return metrics
