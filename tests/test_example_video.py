"""The example video shipped in examples/video: it is what its generator draws, and the video
path reads it (the README's video commands run on it offline)."""

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
spec = importlib.util.spec_from_file_location(
    "make_example_video", EXAMPLES / "make_example_video.py"
)
make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make)


def test_the_bounce_reflects_off_both_walls():
    # from 5 towards 10 at speed 2 between walls 0 and 10: 9 at t=2, the wall at t=2.5, back
    # to 7 at t=4, the other wall at t=7.5, and up again to 4 at t=9.5
    assert [make.bounce(5, 2, t, 0, 10) for t in (2, 2.5, 4, 9.5)] == [9, 10, 7, 4]
    assert make.bounce(5, -2, 3, 0, 10) == 1  # the wall at 0 at t=2.5, then up 1


def test_the_shipped_clip_is_what_the_generator_draws():
    path = EXAMPLES / "video" / "two_discs.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (make.SIZE, make.SIZE)
        assert stream.average_rate == make.FPS
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == make.SECONDS * make.FPS
    for i in (0, 137, len(frames) - 1):
        drawn = make.frame(i).astype(np.int64)
        # H.264 at crf 23 with 4:2:0 chroma: a few levels on average, more at the disc rims
        assert np.abs(frames[i].astype(np.int64) - drawn).mean() < 6
    # the discs move: frames a second apart differ far more than the codec's error
    assert np.abs(frames[10].astype(np.int64) - frames[0]).mean() > 6


def test_the_video_path_reads_the_shipped_clip(tmp_path):
    from pyro_dvip.data import inspect_video

    report = inspect_video(
        EXAMPLES / "video", image_size=32, seq_len=8, fps=2.0, cache_dir=tmp_path, progress=False
    )
    (row,) = report.table().to_dict("records")
    # timestamps 0 to 119.9 s: floor(119.9 * 2) + 1 frames at 2 fps (docs/video.md), in
    # disjoint sequences of 8
    assert row["status"] == "ok" and row["frames"] == 240 and row["sequences"] == 30
    assert row["duration_s"] == pytest.approx(make.SECONDS)
