"""From a configuration to what it describes: the DVIP model (its prior and decoder), Adam, the
seeded training stream and the frozen test frames; and ``load``, the trained model of a run
directory. Training (``train.py``), evaluation and the command line build through here.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path

import torch

from .checkpoint import latest_checkpoint, load_checkpoint
from .config import TEST_SEED_OFFSET, TrainConfig
from .data import MovingMNIST, VideoStream, load_digits, make_test_set, make_video_data
from .data.discs import MovingDiscs, disc_options, make_disc_test_set
from .decoders import make_decoder
from .glimpse import GlimpseDecoder
from .model import DVIP
from .priors import FactoredMLPTransition, Transition


class RunError(RuntimeError):
    """A run that cannot start or continue; the message is one line for the user."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


def import_transition(target: str) -> type[Transition]:
    """Import ``package.module:ClassName`` and check it is a :class:`Transition` subclass."""
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"transition: expected 'package.module:ClassName', got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: a prior in the user's project
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"transition: cannot import module {module_name!r} ({e})") from e
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Transition)):
        raise ValueError(f"transition: {target!r} is not a pyro_dvip.Transition subclass")
    if cls is Transition:
        raise ValueError(f"transition: {target!r} is the interface itself; name a subclass")
    return cls


def build_model(config: TrainConfig) -> DVIP:
    transition = import_transition(config.transition) if config.transition else None
    if config.transition_sd is not None:  # the paper's MLP, its noise held or capped
        capped = config.transition_sd_from is not None
        transition = FactoredMLPTransition(
            config.model_factors, config.model_factor_dim,
            num_hidden_layers=config.transition_layers,
            fixed_sd=None if capped else config.transition_sd, capped=capped,
        )  # fmt: skip
    # Rendered per block of the configured factors, also when the prior is entangled.
    decoder = None
    if config.decoder == "glimpse":
        decoder = functools.partial(
            GlimpseDecoder, config.channels, config.image_size, config.factors,
            config.factor_dim, config.appearance_dim, config.glimpse_side,
            config.decoder_width or config.width, background=config.background,
            gates=config.factor_gates,
        )  # fmt: skip
    elif config.decoder != "paper":
        decoder = functools.partial(
            make_decoder, config.decoder, config.channels, config.image_size, config.factors,
            config.factor_dim, config.decoder_width or config.width, background=config.background,
        )  # fmt: skip
    return DVIP(
        config.model_factors, config.model_factor_dim, config.channels, config.image_size,
        obs_var=config.obs_var, width=config.width, transition=transition,
        transition_layers=config.transition_layers, decoder=decoder,
        encoder_linear_act=config.encoder_linear_act, encoder=config.encoder,
        residual_width=config.residual_width, glimpse_match=config.glimpse_match,
        guide_previous=config.guide_previous, glimpse_window=config.glimpse_window,
    )  # fmt: skip


def build_training(config: TrainConfig, device: torch.device) -> tuple[DVIP, torch.optim.Adam]:
    """The model on ``device`` and its Adam, laid out for speed (the same values and updates):
    convolution weights channels-last, the faster layout for oneDNN and cuDNN, and Adam's
    fused kernel for all parameters at once instead of a loop over them."""
    dvip = build_model(config).to(device, memory_format=torch.channels_last)
    return dvip, torch.optim.Adam(dvip.parameters(), lr=config.lr, fused=True)


BACKGROUND_SEQUENCES = 256  # training sequences whose per-pixel median starts the background
BACKGROUND_SEED_OFFSET = 7_919  # their stream's seed, past the run's: its own data untouched


@torch.no_grad()
def start_background(dvip: DVIP, config: TrainConfig) -> None:
    """``--background-start median``: set the static background's colour to the per-pixel
    median of ``BACKGROUND_SEQUENCES`` training sequences' frames, drawn from a stream of
    their own (seed ``config.seed + BACKGROUND_SEED_OFFSET``: the run's stream, test set and
    random state are untouched); its colour logits, clamped to [0.01, 0.99] first."""
    if config.background_start != "median":
        return
    stream, _ = make_data(config, torch.device("cpu"), config.seed + BACKGROUND_SEED_OFFSET)
    frames = stream.sample(BACKGROUND_SEQUENCES).frames  # (B, T, C, H, W)
    median = frames.flatten(0, 1).median(0).values.clamp(0.01, 0.99)  # (C, H, W)
    background = dvip.decoder.background  # (C or C + mask channels, H, W) logits
    background[: config.channels].copy_(torch.logit(median).to(background))


def make_data(
    config: TrainConfig, device: torch.device, stream_seed: int | None = None
) -> tuple[MovingMNIST | MovingDiscs | VideoStream, torch.Tensor]:
    """The seeded training stream on ``device`` (seed ``config.seed`` unless ``stream_seed``) and
    the frozen test frames: held-out digits for Moving MNIST, sequences from the test seed
    for the disc scene, held-out clips or time blocks for video (``config.data``)."""
    if config.data is not None:
        return _make_video_data(config, device, stream_seed)
    seed = config.seed if stream_seed is None else stream_seed
    if config.scene == "discs":
        options = disc_options(config)
        stream = MovingDiscs(device=device, seed=seed, **options)
        test_seed = config.seed + TEST_SEED_OFFSET
        test = make_disc_test_set(config.test_sequences, seed=test_seed, **options)
        return stream, test.frames.to(device)
    kwargs = dict(
        image_size=config.image_size, channels=config.channels, seq_len=config.seq_len,
        num_digits=config.num_digits, speed=config.digit_speed, arena=config.arena,
        identical=config.identical_digits,
    )  # fmt: skip
    try:
        digits, labels = load_digits("train", config.mnist_root)
        test_digits, test_labels = load_digits("test", config.mnist_root)
    except FileNotFoundError as e:
        raise ValueError(f"mnist_root: {e}") from e
    stream = MovingMNIST(digits, labels, device=device, seed=seed, **kwargs)
    test_seed = config.seed + TEST_SEED_OFFSET
    test = make_test_set(test_digits, test_labels, config.test_sequences, seed=test_seed, **kwargs)
    return stream, test.frames.to(device)


def _make_video_data(config: TrainConfig, device: torch.device, stream_seed: int | None):
    stream, test_frames, report = make_video_data(
        config.data, image_size=config.image_size, seq_len=config.seq_len, fps=config.fps,
        stride=config.stride, resize=config.resize, split=config.split, device=device,
        test_fraction=config.test_fraction, test_sequences=config.test_sequences,
        seed=config.seed, cache_dir=config.cache_dir,  # the same split on every rank
    )  # fmt: skip
    if stream_seed is not None and stream_seed != config.seed:
        stream.reseed(stream_seed)  # a distributed rank's own draws from the same split
    return stream, test_frames


def load(run_dir: str | Path, checkpoint: str | Path | None = None, device: str = "cpu") -> DVIP:
    """The trained DVIP of a run directory (newest valid checkpoint), in eval mode."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise RunError(f"{run_dir}: not a run directory (no config.json)")
    config = TrainConfig.load(config_path)
    if checkpoint is not None:
        state = load_checkpoint(Path(checkpoint), map_location=device)
    else:
        found = latest_checkpoint(run_dir, map_location=device)
        if found is None:
            raise RunError(f"{run_dir}: no loadable checkpoint")
        state = found[1]
    dvip = build_model(config).to(device)
    dvip.load_state_dict(state["model"])
    return dvip.eval()
