"""Real video for training: clips, decoded once into a memory-mapped cache, cut into sequences
and split into train and test.

:func:`make_video_data` is the one entry point the trainer calls. The pipeline:

1. :func:`~pyro_dvip.data.video_decode.find_clips`: the video files and frame folders under the
   path, sorted by name.
2. :func:`load_clips`: each clip's frames at ``fps``, ``image_size × image_size`` RGB, from the
   cache (:mod:`~pyro_dvip.data.video_cache`) or decoded into it. Unreadable clips are skipped
   with a warning and reported.
3. :func:`split_sequences`: sequences of ``seq_len`` frames every ``stride`` frames, split by
   clip or by time block so that no frame is in both train and test.
4. :class:`VideoStream`: random training sequences gathered from the memory maps, drawn with
   its own seeded generator; and a fixed tensor of test sequences.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config import FIELDS, TEST_SEED_OFFSET, check_value
from .video_cache import (
    CachedClip,
    DecodeSettings,
    content_hash,
    decode_to_cache,
    default_cache_dir,
    lookup,
)
from .video_decode import ClipError, ClipSource, DecodeInfo, error_text, find_clips

log = logging.getLogger(__name__)


@dataclass
class VideoClip:
    """One clip found under the data path, with its cached frames or why it was skipped.

    Attributes:
        source: where it is on disk (``source.name`` is the path relative to the data root).
        entry: its cache entry, ``None`` when skipped.
        decoded: whether this call decoded it (``False``: read from the cache, or skipped).
        error: why it was skipped (one line, without the path), ``None`` when usable.
    """

    source: ClipSource
    entry: CachedClip | None
    decoded: bool = False
    error: str | None = None

    @property
    def num_frames(self) -> int:
        return self.entry.num_frames if self.entry is not None else 0


@dataclass
class Split:
    """Training and test sequences as ``(clip index, first frame)`` rows.

    Attributes:
        train: int64 ``(S_train, 2)``, every ``stride`` frames inside the training frames.
        test: int64 ``(S_test, 2)``, non-overlapping (every ``seq_len`` frames) inside the
            test frames.
        roles: per clip, ``"train"``, ``"test"``, ``"train+test"`` (time split) or ``""``
            (too short for a sequence).
        split: the split made, ``"clip"`` or ``"time"`` (what ``"auto"`` chose).
    """

    train: np.ndarray
    test: np.ndarray
    roles: list[str]
    split: str


@dataclass
class VideoReport:
    """What :func:`load_clips` found and how :func:`make_video_data` used it.

    ``split`` is ``None``, ``roles`` empty and the sequence counts 0 for
    :func:`inspect_video`, which does not split. ``train_sequences`` is the number of
    sequences the stream draws from, ``test_sequences`` the number in the test frames.
    """

    path: Path
    cache_dir: Path
    fps: float
    image_size: int
    resize: str
    seq_len: int
    stride: int
    clips: list[VideoClip]
    split: str | None = None
    split_by_auto: bool = False  # ``split`` was chosen by ``"auto"``, not asked for
    roles: list[str] = field(default_factory=list)
    train_sequences: int = 0
    test_sequences: int = 0

    @property
    def skipped(self) -> int:
        """Clips that could not be read."""
        return sum(clip.entry is None for clip in self.clips)

    @property
    def usable(self) -> int:
        """Clips with at least one sequence."""
        return sum(clip.num_frames >= self.seq_len for clip in self.clips)

    @property
    def decoded(self) -> int:
        """Clips decoded by this call (the rest came from the cache or were skipped)."""
        return sum(clip.decoded for clip in self.clips)

    def table(self) -> pd.DataFrame:
        """One row per clip: clip, status, duration_s, source_fps, frames, sequences (every
        ``stride`` frames, before any split), split (only once split), cache (``hit`` or
        ``decoded``), note (why it was skipped, problems found while decoding). Durations and
        rates are NaN where unknown."""
        rows = []
        for i, clip in enumerate(self.clips):
            if clip.entry is None:
                status, info, notes = "skipped", DecodeInfo(), [clip.error]
            else:
                status = "ok" if clip.num_frames >= self.seq_len else "too short"
                info, notes = clip.entry.info, list(clip.entry.info.notes)
                if info.source_fps is not None and info.source_fps < self.fps:
                    notes.append(f"source slower than {self.fps:g} fps: frames repeat")
            rows.append(
                {
                    "clip": clip.source.name,
                    "status": status,
                    "duration_s": info.duration_s,
                    "source_fps": info.source_fps,
                    "frames": clip.num_frames,
                    "sequences": len(range(0, clip.num_frames - self.seq_len + 1, self.stride)),
                    **({"split": self.roles[i]} if self.roles else {}),
                    "cache": "" if clip.entry is None else "decoded" if clip.decoded else "hit",
                    "note": "; ".join(notes),
                }
            )
        return pd.DataFrame(rows).astype({"duration_s": float, "source_fps": float})  # None: NaN

    def summary(self) -> str:
        """One line: clips used and skipped, frames, sequences, the split."""
        frames = sum(clip.num_frames for clip in self.clips if clip.num_frames >= self.seq_len)
        text = (
            f"video {self.path}: {self.usable} of {len(self.clips)} clips usable "
            f"{self._unusable()}, {frames} frames at "
            f"{self.fps:g} fps, {self.image_size}x{self.image_size} ({self.resize}), "
            f"{self.decoded} decoded, cache {self.cache_dir}"
        )
        if self.split is not None:
            how = " (chosen by --split auto)" if self.split_by_auto else ""
            text += (
                f"; split by {self.split}{how}: {self.train_sequences} train sequences, "
                f"{self.test_sequences} test sequences of {self.seq_len}"
            )
        return text

    def check_usable(self) -> None:
        """Raise ``ValueError("data: ...")`` (one line) when no clip holds a sequence."""
        if self.usable:
            return
        first = self.clips[0]
        if len(self.clips) == 1:
            raise ValueError(f"data: {first.source.path}: {self._problem(first)}")
        raise ValueError(
            f"data: {self.path}: no usable clip among {len(self.clips)} {self._unusable()}; "
            f"first: {first.source.name}: {self._problem(first)}"
        )

    def _unusable(self) -> str:
        too_short = len(self.clips) - self.usable - self.skipped
        return f"({self.skipped} unreadable, {too_short} too short)"

    def _problem(self, clip: VideoClip) -> str:
        if clip.error is not None:
            return clip.error
        return f"{clip.num_frames} frames at {self.fps:g} fps, fewer than seq_len {self.seq_len}"


@dataclass
class VideoBatch:
    """Training sequences and where they come from.

    Attributes:
        frames: float32 ``(B, T, 3, S, S)`` in [0, 1] (uint8 / 255).
        clips: int64 ``(B,)``, each sequence's clip (an index into ``VideoReport.clips``).
        starts: int64 ``(B,)``, each sequence's first frame in its clip.
    """

    frames: torch.Tensor
    clips: torch.Tensor
    starts: torch.Tensor


class VideoStream:
    """Random training sequences from cached clips, drawn with a seeded generator.

    Each :meth:`sample` draws ``batch_size`` rows of ``sequences`` uniformly with replacement
    from the stream's own CPU ``torch.Generator`` (so the same seed gives the same batches on
    any device), gathers their frames from the memory-mapped cache and moves them to
    ``device``. ``state_dict`` / ``load_state_dict`` save and restore the position.

    Args:
        entries: the clips' cache entries (``None`` for skipped clips, never drawn).
        sequences: int64 ``(S, 2)``: ``(clip index into entries, first frame)`` per sequence.
        seq_len: T, frames per sequence.
        device: where batches go.
        seed: seed of the generator.
        split: the split the sequences come from (``"clip"`` or ``"time"``), for the record.
    """

    def __init__(
        self,
        entries: list[CachedClip | None],
        sequences: np.ndarray,
        *,
        seq_len: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
        split: str | None = None,
    ) -> None:
        if len(sequences) == 0:
            raise ValueError("data: no training sequence")
        self.split = split
        self.sequences = np.asarray(sequences, dtype=np.int64)  # (S, 2)
        self.seq_len = seq_len
        self.device = torch.device(device)
        # At most 64 clips memory-mapped at once: each map holds a file descriptor, and a folder
        # may hold thousands of clips.
        self._frames = lru_cache(maxsize=64)(lambda clip: entries[clip].open())
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.sequences)

    def state_dict(self) -> dict:
        """``{"generator": ByteTensor, "sequences": S}``: the position, and a size check."""
        return {"generator": self._generator.get_state(), "sequences": len(self.sequences)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by ``state_dict``; the next ``sample`` continues from it.

        Raises:
            ValueError: the state came from a stream with a different number of sequences
                (other data or settings), so resuming would not continue the same stream.
        """
        saved = int(state.get("sequences", len(self.sequences)))
        if saved != len(self.sequences):
            raise ValueError(
                f"data: the saved stream drew from {saved} training sequences, this data has "
                f"{len(self.sequences)}; resume with the same data and settings"
            )
        self._generator.set_state(state["generator"])

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (a distributed rank's own stream)."""
        self._generator.manual_seed(seed)

    def sample(self, batch_size: int) -> VideoBatch:
        """Draw ``batch_size`` training sequences (advances the generator)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rows = torch.randint(len(self.sequences), (batch_size,), generator=self._generator)
        chosen = self.sequences[rows.numpy()]  # (B, 2)
        index = torch.from_numpy(chosen).to(self.device)
        return VideoBatch(frames=self.gather(chosen), clips=index[:, 0], starts=index[:, 1])

    def gather(self, sequences: np.ndarray) -> torch.Tensor:
        """Frames of given ``(clip, first frame)`` rows ``(N, 2)``: float32
        ``(N, T, 3, S, S)`` in [0, 1] on the stream's device (used for the fixed test set).

        The uint8 frames cross to the device (a quarter of the float32 bytes); one copy there
        converts and reorders them into a contiguous tensor.
        """
        T = self.seq_len
        pixels = [self._frames(c)[s : s + T] for c, s in np.asarray(sequences).tolist()]
        uint8 = torch.from_numpy(np.stack(pixels)).to(self.device)  # (N, T, S, S, 3)
        frames = uint8.permute(0, 1, 4, 2, 3)  # (N, T, 3, S, S), a view
        return frames.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def load_clips(
    path: str | os.PathLike,
    *,
    image_size: int,
    fps: float = 2.0,
    resize: str = "crop",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[list[VideoClip], Path]:
    """Every clip under ``path`` at ``fps``, ``image_size`` and ``resize``, from the cache or
    decoded into it. A clip that cannot be read is kept with its ``error`` and a warning is
    logged; nothing is raised for it.

    Returns:
        ``(clips, cache_dir)``: the clips sorted by name, and the cache folder used.

    Raises:
        ValueError: ``"option: problem"`` for a missing path, a folder without clips, invalid
            settings or a cache folder that cannot be written.
    """
    check_settings(fps=fps, image_size=image_size, resize=resize)
    sources = find_clips(path)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    settings = DecodeSettings(float(fps), int(image_size), resize)
    # Bars appear only for decodes longer than a second; warnings print above them.
    redirect = logging_redirect_tqdm() if progress else nullcontext()
    bar = tqdm(sources, desc="clips", unit="clip", file=sys.stderr, delay=1.0,
               disable=not progress or len(sources) < 2)  # fmt: skip
    with redirect, bar:
        return [_load_clip(source, settings, cache_dir, progress) for source in bar], cache_dir


def _load_clip(
    source: ClipSource, settings: DecodeSettings, cache_dir: Path, progress: bool
) -> VideoClip:
    try:
        digest = content_hash(source)
        entry = lookup(cache_dir, digest, settings)
        if entry is not None:
            return VideoClip(source, entry)
        with tqdm(desc=source.name, unit="frame", file=sys.stderr, leave=False, delay=1.0,
                  disable=not progress) as bar:  # fmt: skip
            # The decoder's estimate is the bar's total (an estimate of 0: unknown).
            entry = decode_to_cache(source, digest, settings, cache_dir,
                                    on_expected=lambda total: bar.reset(total or None),
                                    on_frame=bar.update)  # fmt: skip
        return VideoClip(source, entry, decoded=True)
    except ClipError as e:
        log.warning("data: %s: skipped: %s", e.path, e.reason)
        return VideoClip(source, None, error=e.reason)
    except OSError as e:  # writing the cache, not reading the clip
        raise ValueError(f"cache_dir: {cache_dir}: cannot write ({error_text(e)})") from e


def check_settings(**values) -> None:
    """Raise ``ValueError("name: problem")`` for the first value that its
    :class:`~pyro_dvip.config.TrainConfig` field refuses: ``dvip train``'s own check (type,
    declared choices and range), for the callers without a configuration. ``image_size`` may
    be any size here; the networks' sizes are the model's concern."""
    for name, value in values.items():
        meta = FIELDS[name].metadata
        if name == "image_size":
            meta = {**meta, "choices": None, "at_least": 1}
        kind = FIELDS[name].type.split(" |")[0]  # "int", "float" or "str"
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ValueError(f"{name}: must be an integer, got {value!r}")
        if kind == "float" and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{name}: must be a finite number, got {value!r}")
        if kind == "str" and not isinstance(value, str):  # None too: "unset" to check_value
            raise ValueError(f"{name}: must be a string, got {value!r}")
        check_value(name, value, meta)


def inspect_video(
    path: str | os.PathLike,
    *,
    image_size: int = 64,
    seq_len: int = 5,
    fps: float = 2.0,
    stride: int | None = None,
    resize: str = "crop",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> VideoReport:
    """Load (decode or read from the cache) every clip under ``path`` and report on it,
    without splitting. Never raises for unusable clips: see :meth:`VideoReport.check_usable`.

    Raises:
        ValueError: as :func:`load_clips`, or invalid ``seq_len`` / ``stride``.
    """
    stride = seq_len if stride is None else stride
    check_settings(seq_len=seq_len, stride=stride)
    clips, cache_dir = load_clips(
        path, image_size=image_size, fps=fps, resize=resize, cache_dir=cache_dir,
        progress=progress,
    )  # fmt: skip
    report = VideoReport(
        path=Path(path).expanduser(), cache_dir=cache_dir, fps=float(fps), image_size=image_size,
        resize=resize, seq_len=seq_len, stride=stride, clips=clips,
    )  # fmt: skip
    for clip in clips:
        if clip.entry is not None and clip.num_frames < seq_len:
            log.warning("data: %s: skipped: %s", clip.source.path, report._problem(clip))
    return report


def split_sequences(
    frame_counts: list[int],
    *,
    seq_len: int,
    stride: int,
    split: str = "auto",
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Cut clips of ``frame_counts`` frames into sequences and split them into train and test.

    Clips with fewer than ``seq_len`` frames are not used.

    * ``split="auto"`` (the default): ``"clip"`` or ``"time"``, as :func:`choose_split` picks.
    * ``split="clip"``: ``max(1, round(test_fraction × clips))`` whole clips, at most all but
      one, chosen by a permutation seeded with ``seed``, are test; the rest are train.
    * ``split="time"``: in each clip of N frames the last ``max(seq_len,
      round(test_fraction × N))`` frames are test and the ``seq_len`` frames before them a
      gap used by neither, so no training sequence ends right where a test sequence starts.
      A clip too short for both (fewer than ``seq_len`` training frames left) is train only.

    Training sequences start every ``stride`` frames inside the training frames; test
    sequences every ``seq_len`` frames (they never overlap) inside the test frames. No frame
    is in both.

    Raises:
        ValueError: ``"split: ..."`` when no test sequence is possible (fewer than 2 usable
            clips for ``"clip"``, no clip long enough for ``"time"``), or invalid settings.
    """
    check_settings(seq_len=seq_len, stride=stride, split=split, test_fraction=test_fraction)
    if split == "auto":
        split = choose_split(frame_counts, seq_len=seq_len, test_fraction=test_fraction)
    usable = [i for i, n in enumerate(frame_counts) if n >= seq_len]
    roles = [""] * len(frame_counts)
    train, test = [], []

    def cut(clip: int, begin: int, end: int, role: str) -> None:
        step, into = (stride, train) if role == "train" else (seq_len, test)
        into.extend((clip, start) for start in range(begin, end - seq_len + 1, step))

    if split == "clip":
        if len(usable) < 2:
            raise ValueError(
                f"split: 'clip' needs at least 2 clips of {seq_len} frames or more, found "
                f"{len(usable)}; split 'time' holds out the end of each clip instead"
            )
        n_test = min(max(1, round(test_fraction * len(usable))), len(usable) - 1)
        order = torch.randperm(len(usable), generator=torch.Generator().manual_seed(seed))
        test_clips = {usable[j] for j in order[:n_test].tolist()}
        for clip in usable:
            roles[clip] = "test" if clip in test_clips else "train"
            cut(clip, 0, frame_counts[clip], roles[clip])
    else:
        for clip in usable:
            n = frame_counts[clip]
            train_end, test_begin = _time_blocks(n, seq_len, test_fraction)
            if train_end < seq_len:
                roles[clip] = "train"
                cut(clip, 0, n, "train")
            else:
                roles[clip] = "train+test"
                cut(clip, 0, train_end, "train")
                cut(clip, test_begin, n, "test")
        if not test:
            raise ValueError(
                f"split: no clip is long enough to hold out its end (each needs at least "
                f"{3 * seq_len} frames at this fps for 'time')"
            )

    def rows(pairs: list) -> np.ndarray:
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    return Split(train=rows(train), test=rows(test), roles=roles, split=split)


def _time_blocks(n: int, seq_len: int, test_fraction: float) -> tuple[int, int]:
    """``(end of the training frames, first test frame)`` of a clip of ``n`` frames split by
    time: the ``seq_len`` frames between them are the gap."""
    test_begin = n - max(seq_len, round(test_fraction * n))
    return test_begin - seq_len, test_begin


def choose_split(frame_counts: list[int], *, seq_len: int, test_fraction: float) -> str:
    """What ``split="auto"`` makes of clips of ``frame_counts`` frames: ``"clip"`` (whole clips
    held out) when ``test_fraction`` of the usable clips rounds to at least one clip (6 or more
    at the default 0.1), ``"time"`` (the end of every clip) otherwise; whichever of the two is
    possible when the preferred one is not (``"clip"`` needs 2 usable clips, ``"time"`` a clip
    of ``3 × seq_len`` frames or more).

    Raises:
        ValueError: ``"split: ..."`` when neither is possible.
    """
    usable = sum(n >= seq_len for n in frame_counts)
    if usable >= 2 and round(test_fraction * usable) >= 1:
        return "clip"
    if any(_time_blocks(n, seq_len, test_fraction)[0] >= seq_len for n in frame_counts):
        return "time"
    if usable >= 2:
        return "clip"
    raise ValueError(
        f"split: one usable clip, too short to hold out its end: 'time' needs a clip of at "
        f"least {3 * seq_len} frames at this fps (seq_len {seq_len} of training, a gap, "
        "seq_len of test), 'clip' at least 2 clips"
    )


def choose_test_sequences(test: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` rows of ``test`` ``(S_test, 2)``, a seeded random subset kept in order."""
    if len(test) <= limit:
        return test
    generator = torch.Generator().manual_seed(seed + TEST_SEED_OFFSET)
    keep = torch.randperm(len(test), generator=generator)[:limit].sort().values
    return test[keep.numpy()]


def make_video_data(
    path: str | os.PathLike,
    *,
    image_size: int,
    seq_len: int,
    fps: float = 2.0,
    stride: int | None = None,
    resize: str = "crop",
    split: str = "auto",
    test_fraction: float = 0.1,
    test_sequences: int = 256,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[VideoStream, torch.Tensor, VideoReport]:
    """The training stream and fixed test frames from the video under ``path``.

    Args:
        path: a video file, a folder of video files (searched recursively) or a folder of
            frame folders (one per clip); see :func:`~pyro_dvip.data.video_decode.find_clips`.
        image_size: S, frames are ``S × S`` RGB.
        seq_len: T, frames per sequence.
        fps: frames per second kept from videos (2, the paper's rate); frame folders keep
            every image.
        stride: frames between the starts of training sequences (default ``seq_len``).
        resize: ``"crop"`` (centre square, then resize) or ``"squash"`` (resize the frame).
        split: ``"auto"`` (whole clips when there are enough, else the end of every clip;
            see :func:`choose_split`), ``"clip"`` (whole clips held out) or ``"time"`` (the end
            of every clip); see :func:`split_sequences`. ``report.split`` says which was made.
        test_fraction: the share of clips, or of each clip's frames, held out.
        test_sequences: at most this many test sequences (a seeded subset when there are more).
        seed: seeds the split, the test subset and the stream.
        cache_dir: the decoded-frame cache (default ``$DVIP_CACHE_DIR`` or
            ``~/.cache/pyro-dvip/video``).
        device: where batches and test frames go.
        progress: progress bars on stderr while decoding.

    Returns:
        ``(stream, test_frames, report)``: a :class:`VideoStream` of training sequences,
        float32 test frames ``(N, T, 3, S, S)`` in [0, 1] on ``device`` (N ≤ ``test_sequences``),
        and the :class:`VideoReport` (its :meth:`~VideoReport.summary` is logged).

    Raises:
        ValueError: one line, ``"option: problem"``: ``"data: PATH: ..."`` for a missing path,
            no clips, or no usable clip; ``"split: ..."``, ``"cache_dir: ..."``, or an
            invalid setting named by its argument.
    """
    # before decoding, which may take long (inspect_video checks the rest before it too)
    check_settings(split=split, test_fraction=test_fraction, test_sequences=test_sequences)

    report = inspect_video(
        path, image_size=image_size, seq_len=seq_len, fps=fps, stride=stride, resize=resize,
        cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
    report.check_usable()
    parts = split_sequences(
        [clip.num_frames for clip in report.clips], seq_len=seq_len, stride=report.stride,
        split=split, test_fraction=test_fraction, seed=seed,
    )  # fmt: skip
    entries = [clip.entry for clip in report.clips]
    stream = VideoStream(
        entries, parts.train, seq_len=seq_len, device=device, seed=seed, split=parts.split
    )
    test = choose_test_sequences(parts.test, test_sequences, seed)
    test_frames = stream.gather(test)

    report.split, report.split_by_auto, report.roles = parts.split, split == "auto", parts.roles
    report.train_sequences, report.test_sequences = len(parts.train), len(test)
    log.info("%s", report.summary())
    return stream, test_frames, report


def contact_sheet(
    report: VideoReport, path: str | os.PathLike, *, columns: int = 8, rows: int = 8
) -> list[str]:
    """Write a PNG grid of frames: one row per clip (up to ``rows`` usable clips, evenly
    spread over the list), ``columns`` frames evenly spaced in time across each clip,
    2-pixel white borders.

    Returns:
        The names of the clips shown, one per row, top to bottom.

    Raises:
        ValueError: no usable clip (see :meth:`VideoReport.check_usable`).
        OSError: the PNG cannot be written.
    """
    report.check_usable()
    usable = [clip for clip in report.clips if clip.num_frames >= report.seq_len]
    picks = np.unique(np.linspace(0, len(usable) - 1, min(rows, len(usable))).round().astype(int))
    shown = [usable[i] for i in picks]
    size, pad = report.image_size, 2
    cell = size + pad
    sheet = np.full((pad + len(shown) * cell, pad + columns * cell, 3), 255, np.uint8)
    for r, clip in enumerate(shown):
        frames = clip.entry.open()  # (N, S, S, 3)
        times = np.linspace(0, clip.num_frames - 1, columns).round().astype(int)
        for c, t in enumerate(times):
            top, left = pad + r * cell, pad + c * cell
            sheet[top : top + size, left : left + size] = frames[t]
    Image.fromarray(sheet).save(path)
    return [clip.source.name for clip in shown]
