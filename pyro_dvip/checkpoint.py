"""Checkpoints: tensors and plain values only, written atomically, loaded with weights_only.

A checkpoint holds the model and optimizer state, the step, every RNG state (Python, NumPy,
torch, CUDA) and the data stream's position, so a resumed run continues the same stream.
Configuration lives beside it in ``config.json``, never pickled.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, corrupt, or carrying pickled code."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    mt = state["numpy"]  # NumPy's Mersenne Twister
    keys = mt["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, mt["pos"], mt["has_gauss"], mt["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write_bytes(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary file, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data_state: dict,
    keep: int = 3,
    loop: dict | None = None,
    rng: dict | list | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXXX.pt`` atomically and keep the newest ``keep``.

    ``loop`` holds the training loop's own counters (plain numbers); ``rng`` the RNG states
    (default: this process's; a distributed run passes one per rank, as ``data_state``)."""
    model_state = model.state_dict()
    floats = [v for v in model_state.values() if torch.is_tensor(v) and v.is_floating_point()]
    if not all(torch.isfinite(v).all() for v in floats):
        raise CheckpointError(f"refusing to save step {step}: the model has non-finite parameters")
    state = {
        "format": FORMAT_VERSION,
        "step": step,
        "model": model_state,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state() if rng is None else rng,
        "data": data_state,
        "loop": loop or {},
    }
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    atomic_write_bytes(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first (temporary files excluded)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with ``weights_only=True``; raise :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: refused, not a plain-tensor checkpoint (it would need to run pickled "
            f"code to load): {first}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a pyro-dvip checkpoint (format {FORMAT_VERSION})")
    return state


def latest_checkpoint(run_dir: Path, map_location="cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; unusable newer ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as e:
            log.warning("skipping %s", e)
    return None
