"""How much an object split beats an axis split, in nats, for a model that predicts positions
only: a property of the data, measured on the generator's trajectories (no training).

A factor that holds one digit's x but not its y (an axis split) must predict that x from its
own past alone; a factor that holds the whole digit predicts it from both coordinates. With the
model's diagonal-Gaussian transition prior, the best it can do is a Gaussian with the mean and
variance of the next step given what it sees, so the saving of the object split is

    sum over x, y of  E[½ log 2πe Var(Δx | x_{t-1})] − E[½ log 2πe Var(Δx | x_{t-1}, y_{t-1})]

nats per digit per predicted frame. It is measured on the positions the frames show (rounded to
pixels), with one cell per visible position, so there is no bin width to choose; a control
conditions on the other coordinate of a different sequence (shuffled), which must save nothing.
A model that also encodes velocity is not covered: in the box it predicts each axis exactly,
so there an axis split costs nothing at all.

    python examples/split_pressure.py                       # the cpu-objects data: 32x32, speed 14
    python examples/split_pressure.py --image-size 64 --speed 3.6   # the paper's
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pyro_dvip.data import MovingMNIST

ARENAS = ("box", "circle")


def gaussian_nll(target: np.ndarray, cell: np.ndarray) -> float:
    """Mean NLL of ``target`` under a Gaussian with each cell's own mean and variance."""
    n = np.bincount(cell)
    s1, s2 = np.bincount(cell, target), np.bincount(cell, target**2)
    used = n > 1
    var = (s2[used] - s1[used] ** 2 / n[used]) / (n[used] - 1)
    nll = 0.5 * np.log(2 * np.pi * np.e * np.maximum(var, 1e-6))
    return float((n[used] * nll).sum() / n[used].sum())


def split_pressure(
    arena: str, *, image_size: int = 32, speed: float = 14.0, seq_len: int = 8,
    sequences: int = 200_000, seed: int = 0,
) -> dict:  # fmt: skip
    """Next-step NLL of each coordinate from itself, from (x, y), and from (x, shuffled y);
    the object split's saving per digit per frame and the shuffled control's."""
    digits = torch.zeros(1, 28, 28, dtype=torch.uint8)  # motion only: no digit is drawn
    generator = MovingMNIST(
        digits, torch.zeros(1, dtype=torch.int64), image_size=image_size, num_digits=1,
        seq_len=seq_len, speed=speed, arena=arena, seed=seed,
    )  # fmt: skip
    positions, _ = generator.trajectories(sequences)  # (B, T, 1, 2)
    shown = positions[:, :, 0].round().long().numpy()  # (B, T, 2) pixels, as rendered
    previous = shown[:, :-1].reshape(-1, 2)
    delta = (shown[:, 1:] - shown[:, :-1]).reshape(-1, 2)
    cells = int(shown.max()) + 1
    shuffled = np.random.default_rng(seed).permutation(previous)
    result = {"arena": arena, "sequences": sequences, "pixels_per_axis": cells}
    saving = control = 0.0
    for axis, name in enumerate("xy"):
        own, other = previous[:, axis], previous[:, 1 - axis]
        alone = gaussian_nll(delta[:, axis], own)
        both = gaussian_nll(delta[:, axis], own * cells + other)
        unrelated = gaussian_nll(delta[:, axis], own * cells + shuffled[:, 1 - axis])
        result[f"nll_{name}_own"], result[f"nll_{name}_both"] = alone, both
        saving += alone - both
        control += alone - unrelated
    result["object_split_saving"] = saving  # nats per digit per predicted frame
    result["shuffled_control"] = control
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--speed", type=float, default=14.0, help="pixels per frame at 64x64")
    parser.add_argument("--seq-len", type=int, default=8)
    parser.add_argument("--sequences", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.sequences < 2:
        parser.error(f"--sequences must be at least 2, got {args.sequences}")
    if args.seq_len < 2:
        parser.error(f"--seq-len must be at least 2 (a next step to predict), got {args.seq_len}")
    print("arena   NLL of dx: own / (x, y)   NLL of dy: own / (x, y)   object split saves"
          "   shuffled control")  # fmt: skip
    for arena in ARENAS:
        try:
            r = split_pressure(
                arena, image_size=args.image_size, speed=args.speed, seq_len=args.seq_len,
                sequences=args.sequences, seed=args.seed,
            )  # fmt: skip
        except ValueError as e:  # the generator names the bad setting
            parser.error(str(e))
        print(
            f"{arena:7s} {r['nll_x_own']:8.3f} / {r['nll_x_both']:.3f}     "
            f"{r['nll_y_own']:8.3f} / {r['nll_y_both']:.3f}     "
            f"{r['object_split_saving']:7.3f} nats/digit/frame   {r['shuffled_control']:7.4f}"
        )


if __name__ == "__main__":
    main()
