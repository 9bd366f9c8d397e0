"""How much following a digit beats holding a slot, in nats, for a prior that predicts each
factor from its own past: a property of the data, measured on the generator's trajectories
(no training).

With same-coloured digits (``--channels 1``) a factor can hold a digit (**identity**) or a
**slot**: the digit further left, whichever it is (``dvip evaluate``'s ``slots`` verdict). Both
draw the same frames. But a slot's own past predicts its next position worse: whenever the
digits change order along x, the slot jumps to the other digit's track. For each code this
script counts the conditional entropy of a factor's next position (in pixels, as the frames
show it) given its own last position and velocity (the difference of its last two positions),
one cell per state, so there is no bin width to choose:

    saving = H(next slot | its own past) - H(next digit | its own past)

nats per factor per predicted frame (pooled over the factors), and per x-order flip. It is what
an ideal independent prior would pay, each frame, for a slot code over an object code; a
prior that sees every factor (``--entangled``) can tell from the slots together where a flip
comes, so this pressure is the factored prior's (the joint state has too many cells to count
here). Counted entropies are biased low, the slot code's most (after a flip its next
position may be anywhere the other digit is): each is corrected to first order (Miller-Madow),
and what bias is left still makes the saving an underestimate; it grows with ``--sequences``
until the cells fill.

With ``--run RUN`` (repeatable) it also reads what a trained run pays: the ELBO's KL, summed
over factors, at the frames of its held-out sequences where the digits change x-order against
the other frames (t >= 2). A slot code whose prior predicts its factors as well as the data
allows pays the saving above at every flip; a prior that predicts little pays the same
everywhere, and then nothing in the objective prefers identity.

    python examples/identity_pressure.py                     # the cpu-objects data: 32x32, speed 14
    python examples/identity_pressure.py --speed 7 --seq-len 16
    python examples/identity_pressure.py --run runs/same-colour   # and a trained run's KL at flips
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pyro_dvip.data import MovingMNIST

ARENAS = ("box", "circle")


def conditional_entropy(target: np.ndarray, cell: np.ndarray, corrected: bool = True) -> float:
    """H(target | cell) in nats from counts of non-negative integer arrays: the plug-in
    estimate, plus (with ``corrected``) the Miller-Madow term, (outcomes seen - 1) / (2 n) per
    cell weighted by its share n / N, which removes the plug-in's first-order bias."""
    target, cell = np.asarray(target, dtype=np.int64), np.asarray(cell, dtype=np.int64)
    pairs, joint = np.unique(cell * (int(target.max()) + 1) + target, return_counts=True)
    _, marginal = np.unique(cell, return_counts=True)
    n = len(target)
    plug_in = (marginal * np.log(marginal)).sum() / n - (joint * np.log(joint)).sum() / n
    if not corrected:
        return float(plug_in)
    return float(plug_in + (len(pairs) - len(marginal)) / (2 * n))


def next_position_entropy(tracks: np.ndarray) -> float:
    """H(next position | last position, last velocity) of tracks (B, T, N, 2) of integer
    pixels, pooled over the N tracks and the T - 2 predicted frames."""
    before, last, nxt = tracks[:, :-2], tracks[:, 1:-1], tracks[:, 2:]
    velocity = last - before
    cells = int(tracks.max()) + 1
    low, span = int(velocity.min()), int(velocity.max() - velocity.min()) + 1
    state = ((last[..., 0] * cells + last[..., 1]) * span + velocity[..., 0] - low) * span + (
        velocity[..., 1] - low
    )
    target = nxt[..., 0] * cells + nxt[..., 1]
    return conditional_entropy(target.reshape(-1), state.reshape(-1))


def identity_pressure(
    arena: str, *, image_size: int = 32, speed: float = 14.0, seq_len: int = 8,
    num_digits: int = 2, sequences: int = 1_000_000, seed: int = 0,
) -> dict:  # fmt: skip
    """Next-position entropy of an identity code and of an x-sorted slot code; the slot code's
    excess per factor per frame and per x-order flip."""
    digits = torch.zeros(1, 28, 28, dtype=torch.uint8)  # motion only: no digit is drawn
    generator = MovingMNIST(
        digits, torch.zeros(1, dtype=torch.int64), image_size=image_size, channels=1,
        num_digits=num_digits, seq_len=seq_len, speed=speed, arena=arena, seed=seed,
    )  # fmt: skip
    positions, _ = generator.trajectories(sequences)  # (B, T, N, 2)
    shown = positions.round().long().numpy()  # pixels, as rendered
    # slot n: the digit n-th from the left in each frame (ties kept in digit order)
    order = np.argsort(shown[..., 0], axis=-1, kind="stable")  # (B, T, N)
    slots = np.take_along_axis(shown, order[..., None], axis=2)
    h_identity = next_position_entropy(shown)
    h_slot = next_position_entropy(slots)
    # frames (of the predicted ones) where the left-to-right order of the digits changes
    flips = order_flips(shown)[:, 2:].mean()
    saving = h_slot - h_identity
    return {
        "arena": arena, "speed": speed, "sequences": sequences,
        "h_identity": h_identity, "h_slot": h_slot, "saving": saving,
        "flips_per_frame": float(flips),
        # nats per flip: the N factors' excess over a frame, per flip in it
        "saving_per_flip": saving * num_digits / flips if flips else float("nan"),
    }  # fmt: skip


def order_flips(positions: np.ndarray) -> np.ndarray:
    """(B, T) bool: frame t > 1 where the left-to-right order of the digits (B, T, N, 2)
    differs from frame t - 1's (ties kept in digit order)."""
    order = np.argsort(positions[..., 0], axis=-1, kind="stable")
    flips = np.zeros(positions.shape[:2], dtype=bool)
    flips[:, 1:] = (order[:, 1:] != order[:, :-1]).any(-1)
    return flips


@torch.no_grad()
def kl_at_flips(run: str, sequences: int = 500, particles: int = 4) -> dict:
    """A trained run's KL (nats, summed over factors, mean over ``particles`` guide samples)
    at the held-out frames t >= 2 where the digits change x-order and at the others."""
    import pyro
    from pyro import poutine

    from pyro_dvip.build import load
    from pyro_dvip.config import TrainConfig
    from pyro_dvip.evaluation.held_out import held_out_sequences
    from pyro_dvip.objective import factor_terms

    if not Path(run, "config.json").exists():
        raise ValueError(f"--run {run}: not a run directory (no config.json)")
    config = TrainConfig.load(Path(run, "config.json"))
    if config.data is not None or config.num_digits < 2:
        raise ValueError(f"--run {run}: needs built-in data with two digits or more")
    dvip = load(run)
    pyro.set_rng_seed(0)  # the same guide samples on every call
    batch = held_out_sequences(config, sequences)
    kl = 0.0
    for _ in range(particles):
        guide = poutine.trace(dvip.guide).get_trace(batch.frames)
        model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(batch.frames)
        kl = kl + factor_terms(model, guide, analytic_kl=True, per_step=True)[1].sum(-1)
    kl = (kl / particles).numpy()  # (B, T)
    flips = order_flips(batch.positions.numpy())
    later = np.arange(kl.shape[1]) >= 1  # t >= 2: the frames a transition predicts
    return {
        "run": run, "at_flips": float(kl[flips].mean()), "flip_frames": int(flips.sum()),
        "elsewhere": float(kl[~flips & later].mean()),
        "other_frames": int((~flips & later).sum()),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--speed", type=float, default=14.0, help="pixels per frame at 64x64")
    parser.add_argument("--seq-len", type=int, default=8)
    parser.add_argument("--num-digits", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--run", action="append", default=[],
        help="A trained run directory: also print its KL at x-order flips and elsewhere.",
    )  # fmt: skip
    args = parser.parse_args()
    if args.sequences < 2:
        parser.error(f"--sequences must be at least 2, got {args.sequences}")
    if args.seq_len < 3:
        parser.error(f"--seq-len must be at least 3 (a velocity, then a step), got {args.seq_len}")
    if not 2 <= args.num_digits <= 3:
        parser.error(f"--num-digits must be 2 or 3 (a slot needs company), got {args.num_digits}")
    print("arena   H(next | own past): identity / slot   a slot costs more by   per x-order flip")
    for arena in ARENAS:
        try:
            r = identity_pressure(
                arena, image_size=args.image_size, speed=args.speed, seq_len=args.seq_len,
                num_digits=args.num_digits, sequences=args.sequences, seed=args.seed,
            )  # fmt: skip
        except ValueError as e:  # the generator names the bad setting
            parser.error(str(e))
        print(
            f"{arena:7s} {r['h_identity']:8.3f} / {r['h_slot']:.3f} nats"
            f"{r['saving']:12.3f} nats/factor/frame {r['saving_per_flip']:8.2f} nats "
            f"({r['flips_per_frame']:.2f} flips/frame)"
        )
    for run in args.run:
        try:
            r = kl_at_flips(run)
        except (OSError, ValueError, RuntimeError) as e:  # RunError: e.g. no checkpoint
            parser.error(str(e).splitlines()[0])
        print(
            f"{run}: KL summed over factors {r['at_flips']:.2f} nats at x-order flips "
            f"({r['flip_frames']} frames), {r['elsewhere']:.2f} elsewhere "
            f"({r['other_frames']} frames, t >= 2)"
        )


if __name__ == "__main__":
    main()
