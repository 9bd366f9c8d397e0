"""The on-disk cache of decoded clips: uint8 frames, memory-mapped.

One entry per clip and decode settings, named by the clip's content hash (sha256 of the file's
bytes; for a frame folder, of its image names and bytes) and the settings::

    CACHE_DIR/ab/<sha256>-2.0fps-64px-crop-v1.frames   raw uint8, (N, S, S, 3) in C order
    CACHE_DIR/ab/<sha256>-2.0fps-64px-crop-v1.json     N, S, the source's fps and duration, notes

Both are written to a temporary file, fsynced and renamed; the JSON goes last and is the
completion marker. An entry is used only when its JSON parses, names this format version and
settings, and the frame file holds exactly N·S·S·3 bytes, so a decode killed at any point is
rebuilt on the next run, never used. Leftover ``*.tmp`` files come from such kills (or from a
decode running right now) and are safe to delete when nothing is decoding.

``CACHE_DIR`` is the ``cache_dir`` argument, else ``$DVIP_CACHE_DIR``, else
``$XDG_CACHE_HOME/pyro-dvip/video``, else ``~/.cache/pyro-dvip/video``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import video_decode
from .video_decode import ClipError, ClipSource, DecodeInfo, error_text, frame_files, one_line

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump whenever decoding changes what an entry holds
CACHE_ENV = "DVIP_CACHE_DIR"
_CHUNK = 1 << 20
INFO_KEYS = [f.name for f in fields(DecodeInfo)]  # stored in the JSON beside the entry's own keys


def default_cache_dir() -> Path:
    """``$DVIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyro-dvip/video``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "pyro-dvip" / "video"


@dataclass(frozen=True)
class DecodeSettings:
    """What an entry depends on besides the clip's content."""

    fps: float
    image_size: int
    resize: str

    def tag(self) -> str:
        """E.g. ``"2.0fps-64px-crop-v1"`` (the fps in full: 2.0000001 is not 2.0)."""
        return f"{self.fps!r}fps-{self.image_size}px-{self.resize}-v{FORMAT_VERSION}"


@dataclass(frozen=True)
class CachedClip:
    """A complete cache entry.

    Attributes:
        frames_path: the raw uint8 frame file, ``(num_frames, S, S, 3)`` in C order.
        num_frames: N.
        image_size: S.
        info: what decoding found (source fps, duration, notes).
    """

    frames_path: Path
    num_frames: int
    image_size: int
    info: DecodeInfo

    def open(self) -> np.memmap:
        """The frames, memory-mapped read-only: ``(N, S, S, 3)`` uint8."""
        shape = (self.num_frames, self.image_size, self.image_size, 3)
        return np.memmap(self.frames_path, dtype=np.uint8, mode="r", shape=shape)


def content_hash(clip: ClipSource) -> str:
    """sha256 (hex) of a video file's bytes, or of a frame folder's image names and bytes.

    Raises:
        ClipError: a file cannot be read.
    """
    try:
        if clip.kind == "video":
            return _file_sha256(clip.path)
        digest = hashlib.sha256()
        for file in frame_files(clip.path):
            digest.update(f"{file.name}\0{_file_sha256(file)}\n".encode())
        return digest.hexdigest()
    except OSError as e:
        raise ClipError(clip.path, f"cannot read ({error_text(e)})") from e


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def entry_paths(cache_dir: Path, digest: str, settings: DecodeSettings) -> tuple[Path, Path]:
    """The frame file and the JSON marker of one entry."""
    stem = cache_dir / digest[:2] / f"{digest}-{settings.tag()}"
    return stem.with_name(stem.name + ".frames"), stem.with_name(stem.name + ".json")


def lookup(cache_dir: Path, digest: str, settings: DecodeSettings) -> CachedClip | None:
    """The complete entry for this content and these settings, or ``None``."""
    frames_path, meta_path = entry_paths(cache_dir, digest, settings)
    try:
        meta = json.loads(meta_path.read_text())
        n, size = int(meta["frames"]), int(meta["image_size"])
        complete = (
            meta["format_version"] == FORMAT_VERSION
            and meta["settings"] == settings.tag()
            and n > 0
            and size == settings.image_size
            and frames_path.stat().st_size == n * size * size * 3
        )
        info = DecodeInfo(**{name: meta[name] for name in INFO_KEYS})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("cache_dir: %s: unreadable entry, rebuilding (%s)", meta_path, one_line(e))
        return None
    if not complete:
        log.warning("cache_dir: %s: incomplete entry, rebuilding", meta_path)
        return None
    return CachedClip(frames_path, n, size, info)


def decode_to_cache(
    clip: ClipSource,
    digest: str,
    settings: DecodeSettings,
    cache_dir: Path,
    on_expected: Callable[[int], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> CachedClip:
    """Decode ``clip`` into a new entry, written atomically, and return it.

    Args:
        clip: the clip; ``digest`` its :func:`content_hash`.
        settings: frame rate, size and resize mode.
        cache_dir: the cache's root folder (created if missing).
        on_expected: receives the estimated number of frames before decoding (progress).
        on_frame: called after each frame is written (progress).

    Raises:
        ClipError: the clip cannot be decoded (nothing is left in the cache).
        OSError: the cache cannot be written.
    """
    frames_path, meta_path = entry_paths(cache_dir, digest, settings)
    frames_path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with _atomic_file(frames_path) as out:

        def write(frame: np.ndarray) -> None:  # (S, S, 3) uint8
            nonlocal count
            out.write(frame.tobytes())
            count += 1
            if on_frame is not None:
                on_frame()

        info = video_decode.decode_clip(clip, **asdict(settings), emit=write, expected=on_expected)
        if count == 0:
            raise ClipError(clip.path, "no frame kept")
    meta = {
        "format_version": FORMAT_VERSION,
        "settings": settings.tag(),
        "frames": count,
        "image_size": settings.image_size,
        "layout": "(frames, height, width, RGB) uint8, C order",
        "source": str(clip.path),
        "content_sha256": digest,
        **asdict(info),  # INFO_KEYS
    }
    with _atomic_file(meta_path) as out:  # written last: the entry's completion marker
        out.write(json.dumps(meta, indent=1).encode())
    _fsync_dir(meta_path.parent)
    return CachedClip(frames_path, count, settings.image_size, info)


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once fully written and fsynced; on any
    exception (KeyboardInterrupt included) the temporary file is deleted."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=_CHUNK) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    with suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
