"""Real video input: decoding, resampling, colour, the cache, the split, the stream, the CLI.

Every video is written here with PyAV: small frames (64×48 unless a test needs otherwise),
a few seconds at a known rate.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pyro_dvip.data import VideoStream, inspect_video, make_video_data, video_decode
from pyro_dvip.data.video import load_clips, split_sequences
from pyro_dvip.data.video_cache import DecodeSettings, content_hash, default_cache_dir, entry_paths
from pyro_dvip.data.video_decode import VIDEO_EXTENSIONS, ClipSource, resample

RED = (255, 0, 0)


def textured_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame i: a checkerboard, a white square moving right, a pure-red block in the centre."""
    rows, cols = np.mgrid[0:height, 0:width]
    grey = np.where((rows // 4 + cols // 4) % 2 == 0, 60, 120).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    x = (2 * i) % max(1, width - 8)
    rgb[2:10, x : x + 8] = 255
    rgb[height // 2 - 12 : height // 2 + 12, width // 2 - 8 : width // 2 + 8] = RED
    return rgb


def index_frame(i: int, width: int, height: int) -> np.ndarray:
    """Frame i: uniform grey 2·i, so a lossless decode tells which source frame was kept."""
    return np.full((height, width, 3), 2 * i, np.uint8)


def translucent_frame(i: int, width: int, height: int) -> np.ndarray:
    """:func:`textured_frame` as RGBA with alpha 128."""
    alpha = np.full((height, width, 1), 128, np.uint8)
    return np.concatenate([textured_frame(i, width, height), alpha], axis=2)


def noise_frame(i: int, width: int, height: int) -> np.ndarray:
    """Seeded uniform noise: many bytes per frame, so a cut file holds part of the video."""
    return np.random.default_rng(i).integers(0, 255, (height, width, 3), np.uint8)


def write_video(
    path: Path,
    *,
    fps: int = 25,
    seconds: float = 5,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    draw=textured_frame,
    input_format: str = "rgb24",
    rotation: int | None = None,
    options: dict | None = None,
) -> Path:
    """Write ``seconds × fps`` frames of ``draw(i, width, height)`` at ``fps``."""
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(round(fps * seconds)):
            frame = av.VideoFrame.from_ndarray(draw(i, width, height), format=input_format)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def lossless_video(path: Path, **kwargs) -> Path:
    """An FFV1 video of :func:`index_frame` (exact pixels)."""
    return write_video(path, codec="ffv1", pix_fmt="bgr0", draw=index_frame, **kwargs)


def write_frame_folder(folder: Path, colours: list[tuple[int, int, int]], size=(8, 8)) -> Path:
    """One uniform PNG per colour, named frame_1.png, frame_2.png, ... (natural order)."""
    folder.mkdir(parents=True)
    for i, colour in enumerate(colours, start=1):
        Image.fromarray(np.full((*size[::-1], 3), colour, np.uint8)).save(folder / f"frame_{i}.png")
    return folder


def frames_of(path, cache_dir, **kwargs) -> np.ndarray:
    """The first clip's cached frames, ``(N, S, S, 3)`` uint8."""
    kwargs = {"image_size": 16, "progress": False, **kwargs}
    clips, _ = load_clips(path, cache_dir=cache_dir, **kwargs)
    assert clips[0].error is None, clips[0].error
    return np.array(clips[0].entry.open())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Small videos shared by the tests that only read them."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "h264": write_video(folder / "street.mp4"),
        "lossless25": lossless_video(folder / "index25.mkv", fps=25, seconds=5),
        "lossless10": lossless_video(folder / "index10.mkv", fps=10, seconds=3),
        "grey": write_video(folder / "grey.mkv", codec="ffv1", pix_fmt="gray"),
        "alpha": write_video(folder / "alpha.mov", codec="qtrle", pix_fmt="argb",
                             input_format="rgba", seconds=3, draw=translucent_frame),
        "faststart": write_video(folder / "noise.mp4", draw=noise_frame,
                                 options={"movflags": "faststart"}),  # index first: cut, it decodes
    }  # fmt: skip


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# Resampling by presentation timestamp


def test_resample_picks_the_latest_frame_at_or_before_each_output_time():
    times = [Fraction(t) for t in ("0", "0.3", "0.5", "0.5", "0.45", "1.2", "1.7")]
    items = ["a", "b", "c", "repeat", "late", "d", "e"]
    # Output times 0, 0.5, 1.0, 1.5: a; c (exactly at 0.5); c (latest <= 1.0); d.
    assert list(resample(zip(times, items), Fraction(2))) == ["a", "c", "c", "d"]


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(st.integers(1, 50), max_size=40),
    start=st.integers(-10, 10),
    fps=st.sampled_from([Fraction(1, 2), Fraction(2), Fraction(5), Fraction(30000, 1001)]),
)
def test_resample_gives_one_frame_per_output_time_up_to_the_last_frame(steps, start, fps):
    times = np.cumsum([0, *steps]) / Fraction(25) + start  # variable frame rate
    times = [Fraction(t) for t in times]
    picked = list(resample(((t, t) for t in times), fps))
    span = times[-1] - times[0]
    assert len(picked) == int(span * fps) + 1
    for k, t in enumerate(picked):
        target = times[0] + k / fps
        assert t <= target and not any(t < other <= target for other in times)


def test_five_seconds_at_25_fps_give_ten_frames_at_2_fps_chosen_by_timestamp(videos, cache):
    frames = frames_of(videos["lossless25"], cache)
    assert frames.shape == (10, 16, 16, 3)
    # Output k is at k/2 s: source frame floor(12.5 k); each frame is uniform grey 2 * index.
    assert frames[:, 0, 0, 0].tolist() == [2 * int(12.5 * k) for k in range(10)]


@pytest.mark.parametrize(("fps", "expected"), [(2.0, 6), (5.0, 15), (0.5, 2), (20.0, 59)])
def test_frame_count_after_resampling_three_seconds_at_10_fps(videos, cache, fps, expected):
    frames = frames_of(videos["lossless10"], cache, fps=fps)
    assert len(frames) == expected  # floor(2.9 * fps) + 1
    indices = frames[:, 0, 0, 0] // 2
    assert indices.tolist() == [int(k * 10 / fps) for k in range(expected)]  # repeats above 10


# Size, aspect and colour


@pytest.mark.parametrize("image_size", [8, 32, 100])
def test_frames_are_square_rgb_uint8_of_image_size(videos, cache, image_size):
    frames = frames_of(videos["h264"], cache, image_size=image_size)
    assert frames.shape == (10, image_size, image_size, 3) and frames.dtype == np.uint8


def test_crop_keeps_the_centre_square_and_squash_keeps_the_whole_frame(tmp_path, cache):
    def blue_borders(i, width, height):  # 64x48: 8 blue columns each side, grey in between
        rgb = np.full((height, width, 3), 128, np.uint8)
        rgb[:, :8] = rgb[:, -8:] = (0, 0, 255)
        return rgb

    path = write_video(tmp_path / "b.mkv", codec="ffv1", pix_fmt="bgr0", draw=blue_borders)
    crop = frames_of(path, cache, image_size=24, resize="crop")
    squash = frames_of(path, cache, image_size=24, resize="squash")
    assert np.all(crop == 128)  # the centre 48x48 square is all grey
    assert squash[0, 12, 0].tolist() == [0, 0, 255] and squash[0, 12, 12].tolist() == [128] * 3


def test_pure_red_stays_red_after_yuv420_decoding(videos, cache):
    frames = frames_of(videos["h264"], cache, image_size=32).astype(int)
    centre = frames[:, 14:18, 14:18]  # inside the red block
    assert np.all(centre[..., 0] >= 235) and np.all(centre[..., 1:] <= 20)


def test_grey_video_gives_three_equal_channels(videos, cache):
    frames = frames_of(videos["grey"], cache)
    assert np.array_equal(frames[..., 0], frames[..., 1])
    assert np.array_equal(frames[..., 0], frames[..., 2])
    assert frames.std() > 10  # the texture survived


def test_alpha_video_keeps_its_colours_and_drops_alpha(videos, cache):
    frames = frames_of(videos["alpha"], cache, image_size=32)
    assert frames.shape == (6, 32, 32, 3)
    assert frames[0, 16, 16].tolist() == list(RED)  # lossless qtrle, alpha 128 not composited


def test_a_rotated_video_is_turned_upright(tmp_path, cache):
    def red_top_left(i, width, height):
        rgb = np.zeros((height, width, 3), np.uint8)
        rgb[: height // 2, : width // 2] = RED
        return rgb

    path = write_video(tmp_path / "phone.mp4", draw=red_top_left, rotation=90, seconds=1)
    frames = frames_of(path, cache, image_size=16, resize="squash").astype(int)
    # Shown 90° counter-clockwise: the stored top-left quarter is at the bottom left.
    assert frames[0, 12, 4, 0] > 230 and frames[0, 12, 4, 1:].max() < 25
    assert frames[0, 4, 4].max() < 25 and frames[0, 12, 12].max() < 25


def test_frame_folder_clips_read_rgba_grey_and_16_bit_pngs_in_natural_order(tmp_path, cache):
    clip = tmp_path / "frames" / "clip"
    clip.mkdir(parents=True)
    for i in range(1, 12):  # frame_1 ... frame_11, read in natural order (frame_2 before frame_10)
        rgba = np.zeros((10, 14, 4), np.uint8)
        rgba[..., 0], rgba[..., 3] = 20 * i, 0  # fully transparent: colour kept as stored
        Image.fromarray(rgba, "RGBA").save(clip / f"frame_{i}.png")
    Image.fromarray(np.full((10, 14), 77, np.uint8), "L").save(clip / "frame_12.png")
    Image.fromarray(np.full((10, 14), 40000, np.uint16)).save(clip / "frame_13.png")
    frames = frames_of(tmp_path / "frames", cache, image_size=8)
    assert frames.shape == (13, 8, 8, 3)
    assert frames[:11, 0, 0, 0].tolist() == [20 * i for i in range(1, 12)]
    assert frames[11, 0, 0].tolist() == [77] * 3 and frames[12, 0, 0].tolist() == [156] * 3


def test_odd_sized_and_tiny_sources_give_square_frames(tmp_path, cache):
    for width, height in [(7, 13), (2, 2), (31, 5)]:
        path = write_video(tmp_path / f"{width}x{height}.mkv", size=(width, height), fps=4,
                           seconds=2, codec="ffv1", pix_fmt="bgr0")  # fmt: skip
        for resize in ("crop", "squash"):
            frames = frames_of(path, cache, image_size=16, resize=resize)
            assert frames.shape == (4, 16, 16, 3)


# Discovery


def test_folders_are_searched_recursively_in_sorted_order_skipping_hidden_files(tmp_path):
    for name in ["b/z.MP4", "a.webm", "b/a/c.avi", ".hidden/x.mp4", "b/.y.mp4", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    write_frame_folder(tmp_path / "b" / "frames", [(1, 1, 1)])
    clips = video_decode.find_clips(tmp_path)
    assert [(c.name, c.kind) for c in clips] == [
        ("a.webm", "video"), ("b/a/c.avi", "video"), ("b/frames", "frames"), ("b/z.MP4", "video"),
    ]  # fmt: skip


# The cache


def count_decodes(monkeypatch) -> list:
    calls = []
    real = video_decode.decode_clip

    def counted(clip, **kwargs):
        calls.append(clip)
        return real(clip, **kwargs)

    monkeypatch.setattr(video_decode, "decode_clip", counted)
    return calls


def test_second_load_reads_the_cache_and_decodes_nothing(videos, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    first, _ = load_clips(videos["h264"], image_size=16, cache_dir=tmp_path, progress=False)
    second, _ = load_clips(videos["h264"], image_size=16, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1 and first[0].decoded and not second[0].decoded
    assert np.array_equal(first[0].entry.open(), second[0].entry.open())
    assert isinstance(second[0].entry.open(), np.memmap)


def test_changed_settings_or_content_decode_again(tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    path = write_video(tmp_path / "v.mp4", seconds=3)
    load = lambda **kw: load_clips(path, cache_dir=tmp_path / "c", progress=False, **kw)[0][0]
    base = load(image_size=16)
    for changed in [dict(image_size=8), dict(image_size=16, fps=4.0),
                    dict(image_size=16, resize="squash")]:  # fmt: skip
        assert load(**changed).decoded
    assert not load(image_size=16).decoded and len(calls) == 4

    write_video(path, seconds=3, draw=lambda i, w, h: 255 - textured_frame(i, w, h))
    changed = load(image_size=16)
    assert changed.decoded and len(calls) == 5
    assert not np.array_equal(changed.entry.open(), base.entry.open())


def entry_files(cache: Path, clip_path: Path, **settings) -> tuple[Path, Path]:
    digest = content_hash(ClipSource(clip_path, "video", clip_path.name))
    return entry_paths(cache, digest, DecodeSettings(**{"fps": 2.0, "resize": "crop", **settings}))


@pytest.mark.parametrize("damage", ["no marker", "short frames", "bad marker", "other version"])
def test_a_half_written_cache_entry_is_rebuilt_not_used(videos, cache, damage, caplog):
    caplog.set_level(logging.WARNING)
    expected = frames_of(videos["h264"], cache)
    frames_path, meta_path = entry_files(cache, videos["h264"], image_size=16)
    if damage == "no marker":
        meta_path.unlink()
    elif damage == "short frames":
        frames_path.write_bytes(frames_path.read_bytes()[:1000])
    elif damage == "bad marker":
        meta_path.write_text('{"frames": 10, "image_si')
    else:
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format_version": 0}))
    clips, _ = load_clips(videos["h264"], image_size=16, cache_dir=cache, progress=False)
    assert clips[0].decoded and np.array_equal(clips[0].entry.open(), expected)
    assert json.loads(meta_path.read_text())["frames"] == 10
    if damage != "no marker":  # a missing marker is simply a missing entry
        assert f"cache_dir: {meta_path}: " in caplog.text and "rebuilding" in caplog.text


def test_an_interrupted_decode_leaves_nothing_that_is_used(videos, cache, monkeypatch):
    real = video_decode.square_frame
    count = 0

    def interrupted(*args, **kwargs):
        nonlocal count
        count += 1
        if count == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(video_decode, "square_frame", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_clips(videos["h264"], image_size=16, cache_dir=cache, progress=False)
    assert [p.suffix for p in cache.rglob("*") if p.is_file()] == []  # temporary file removed
    monkeypatch.undo()
    assert load_clips(videos["h264"], image_size=16, cache_dir=cache, progress=False)[0][0].decoded


KILL_DURING_DECODE = """
import os, signal, sys
from pyro_dvip.data import video_decode
from pyro_dvip.data.video import load_clips
real, count = video_decode.square_frame, [0]
def dying(*args, **kwargs):
    count[0] += 1
    if count[0] == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
video_decode.square_frame = dying
load_clips(sys.argv[1], image_size=16, cache_dir=sys.argv[2], progress=False)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_decode_killed_with_sigkill_is_rebuilt_on_the_next_run(videos, cache):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", KILL_DURING_DECODE, videos["h264"], cache],
                         env=env, capture_output=True, timeout=120)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    left = [p.name for p in cache.rglob("*") if p.is_file()]
    assert left and all(name.endswith(".tmp") for name in left)  # never a complete entry
    clips, _ = load_clips(videos["h264"], image_size=16, cache_dir=cache, progress=False)
    assert clips[0].decoded and clips[0].num_frames == 10


def test_cache_dir_defaults_to_the_environment_variable(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("DVIP_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    _, used = load_clips(videos["h264"], image_size=16, progress=False)
    assert used == tmp_path / "env-cache" and list(used.rglob("*.frames"))
    monkeypatch.delenv("DVIP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pyro-dvip" / "video"


# Bad input


def test_corrupt_zero_byte_and_truncated_files_are_skipped_or_noted(videos, tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(videos["h264"].read_bytes())
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (folder / "empty.avi").write_bytes(b"")
    (folder / "text.mkv").write_text("not a video\n")
    data = videos["faststart"].read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])

    with caplog.at_level(logging.WARNING):
        report = inspect_video(folder, image_size=16, seq_len=2, cache_dir=tmp_path / "c",
                               progress=False)  # fmt: skip
    table = report.table().set_index("clip")
    assert report.skipped == 3 and report.usable == 2
    assert table.loc["empty.avi", "note"] == "empty file (0 bytes)"
    assert table.loc["random.mp4", "note"].startswith("not a readable video")
    assert table.loc["random.mp4", "status"] == "skipped"
    assert table.loc["good.mp4", "status"] == "ok"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("random.mp4", "empty.avi", "text.mkv"):
        assert any(str(folder / name) in message for message in warned)
    truncated = table.loc["truncated.mp4"]
    assert truncated["status"] == "ok" and 0 < truncated["frames"] < 10
    assert "truncated" in truncated["note"]


def test_audio_only_files_and_unreadable_frame_images_skip_their_clip(tmp_path, caplog):
    with av.open(str(tmp_path / "speech.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        audio = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")  # fmt: skip
        audio.sample_rate = 8000
        container.mux(stream.encode(audio))
    write_frame_folder(tmp_path / "frames", [(9, 9, 9)] * 3)
    (tmp_path / "frames" / "frame_2.png").write_bytes(b"\x89PNG but not really")
    with caplog.at_level(logging.WARNING):
        clips, _ = load_clips(tmp_path, image_size=8, cache_dir=tmp_path / "c", progress=False)
    assert [(c.source.name, c.error) for c in clips] == [
        ("frames", "frame_2.png: not a readable image (cannot identify image file "
                   f"'{tmp_path / 'frames' / 'frame_2.png'}')"),
        ("speech.mkv", "no video stream"),
    ]  # fmt: skip
    assert f"data: {tmp_path / 'speech.mkv'}: skipped: no video stream" in caplog.text


def test_a_corrupt_packet_is_skipped_and_noted_and_decoding_goes_on(videos, tmp_path):
    with av.open(str(videos["faststart"])) as container:
        positions = [packet.pos for packet in container.demux(video=0) if packet.size]
    data = bytearray(videos["faststart"].read_bytes())
    data[positions[50] : positions[50] + 4] = b"\xff" * 4  # NAL length far past the packet's end
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    clip = load_clips(path, image_size=8, cache_dir=tmp_path / "c", progress=False)[0][0]
    assert clip.entry.info.notes == ["1 corrupt packet skipped"] and clip.num_frames == 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "data: {p}/missing: no such file or folder"),
        (lambda p: p, "data: {p}: no video files (.mp4, .avi, .mov, .mkv, .webm) or folders of"),
        (lambda p: (p / "z.mp4").write_bytes(b"") or p / "z.mp4", "data: {p}/z.mp4: empty file"),
        (lambda p: write_video(p / "short.mp4", seconds=1), "data: {p}/short.mp4: 2 frames at 2"),
        (lambda p: [(p / n).write_bytes(b"\0" * 99) for n in ("a.mp4", "b.mov")] and p,
         "data: {p}: no usable clip among 2 (2 unreadable, 0 too short); first: a.mp4: "),
    ],
)  # fmt: skip
def test_nothing_usable_raises_a_one_line_value_error_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError) as error:
        make_video_data(path, image_size=16, seq_len=5, cache_dir=tmp_path / "c", progress=False)
    assert str(error.value).startswith(message.format(p=tmp_path))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("fps", 0.0, "fps: must be > 0, got 0.0"),
        ("resize", "stretch", "resize: must be one of crop, squash, got 'stretch'"),
        ("split", "random", "split: must be one of auto, clip, time, got 'random'"),
        ("test_fraction", 1.0, "test_fraction: must be < 1, got 1.0"),
        ("stride", 0, "stride: must be >= 1, got 0"),
        ("test_sequences", 0, "test_sequences: must be >= 1, got 0"),
    ],
)
def test_invalid_settings_raise_a_value_error_naming_the_option(
    videos, cache, option, value, message
):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make_video_data(videos["h264"], image_size=16, seq_len=3, cache_dir=cache, progress=False,
                        **{option: value})  # fmt: skip
    assert not cache.exists()  # refused before decoding anything


def test_split_by_clip_needs_two_clips(videos, cache):
    with pytest.raises(ValueError, match="^split: 'clip' needs at least 2 clips"):
        make_video_data(videos["h264"], image_size=16, seq_len=3, split="clip", cache_dir=cache,
                        progress=False)  # fmt: skip


def test_auto_split_holds_out_the_end_of_a_single_clip(videos, cache):
    # 5 s at 2 fps: 10 frames; sequences of 3: training frames 0-3, a gap 4-6, test 7-9.
    stream, test, report = make_video_data(videos["h264"], image_size=16, seq_len=3,
                                           cache_dir=cache, progress=False)  # fmt: skip
    assert (report.split, report.roles, stream.split) == ("time", ["train+test"], "time")
    assert stream.sequences.tolist() == [[0, 0]] and test.shape[0] == 1
    assert "split by time (chosen by --split auto): 1 train sequences" in report.summary()


@pytest.mark.parametrize(
    ("counts", "fraction", "chosen"),
    [
        ([20], 0.1, "time"),  # one clip
        ([20] * 5, 0.1, "time"),  # 10% of 5 clips rounds to none
        ([20] * 6, 0.1, "clip"),  # ... of 6 to one
        ([20] * 3, 0.3, "clip"),
        ([8, 8], 0.1, "clip"),  # too short to hold out their ends: whole clips instead
        ([9, 2], 0.1, "time"),  # one usable clip
    ],
)
def test_auto_split_prefers_whole_clips_when_there_are_enough(counts, fraction, chosen):
    parts = split_sequences(counts, seq_len=3, stride=3, test_fraction=fraction)
    assert parts.split == chosen
    explicit = split_sequences(counts, seq_len=3, stride=3, test_fraction=fraction, split=chosen)
    assert np.array_equal(parts.test, explicit.test) and parts.roles == explicit.roles


def test_auto_split_on_one_clip_too_short_for_either_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^split: one usable clip, too short.* at least 9 frames"):
        split_sequences([8, 2], seq_len=3, stride=3)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    source=st.sampled_from([None, "h264", "faststart"]),
    cut=st.floats(0, 1),
    where=st.floats(0, 1),
    noise=st.binary(max_size=300),
    suffix=st.sampled_from(VIDEO_EXTENSIONS),
)
def test_random_or_damaged_bytes_raise_nothing_but_the_documented_value_error(
    videos, tmp_path, source, cut, where, noise, suffix
):
    """Random bytes, or a real video cut short with random bytes written over part of it."""
    data = videos[source].read_bytes() if source else b""
    data = data[: int(cut * len(data))]
    at = int(where * len(data))
    data = data[:at] + noise + data[at + len(noise) :]
    path = tmp_path / f"clip{suffix}"
    path.write_bytes(data)
    try:
        _, test, report = make_video_data(path, image_size=16, seq_len=2, split="time",
                                          cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    except ValueError as e:
        assert str(e).startswith((f"data: {path}: ", "split: ")) and "\n" not in str(e)
    else:
        assert report.usable == 1 and test.shape[1:] == (2, 3, 16, 16)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    image_size=st.integers(1, 20),
    resize=st.sampled_from(["crop", "squash"]),
    colour=st.tuples(*[st.integers(0, 255)] * 3),
)
def test_any_frame_size_gives_square_frames_of_image_size(
    tmp_path_factory, width, height, image_size, resize, colour
):
    folder = write_frame_folder(tmp_path_factory.mktemp("odd") / "clip", [colour] * 3,
                                size=(width, height))  # fmt: skip
    frames = frames_of(folder, folder.parent / "c", image_size=image_size, resize=resize)
    assert frames.shape == (3, image_size, image_size, 3)
    assert np.all(frames == colour)  # a uniform frame stays exactly uniform


# Sequences and the split


def identity_clips(root: Path, clips: int, frames: int) -> None:
    """Frame folders whose every frame is a uniform colour unique to (clip, frame)."""
    for c in range(clips):
        ids = [1 + c * frames + f for f in range(frames)]
        write_frame_folder(root / f"clip{c}", [(i % 256, i // 256, 255) for i in ids])


def frame_ids(frames: torch.Tensor) -> set[int]:
    """The identities in float frames (..., 3, S, S): red + 256 * green of the top-left pixel."""
    rgb = (frames[..., :, 0, 0] * 255).round().long().reshape(-1, 3)
    return set((rgb[:, 0] + 256 * rgb[:, 1]).tolist())


@pytest.mark.parametrize(("split", "stride"), [("clip", 3), ("clip", 1), ("time", 2)])
def test_no_frame_is_both_in_training_and_test_sequences(tmp_path, split, stride):
    identity_clips(tmp_path / "data", clips=4, frames=40)
    stream, test, report = make_video_data(
        tmp_path / "data", image_size=4, seq_len=3, stride=stride, split=split,
        test_fraction=0.25, cache_dir=tmp_path / "c", progress=False,
    )  # fmt: skip
    train_ids = set().union(*(frame_ids(stream.sample(64).frames) for _ in range(20)))
    test_ids = frame_ids(test)
    assert train_ids and test_ids and not train_ids & test_ids
    assert test.shape[1:] == (3, 3, 4, 4) and len(test) == report.test_sequences
    if split == "clip":  # one whole clip of four is held out
        assert sorted(report.roles).count("test") == 1 and len(test) == 13
    else:  # the last 10 of 40 frames of each clip, after a gap of 3
        assert report.roles == ["train+test"] * 4 and len(test) == 4 * 3
        assert max((i - 1) % 40 for i in train_ids) <= 26
        assert min((i - 1) % 40 for i in test_ids) == 30


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    seq_len=st.integers(1, 6),
    stride=st.integers(1, 7),
    split=st.sampled_from(["auto", "clip", "time"]),
    fraction=st.floats(0.05, 0.9),
    seed=st.integers(0, 3),
)
def test_split_sequences_never_share_a_frame(counts, seq_len, stride, split, fraction, seed):
    try:
        parts = split_sequences(counts, seq_len=seq_len, stride=stride, split=split,
                                test_fraction=fraction, seed=seed)  # fmt: skip
    except ValueError as e:
        assert str(e).startswith("split: ")
        return

    def frames(rows):
        return {(c, s + t) for c, s in rows.tolist() for t in range(seq_len)}

    assert len(parts.test) > 0 and not frames(parts.train) & frames(parts.test)
    for c, s in np.concatenate([parts.train, parts.test]).tolist():
        assert 0 <= s and s + seq_len <= counts[c]
    assert len({tuple(r) for r in parts.test.tolist()}) == len(parts.test)


def test_split_by_clip_depends_on_the_seed_and_only_on_it():
    counts = [10] * 10
    roles = {
        seed: split_sequences(counts, seq_len=5, stride=5, seed=seed).roles for seed in range(6)
    }
    assert roles[0] == split_sequences(counts, seq_len=5, stride=5, seed=0).roles
    assert len({tuple(r) for r in roles.values()}) > 1
    assert all(r.count("test") == 1 for r in roles.values())


# The training stream and the test frames


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory) -> Path:
    """Two clips of 12 frames at 2 fps: 6 s of H.264 at 25 fps and 6 s of FFV1 at 10 fps."""
    folder = tmp_path_factory.mktemp("two")
    write_video(folder / "a.mp4", seconds=6)
    write_video(folder / "b.mkv", codec="ffv1", pix_fmt="bgr0", fps=10, seconds=6)
    return folder


def test_stream_batches_are_float_frames_in_unit_range_on_the_device(two_clips, cache):
    stream, test, report = make_video_data(two_clips, image_size=16, seq_len=4, split="clip",
                                           cache_dir=cache, progress=False)  # fmt: skip
    batch = stream.sample(5)
    assert batch.frames.shape == (5, 4, 3, 16, 16) and batch.frames.dtype == torch.float32
    assert batch.frames.is_contiguous() and test.is_contiguous()
    assert 0 <= batch.frames.min() and batch.frames.max() <= 1 and batch.frames.std() > 0.05
    assert batch.frames.device == torch.device("cpu") and test.device == torch.device("cpu")
    assert test.shape == (3, 4, 3, 16, 16)  # the test clip: 12 frames, 3 sequences
    assert isinstance(stream, VideoStream) and len(stream) == report.train_sequences == 3
    assert report.summary().endswith("split by clip: 3 train sequences, 3 test sequences of 4")


def test_stream_is_deterministic_and_resumes_from_its_state_dict(two_clips, cache):
    def make(seed=0):
        return make_video_data(two_clips, image_size=16, seq_len=2, stride=1, seed=seed,
                               cache_dir=cache, progress=False)  # fmt: skip

    def draws(stream):
        return torch.stack([stream.sample(16).starts for _ in range(2)])

    (a, test_a, _), (b, test_b, _) = make(), make()
    assert torch.equal(test_a, test_b)
    a.sample(3)
    state = a.state_dict()
    after = [a.sample(4) for _ in range(3)]
    b.load_state_dict(state)
    for batch in after:
        again = b.sample(4)
        assert torch.equal(batch.frames, again.frames) and torch.equal(batch.starts, again.starts)
    assert torch.equal(draws(make()[0]), draws(make()[0]))
    assert not torch.equal(draws(make(seed=1)[0]), draws(make()[0]))

    state["sequences"] = len(a) + 1
    with pytest.raises(ValueError, match="^data: the saved stream drew from"):
        b.load_state_dict(state)


def test_test_frames_are_a_deterministic_capped_subset_in_order(two_clips, cache):
    def test_frames(limit, seed=0):
        return make_video_data(two_clips, image_size=16, seq_len=2, split="time",
                               test_fraction=0.5, test_sequences=limit, seed=seed,
                               cache_dir=cache, progress=False)[1]  # fmt: skip

    everything = test_frames(100)
    assert everything.shape == (6, 2, 3, 16, 16)  # frames 6-11 of each clip, 3 sequences each
    capped = test_frames(4)
    rows = [next(i for i, seq in enumerate(everything) if torch.equal(seq, c)) for c in capped]
    assert len(capped) == 4 and rows == sorted(rows) and torch.equal(test_frames(4), capped)
    assert len({tuple(test_frames(4, seed=s)[:, 0, 0, 0, 0].tolist()) for s in range(8)}) > 1


# dvip data inspect


def test_dvip_data_inspect_prints_the_table_and_writes_the_contact_sheet(two_clips, tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a.mp4", "b.mkv"):
        (tmp_path / "data" / name).write_bytes((two_clips / name).read_bytes())
    (tmp_path / "data" / "empty.mov").write_bytes(b"")
    out = tmp_path / "out"
    result = run_cli("data", "inspect", tmp_path / "data", "--image-size", 16, "--seq-len", 4,
                     "--cache-dir", tmp_path / "c", "--out", out, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "clip", "status", "duration_s", "source_fps", "frames", "sequences", "cache", "note",
    ]  # fmt: skip
    assert lines[1].split() == ["a.mp4", "ok", "6.00", "25.00", "12", "3", "decoded"]
    assert lines[2].split() == ["b.mkv", "ok", "6.00", "10.00", "12", "3", "decoded"]
    assert lines[3].split() == ["empty.mov", "skipped", "-", "-", "0", "0", "empty", "file", "(0",
                                "bytes)"]  # fmt: skip
    assert "2 of 3 clips usable (1 unreadable, 0 too short), 24 frames at 2 fps" in lines[4]
    assert lines[5] == f"contact sheet: {out / 'contact_sheet.png'} (rows: a.mp4, b.mkv)"
    with Image.open(out / "contact_sheet.png") as sheet:  # 2 rows x 8 frames of 16 px, 2 px borders
        assert sheet.size == (2 + 8 * 18, 2 + 2 * 18) and sheet.mode == "RGB"


@pytest.mark.parametrize(
    ("args", "exit_code", "last_line"),
    [
        (["{p}/missing"], 2, "Error: Invalid value for 'PATH': {p}/missing: no such file or "
                             "folder"),
        (["{p}/z.mp4"], 1, "Error: data: {p}/z.mp4: empty file (0 bytes)"),
        (["{p}", "--fps", "0"], 2, "Error: Invalid value for '--fps': must be > 0, got 0.0"),
    ],
)  # fmt: skip
def test_dvip_data_inspect_bad_input_is_a_one_line_error(tmp_path, args, exit_code, last_line):
    (tmp_path / "z.mp4").write_bytes(b"")
    result = run_cli("data", "inspect", *[a.format(p=tmp_path) for a in args], "--quiet",
                     "--cache-dir", tmp_path / "c", "--out", tmp_path / "o")  # fmt: skip
    assert result.exit_code == exit_code
    assert result.output.strip().splitlines()[-1] == last_line.format(p=tmp_path)
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
