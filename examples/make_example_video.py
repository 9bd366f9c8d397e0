"""Write the short example video that ships in ``examples/video/`` (no footage is downloaded).

Two discs, orange and blue, move at constant speed and bounce off the walls of a 64x64 frame
over a fixed, softly textured background; where they overlap, the orange disc is in front (an
occlusion, which an additive decoder cannot draw and a composited one can). Two minutes at
10 frames per second, H.264. It is a synthetic stand-in for your own footage, small enough to
commit: at ``dvip train``'s default 2 fps it gives 240 frames. ``dvip train --scene discs``
generates the same kind of scene on the fly, with ground truth (``pyro_dvip/data/discs.py``).

    python examples/make_example_video.py              # rewrites examples/video/two_discs.mp4
    dvip data inspect examples/video                   # what training would read from it
    dvip train --preset cpu-demo --data examples/video --out runs/video
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from pyro_dvip.data.discs import DISC_PALETTE, background  # the built-in scene draws these

SIZE, FPS, SECONDS = 64, 10, 120
# (centre x, centre y, velocity x, velocity y) in pixels and pixels per second; radius; colour
DISCS = [
    ((18.0, 22.0, 9.0, 6.5), 7.0, DISC_PALETTE[0]),
    ((44.0, 40.0, -6.0, 8.5), 8.0, DISC_PALETTE[1]),
]


def bounce(position: float, velocity: float, t: float, low: float, high: float) -> float:
    """Where a point moving at ``velocity`` from ``position`` is at time ``t`` between two walls."""
    span = high - low
    travelled = (position - low + velocity * t) % (2 * span)
    return low + (travelled if travelled <= span else 2 * span - travelled)


def frame(i: int, size: int = SIZE, fps: int = FPS) -> np.ndarray:
    """Frame ``i`` as uint8 (size, size, 3): the background, then the discs back to front."""
    t = i / fps
    image = background(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    for (cx, cy, vx, vy), radius, colour in reversed(DISCS):  # the first disc is in front
        px = bounce(cx, vx, t, radius, size - radius)
        py = bounce(cy, vy, t, radius, size - radius)
        # anti-aliased edge: full colour inside, a one-pixel ramp at the rim
        cover = np.clip(radius + 0.5 - np.hypot(x - px, y - py), 0.0, 1.0)[..., None]
        image = image * (1 - cover) + np.asarray(colour, np.float64) * cover
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write(path: Path, seconds: float = SECONDS, fps: int = FPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "23"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(round(seconds * fps)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")))
        container.mux(stream.encode())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).parent / "video" / "two_discs.mp4"
    parser.add_argument("--out", type=Path, default=default, help=f"[default: {default}]")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"[default: {SECONDS}]")
    args = parser.parse_args()
    print(write(args.out, seconds=args.seconds))


if __name__ == "__main__":
    main()
