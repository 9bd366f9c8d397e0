"""Finding clips under a path and decoding them to square RGB frames at a fixed rate.

A clip is a video file, decoded with PyAV, or a folder of frame images (PNG or JPEG, one image
per frame, read with Pillow). Every kept frame is converted to RGB whatever the source (grey,
YUV, palette; an alpha channel is dropped, not composited), turned upright when the video
carries a rotation, centre-cropped to a square (or squashed) and resized to
``image_size × image_size`` with Pillow's antialiased bilinear filter.

Videos are resampled to ``fps`` by presentation timestamp (:func:`resample`); frame folders
carry no timestamps, so each image is one frame at the output rate.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

Item = TypeVar("Item")


class ClipError(ValueError):
    """A clip that cannot be used: ``str(error)`` is ``"PATH: reason"``, one line."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ClipSource:
    """One clip on disk.

    Attributes:
        path: the video file, or the folder holding the clip's frame images.
        kind: ``"video"`` or ``"frames"``.
        name: the path relative to the data root (the file's name when the root is the clip),
            used in reports and as the deterministic sort key.
    """

    path: Path
    kind: str
    name: str


@dataclass
class DecodeInfo:
    """What decoding one clip found, beyond its frames.

    Attributes:
        source_fps: the stream's average frame rate (``None`` for frame folders, or a video
            whose container does not record one).
        duration_s: seconds from the first to the end of the last source frame (``None`` for
            frame folders).
        source_frames: frames decoded from the source, before resampling.
        notes: problems that did not stop decoding (corrupt packets, a truncated stream).
    """

    source_fps: float | None = None
    duration_s: float | None = None
    source_frames: int = 0
    notes: list[str] = field(default_factory=list)


def one_line(text: object) -> str:
    """``text`` with control characters and runs of whitespace collapsed to single spaces."""
    return re.sub(r"[\s\x00-\x1f\x7f]+", " ", str(text)).strip()


def error_text(error: Exception) -> str:
    """An error's message in one line, without the errno and file name that ``OSError`` and
    PyAV's errors add."""
    return one_line(getattr(error, "strerror", None) or error)


def find_clips(path: str | os.PathLike) -> list[ClipSource]:
    """The clips under ``path``, sorted by their name relative to ``path``.

    ``path`` is a video file (any extension: an explicitly named file is always tried), or a
    folder searched recursively (symbolic links followed, each real folder once; names
    starting with ``.`` skipped) for video files with an extension in
    :data:`VIDEO_EXTENSIONS` and for folders that directly hold images with an extension in
    :data:`IMAGE_EXTENSIONS` (each such folder is one clip). Extensions are matched
    case-insensitively.

    Raises:
        ValueError: ``"data: PATH: ..."`` when ``path`` does not exist, is a single image, or
            holds no clip.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ValueError(f"data: {root}: no such file or folder")
    if not root.is_dir():
        if root.suffix.lower() in IMAGE_EXTENSIONS:
            raise ValueError(
                f"data: {root}: a single image; give the folder that holds a clip's frames"
            )
        return [ClipSource(root, "video", root.name)]

    clips = []
    seen = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symbolic link back into the tree
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        files = sorted(f for f in files if not f.startswith("."))
        folder = Path(folder)
        relative = folder.relative_to(root)
        if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files):
            name = root.name if relative == Path(".") else relative.as_posix()
            clips.append(ClipSource(folder, "frames", name))
        for f in files:
            if Path(f).suffix.lower() in VIDEO_EXTENSIONS:
                clips.append(ClipSource(folder / f, "video", (relative / f).as_posix()))
    if not clips:
        videos = ", ".join(VIDEO_EXTENSIONS)
        images = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(
            f"data: {root}: no video files ({videos}) or folders of frame images ({images})"
        )
    return sorted(clips, key=lambda clip: clip.name)


def frame_files(folder: Path) -> list[Path]:
    """A frame folder's images in natural order (``frame_2`` before ``frame_10``)."""
    images = [
        f
        for f in folder.iterdir()
        if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
    ]
    return sorted(images, key=_natural_key)


def _natural_key(path: Path) -> list:
    parts = re.split(r"(\d+)", path.name)
    return [(0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts]


def resample(timed: Iterable[tuple[Fraction, Item]], fps: Fraction) -> Iterator[Item]:
    """Resample timestamped items to ``fps``: for each output time ``t0 + k / fps`` the latest
    item whose time is at most that time (``t0``: the first item's time).

    An item whose time is not after the previous item's is dropped (out-of-order or repeated
    timestamps). Output stops at the last item's time, so items spanning ``D`` seconds give
    ``floor(D * fps) + 1`` outputs: 5 s of 25 fps video (times 0 to 4.96) gives 10 at 2 fps.
    When ``fps`` is above the items' rate, items repeat. Exact rational arithmetic, so an
    item exactly at an output time is always the one picked.
    """
    start = previous = previous_time = None
    k = 0
    for time, item in timed:
        if start is None:
            start = time
        elif time <= previous_time:
            continue
        while start + k / fps < time:  # output times before this item get the previous one
            yield previous
            k += 1
        previous, previous_time = item, time
    if start is not None:
        while start + k / fps <= previous_time:
            yield previous
            k += 1


def square_frame(rgb: np.ndarray, image_size: int, resize: str) -> np.ndarray:
    """One frame ``(H, W, 3)`` uint8 to ``(image_size, image_size, 3)`` uint8.

    ``resize="crop"``: the centred ``min(H, W)`` square, resized; ``"squash"``: the whole
    frame resized, ignoring its aspect ratio. Pillow's bilinear filter widens with the
    scale factor when shrinking, so downscaling is antialiased.
    """
    if resize == "crop":  # cropped before resizing, so the filter never reads outside it
        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        rgb = rgb[top : top + side, left : left + side]
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))


def decode_clip(
    clip: ClipSource,
    *,
    fps: float,
    image_size: int,
    resize: str,
    emit: Callable[[np.ndarray], None],
    expected: Callable[[int], None] | None = None,
) -> DecodeInfo:
    """Decode ``clip``, calling ``emit`` with each kept frame, ``(S, S, 3)`` uint8, in order.

    Args:
        clip: the clip to decode.
        fps: output frame rate for videos (ignored for frame folders).
        image_size: S, the output frames' height and width.
        resize: ``"crop"`` or ``"squash"`` (see :func:`square_frame`).
        emit: receives each output frame; its array may be reused after the call returns.
        expected: called once, before the first frame, with an estimate of the number of
            output frames (for a progress bar).

    Returns:
        What decoding found (:class:`DecodeInfo`).

    Raises:
        ClipError: the clip cannot be read or yields no frame; the message names the file.
    """
    if clip.kind == "video":
        rate = Fraction(fps).limit_denominator(1_000_000)  # exact: 2.0 -> 2, 29.97 -> 2997/100
        return _decode_video(clip.path, rate, image_size, resize, emit, expected)
    files = frame_files(clip.path)  # one image, one frame: folders carry no timestamps
    if not files:
        raise ClipError(clip.path, "no frame images")
    if expected is not None:
        expected(len(files))
    for file in files:
        try:
            rgb = read_image(file)
        except ClipError as e:
            raise ClipError(clip.path, f"{file.name}: {e.reason}") from e
        emit(square_frame(rgb, image_size, resize))
    return DecodeInfo(source_frames=len(files))


def _decode_video(path, fps: Fraction, image_size, resize, emit, expected) -> DecodeInfo:
    """:func:`decode_clip` for a video file (its arguments, ``fps`` exact)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ClipError(path, f"cannot read ({error_text(e)})") from e
    if size == 0:
        raise ClipError(path, "empty file (0 bytes)")
    try:
        container = av.open(f"file:{path.absolute()}", metadata_errors="ignore")
    except (av.FFmpegError, OSError) as e:
        raise ClipError(path, f"not a readable video ({error_text(e)})") from e

    with container:
        if not container.streams.video:
            raise ClipError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.base_rate  # from the container, not guessed
        declared = _declared_seconds(container, stream)
        if expected is not None:
            expected(int(declared * fps) + 1 if declared else 0)
        found = {"frames": 0, "corrupt": 0, "broken": False, "first": None, "last": None}
        timed = _timed_frames(container, stream, rate, path, found)

        converted_frame = converted = None
        for frame in resample(timed, fps):
            if frame is not converted_frame:  # a frame repeated by upsampling converts once
                converted_frame = frame
                converted = square_frame(_upright_rgb(frame, path), image_size, resize)
            emit(converted)

    if found["frames"] == 0:
        raise ClipError(path, "no decodable video frame")
    info = DecodeInfo(source_fps=float(rate) if rate else None, source_frames=found["frames"])
    span = found["last"] - found["first"]
    info.duration_s = float(span + (1 / rate if rate else 0))
    if found["corrupt"]:
        packets = "packet" if found["corrupt"] == 1 else "packets"
        info.notes.append(f"{found['corrupt']} corrupt {packets} skipped")
    if found["broken"] or (declared and info.duration_s < 0.9 * declared):
        info.notes.append(
            f"truncated: decoded {info.duration_s:.1f} s"
            + (f" of {declared:.1f} s" if declared else "")
        )
    return info


def _upright_rgb(frame: av.VideoFrame, path: Path) -> np.ndarray:
    """The frame as ``(H, W, 3)`` uint8 RGB, from any pixel format, turned as displayed."""
    try:
        rgb = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, ValueError) as e:  # a pixel format FFmpeg cannot convert
        raise ClipError(
            path, f"cannot convert {frame.format.name} frames to RGB ({error_text(e)})"
        ) from e
    turns = round((frame.rotation or 0) / 90)  # the display matrix, counter-clockwise
    return np.rot90(rgb, turns) if turns % 4 else rgb


def _timed_frames(
    container, stream, rate: Fraction | None, path: Path, found: dict
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """``(presentation time in seconds, frame)`` for each of a video stream's decoded frames.

    A packet that fails to decode is skipped and counted; an error from the container (a
    truncated or broken file) ends the iteration, keeping what was decoded. ``found`` receives
    the counts and the first and last frame times.
    """
    try:
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                found["corrupt"] += 1  # skip it and go on, as ffmpeg does
                continue
            for frame in decoded:
                if frame.pts is not None and stream.time_base is not None:
                    time = frame.pts * stream.time_base
                elif rate:
                    time = Fraction(found["frames"]) / rate
                else:
                    raise ClipError(path, "frames have no timestamps or frame rate")
                found["frames"] += 1
                found["first"] = time if found["first"] is None else found["first"]
                found["last"] = time if found["last"] is None else max(found["last"], time)
                yield time, frame
    except av.FFmpegError:
        found["broken"] = True


def _declared_seconds(container, stream) -> float | None:
    """The duration the file declares: the stream's, else the container's (seconds)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # in AV_TIME_BASE units
    return None


def read_image(file: Path) -> np.ndarray:
    """One image as ``(H, W, 3)`` uint8 RGB: grey repeated, alpha dropped, 16-bit scaled to 8.

    Raises:
        ClipError: the file is not a readable image.
    """
    try:
        with Image.open(file) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey
                grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ClipError(file, f"not a readable image ({one_line(e)})") from e
