"""The training loop: SVI on colour Moving MNIST with Pyro's ELBO and Adam.

One run directory holds everything: ``config.json`` (every resolved option), ``metrics.csv``,
TensorBoard events under ``tensorboard/``, and ``checkpoints/step_XXXXXXXX.pt``.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pyro
import torch

from . import distributed
from .build import RunError, build_training, make_data, resolve_device, start_background
from .checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import RESUMABLE, TrainConfig
from .data import VideoStream
from .model import DVIP
from .objective import NegELBO, test_elbo

log = logging.getLogger(__name__)

METRICS_COLUMNS = [
    "step", "kl_scale", "elbo", "recon", "kl", "objective_avg", "test_elbo", "seconds",
    "frames_per_s", "skipped_steps", "kl_factors",
]  # fmt: skip
# The authors' learning-rate decay (original-code-notes.md): x0.985 every 320,000 sequences.
LR_DECAY_FACTOR = 0.985
LR_DECAY_SEQUENCES = 320_000
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
RANK_SEED_STRIDE = 100_003  # rank r of a distributed run draws data and noise from seed + r * this


def kl_scale_at(step: int, anneal_steps: int) -> float:
    """Linear KL annealing from 1/anneal_steps at step 1 to 1 at ``anneal_steps``."""
    return 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)


COST_STEPS = 5  # full-length steps a CPU run times before it says what it will cost
COST_NOTICE_MINUTES = 30  # a CPU run that will take longer says so once, with quicker presets


QUICK_PRESETS = ("cpu-sprites", "cpu-objects", "cpu-video")  # objects in minutes on a CPU


def cost_notice(step_s: float, remaining: int, video: bool = False,
                preset: str | None = None) -> str | None:  # fmt: skip
    """What a CPU run of ``remaining`` steps at ``step_s`` seconds a step will cost, with the
    presets that find objects in minutes (on ``video``, the one for ``--data``), or, for a run
    already on one of them (``preset``), what makes it cost more; None for a run under
    ``COST_NOTICE_MINUTES``."""
    minutes = step_s * remaining / 60
    if minutes < COST_NOTICE_MINUTES:
        return None
    took = f"{minutes / 60:.1f} hours" if minutes >= 90 else f"{minutes:.0f} minutes"
    quicker = (
        "--preset cpu-video (32x32, about 10 minutes on 2 cores for a two-minute clip)"
        if video
        else "--preset cpu-sprites (same-coloured digits, about 8 minutes on 2 cores) or "
        "--preset cpu-objects (colour digits, about 7)"
    )
    advice = (
        f"--preset {preset} costs more with more --factors or a larger --image-size than its own"
        if preset in QUICK_PRESETS
        else f"For objects in minutes on a CPU: dvip train {quicker}"
    )
    return (
        f"On the CPU this run costs about {step_s:.2f} s a step: {took} for the {remaining} "
        f"steps left. {advice}; --until STEP stops this run part-way with a checkpoint, and "
        "--resume continues it."
    )


def seq_len_at(step: int, config: TrainConfig) -> int:
    """Frames per training sequence at ``step``: two during the curriculum's first steps."""
    return min(2, config.seq_len) if step <= config.curriculum else config.seq_len


def transition_cap_at(step: int, config: TrainConfig) -> float:
    """The cap on the transition's standard deviation at ``step`` under
    ``--transition-sd-from S``: none (infinite) up to step S, then ``sd ** ((step - S) / S)``,
    from 1 down to ``--transition-sd`` at step 2 S, and that from there on."""
    start = config.transition_sd_from
    if start is None or step <= start:
        return math.inf
    return config.transition_sd ** min(1.0, (step - start) / start)


def visibility_weight_at(step: int, config: TrainConfig) -> float:
    """The exponent of a drawing's visibility in the visible match at ``step`` under
    ``--glimpse-visible-from S``: 0 up to step S, rising linearly to 1 at step 2 S."""
    start = config.glimpse_visible_from
    return 1.0 if start is None else min(1.0, max(0.0, (step - start) / start))


def window_radius_at(step: int, config: TrainConfig) -> float:
    """The glimpse window's radius (pixels) at ``step`` under ``--glimpse-window-from S``:
    the whole frame (``image_size``) up to step S, narrowing linearly to ``--glimpse-window``
    at step 2 S, and that from there on."""
    window, start = config.glimpse_window, config.glimpse_window_from
    if start is None:
        return float(window)
    share = min(1.0, max(0.0, (step - start) / start))
    return config.image_size - share * (config.image_size - window)


def lr_decay_interval(batch_size: int) -> float:
    """Steps between two decays of the "step" schedule: 320,000 sequences at ``batch_size``
    sequences a step (3,200 at the paper's 100). When it is fractional (batch 48: 6,666.7) each
    decay falls on the first step after another 320,000 sequences."""
    return LR_DECAY_SEQUENCES / batch_size


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of ``step`` (1-based), a pure function of the step so that a resumed
    run continues the schedule.

    - "constant": ``lr``.
    - "cosine": ``lr (1 + cos(pi (step - 1) / S)) / 2`` with ``S = lr_decay_steps`` (``steps``
      when unset): ``lr`` at step 1, falling towards 0, which it would reach one step after step
      S (step S gets about ``lr pi^2 / (4 S^2)``). Without ``lr_decay_steps``, resuming with
      more ``--steps`` stretches what is left of it; with it, the decay keeps its length.
    - "step": the authors' decay, ``lr 0.985^n`` after n whole blocks of 320,000 sequences
      seen before this step, i.e. ``n = floor((step - 1) B / 320,000)`` at batch size B
      (every :func:`lr_decay_interval` steps; ``steps`` plays no part).
    """
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "step":
        decays = (step - 1) * config.batch_size // LR_DECAY_SEQUENCES  # integer: exact
        return config.lr * LR_DECAY_FACTOR**decays
    span = config.steps if config.lr_decay_steps is None else config.lr_decay_steps
    return config.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / span))


def resume_config(saved: TrainConfig, requested: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The saved configuration with the explicitly given options that may change on resume."""
    conflicts = [
        f"--{name.replace('_', '-')} (saved {getattr(saved, name)!r}, "
        f"given {getattr(requested, name)!r})"
        for name in sorted(explicit - RESUMABLE)
        if getattr(saved, name) != getattr(requested, name)
    ]
    if conflicts:
        raise RunError(f"--resume: options conflict with the saved run: {'; '.join(conflicts)}")
    return replace(saved, **{name: getattr(requested, name) for name in explicit & RESUMABLE})


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    metrics: list[dict]  # the rows written to metrics.csv by this call
    resumed_from: Path | None  # the checkpoint a resumed run started from
    model: DVIP  # the trained model, in train mode
    total_steps: int = 0  # the run's configured steps (``step`` is smaller after ``until``)


class TrainingInterrupted(RunError):
    """SIGINT or SIGTERM arrived: a checkpoint was saved and the run stopped."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


@contextmanager
def _deferred_stop_signals():
    """SIGINT and SIGTERM only recorded (``stop.signum``); the loop stops at the end of the step."""
    stop = SimpleNamespace(signum=None)

    def record(signum, frame) -> None:
        stop.signum = signum

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return
    previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _MetricsLog:
    """metrics.csv, TensorBoard and the progress bar, written together."""

    def __init__(self, run_dir: Path, start_step: int, total_steps: int, progress: bool):
        self.path = run_dir / "metrics.csv"
        kept = []  # the rows up to the step a resumed run restarts from; it redoes the rest
        if self.path.exists():
            with open(self.path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        logged = [float(row["seconds"]) for row in kept if row.get("seconds")]
        self.seconds = logged[-1] if logged else 0.0  # training time so far, excluding evaluation
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRICS_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

        self.board = SummaryWriter(run_dir / "tensorboard", purge_step=start_step + 1)
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step")
        self.rows: list[dict] = []

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        for key in ("elbo", "recon", "kl", "test_elbo", "frames_per_s"):
            if key in row:
                self.board.add_scalar(f"train/{key}", row[key], row["step"])
        for k, value in enumerate(row.get("kl_factors", "").split()):
            self.board.add_scalar(f"train/kl_factor_{k}", float(value), row["step"])
        if self.bar is not None and "elbo" in row:
            self.bar.set_postfix(elbo=f"{row['elbo']:.1f}", fps=f"{row['frames_per_s']:.0f}")
        self.rows.append(row)

    def close(self) -> None:
        self.file.close()
        self.board.close()
        if self.bar is not None:
            self.bar.close()


def _check_writable(run_dir: Path, bytes_needed: int) -> None:
    """Fail before training if the run directory cannot hold a few checkpoints."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunError(f"--out: cannot write to {run_dir} ({e.strerror or e})") from e
    free = shutil.disk_usage(run_dir).free
    if free < bytes_needed:
        raise RunError(
            f"--out: {run_dir} has {free / 2**20:.0f} MiB free; checkpoints need about "
            f"{bytes_needed / 2**20:.0f} MiB"
        )


def _open_run(
    config: TrainConfig, run_dir: Path, resume: bool, explicit: set[str]
) -> tuple[TrainConfig, tuple[Path, dict] | None]:
    """The configuration to run and, on resume, the newest checkpoint that loads."""
    config_path = run_dir / "config.json"
    if not resume:
        if config_path.exists():
            raise RunError(
                f"--out: {run_dir} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        config.validate()
        return config, None
    if not config_path.exists():
        raise RunError(f"--resume: {run_dir} holds no config.json; nothing to resume")
    config = resume_config(TrainConfig.load(config_path), config, explicit)
    config.validate()
    found = latest_checkpoint(run_dir)
    if found is None:
        raise RunError(f"--resume: {run_dir} holds no loadable checkpoint")
    return config, found


def _for_rank(state, context: distributed.Context, what: str):
    """A single-process checkpoint holds one state; a distributed one a list, one per rank."""
    if not isinstance(state, list):
        return state
    if len(state) != context.world_size:
        raise RunError(
            f"--resume: the checkpoint's {what} is from {len(state)} processes, this run has "
            f"{context.world_size}; resume with the same --nproc"
        )
    return state[context.rank]


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    explicit: set[str] | None = None,
    progress: bool = True,
    until: int | None = None,
) -> TrainResult:
    """Train a DVIP model; ``resume`` continues the newest valid checkpoint in ``run_dir``.

    ``until`` stops after that step (with a checkpoint) instead of ``config.steps``, leaving
    the run resumable: the learning-rate and KL schedules still span ``config.steps``, so a
    run stopped and resumed trains exactly as one that never stopped. A run already at or past
    ``until`` trains no further.

    ``explicit`` names the options the user gave on resume (they must not conflict with the
    saved configuration, except those in ``RESUMABLE``). SIGINT/SIGTERM save a
    checkpoint and raise :class:`TrainingInterrupted`; a step whose loss or gradients are not
    finite is skipped, and ``max_nonfinite_steps`` of them in a row stop the run. Under
    ``torchrun`` each process trains on its share of the global batch with its own data seed
    (see :mod:`pyro_dvip.distributed`); rank 0 logs and writes checkpoints. A script that
    calls this under torchrun should end each process with
    :func:`pyro_dvip.distributed.exit_worker` (the ``dvip`` command does).
    """
    run_dir = Path(run_dir)
    context, device_name = distributed.setup(config.device)
    try:
        config, found = _open_run(config, run_dir, resume, explicit or set())
        if until is not None and not 1 <= until <= config.steps:  # the saved steps on resume
            raise ValueError(f"until: must be a step from 1 to steps ({config.steps}), got {until}")
        # every rank has checked the run directory before rank 0 writes
        distributed.barrier(context)
        if config.batch_size % context.world_size:
            raise RunError(
                f"--batch-size: {config.batch_size} does not split over "
                f"{context.world_size} processes"
            )
        last_step = config.steps if until is None else until
        return _train(config, run_dir, found, context, device_name, progress, last_step)
    finally:
        distributed.teardown(context)


class _Interval:
    """The objective summed over the steps since the last log row, kept on the device (no host
    sync a step), and the training time those steps took (pauses for logging excluded)."""

    def __init__(self, device: torch.device, objective_sum: float = 0.0, steps: int = 0):
        self.objective_sum = torch.tensor(float(objective_sum), device=device)
        self.steps = int(steps)
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.objective_sum += loss.detach()
        self.steps += 1

    def state(self) -> dict:
        """For the checkpoint: a resumed run's first log row averages the same steps."""
        return {"objective_sum": self.objective_sum.item(), "interval_steps": self.steps}

    def take(self) -> tuple[float, int, float]:
        """(objective sum, steps, seconds) since the last take; a new interval starts."""
        totals = (self.objective_sum.item(), self.steps, time.perf_counter() - self.start)
        self.objective_sum.zero_()
        self.steps = 0
        self.start = time.perf_counter()
        return totals

    @contextmanager
    def paused(self):
        """Logging, test ELBO and checkpoints inside are not training time."""
        paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - max(paused_at, self.start)


def _guarded_step(
    step_loss, optimizer, dvip: DVIP, x: torch.Tensor, kl_scale: float, lr: float,
    with_terms: bool, context: distributed.Context, device: torch.device,
    autocast: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor | None, tuple | None]:  # fmt: skip
    """One SVI step, or none at all if the loss or a gradient is not finite on any rank: the
    parameters, Adam's moments and BatchNorm's running statistics are then left as they were.
    ``autocast`` runs the loss (its networks) in that dtype; with fp16's ``scaler``, gradients
    that overflow are the scaler's to skip (it lowers the scale), only a non-finite loss is
    skipped here. Returns (loss, (recon (B,), KL per factor (B, K)) or None); the loss is None
    for a skipped step."""
    buffers = list(dvip.buffers())
    saved_buffers = [b.clone() for b in buffers]  # BatchNorm statistics, small
    terms = None
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        if with_terms:
            loss, *terms = step_loss(x, kl_scale, with_terms=True)
        else:
            loss = step_loss(x, kl_scale)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        grad_norm = torch.nn.utils.get_total_norm(
            p.grad for p in dvip.parameters() if p.grad is not None
        )
        finite = bool(torch.isfinite(loss.detach() + grad_norm))  # one host sync a step
    else:
        scaler.scale(loss).backward()
        finite = bool(torch.isfinite(loss.detach()))
    if distributed.any_rank(not finite, context, device):
        for buffer, saved in zip(buffers, saved_buffers):
            buffer.copy_(saved)  # a bad batch must not poison the running stats
        return None, terms
    for group in optimizer.param_groups:
        group["lr"] = lr
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss, terms


@contextmanager
def _compiled(dvip: DVIP, enabled: bool):
    """``torch.compile`` the encoder and decoder in place for the loop (their parameters and
    state-dict keys unchanged); they are eager again afterwards."""
    networks = [dvip.encoder, dvip.decoder] if enabled else []
    for net in networks:
        net.forward = torch.compile(net.forward)
    try:
        yield
    finally:
        _uncompile(networks)


def _uncompile(networks) -> None:
    for net in networks:
        if "forward" in vars(net):
            del net.forward


def _first_compiled_step(args: tuple) -> tuple[torch.Tensor | None, tuple | None]:
    """The first step with compiled networks; where compilation fails, the same step again
    eager (the model's state and the random state restored), with a warning."""
    dvip = args[2]
    state = {k: v.clone() for k, v in dvip.state_dict().items()}
    rng = rng_state()
    try:
        return _guarded_step(*args)
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
        log.warning("--compile: torch.compile failed (%s: %s); training uncompiled",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")  # fmt: skip
        _uncompile([dvip.encoder, dvip.decoder])
        dvip.load_state_dict(state)
        set_rng_state(rng)
        return _guarded_step(*args)


def _log_compile_cost(first_s: float, first_ended: float, steps_since: int) -> None:
    """Compilation's one-time cost: the first step's time less an ordinary step's."""
    step_s = (time.perf_counter() - first_ended) / steps_since
    log.info("--compile: the first step took %.1f s, the %d steps since %.3f s each: "
             "compilation cost about %.1f s", first_s, steps_since, step_s,
             first_s - step_s)  # fmt: skip


def _say(text: str, bar) -> None:
    """A message above the progress bar (or as a log line without one)."""
    if bar is not None:
        bar.write(text, file=sys.stderr)
    else:
        log.warning(text)


def _log_row(interval: _Interval, recon, kl, config: TrainConfig, metrics, T: int) -> dict:
    """The training columns of a log row: per-frame bound of this step (from recon (B,) and
    each factor's KL (B, K)), mean objective and speed since the last row, and the training
    seconds so far. ``kl_factors`` is each factor's KL per frame, space-separated: a factor
    whose KL falls to ~0 has collapsed (carries nothing), and the row says when. T: frames
    per sequence at this step."""
    objective_sum, steps, elapsed = interval.take()
    per_factor = (kl.mean(0) / T).tolist()
    kl = kl.sum(-1)
    row = dict(
        elbo=(recon - kl).mean().item() / T,
        recon=recon.mean().item() / T,
        kl=kl.mean().item() / T,
        kl_factors=" ".join(f"{v:.4f}" for v in per_factor),
        objective_avg=-objective_sum / (max(steps, 1) * T),
        frames_per_s=round(steps * config.batch_size * T / elapsed, 1),
    )
    if metrics is not None:
        metrics.seconds += elapsed
        row["seconds"] = round(metrics.seconds, 3)
    return row


def _restore(state: dict, dvip: DVIP, optimizer, stream, context) -> dict:
    """Load a checkpoint into the model, optimizer, data stream and RNGs; the loop's counters."""
    dvip.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    stream.load_state_dict(_for_rank(state["data"], context, "data stream"))
    set_rng_state(_for_rank(state["rng"], context, "random state"))
    return state.get("loop", {})


def _train(config, run_dir, found, context, device_name, progress, last_step) -> TrainResult:
    pyro.set_rng_seed(config.seed)  # the same initial weights on every rank
    device = resolve_device(device_name)
    if config.precision == "fp16" and device.type != "cuda":
        raise RunError(
            "--precision: fp16 trains with a CUDA gradient scaler; on the CPU use bf16 or fp32"
        )
    dvip, optimizer = build_training(config, device)
    if found is None:
        start_background(dvip, config)  # --background-start median; the same on every rank
    autocast = AUTOCAST_DTYPES[config.precision]
    scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
    stream_seed = config.seed + RANK_SEED_STRIDE * context.rank
    stream, test_frames = make_data(config, device, stream_seed)
    if isinstance(stream, VideoStream):  # config.json records the split made, not "auto"
        config = replace(config, split=stream.split)
    if context.rank > 0:
        torch.manual_seed(stream_seed)  # each rank its own posterior noise
    step_loss = NegELBO(dvip, config.elbo)
    if context.active:
        step_loss = torch.nn.parallel.DistributedDataParallel(
            step_loss,
            device_ids=[device.index] if device.type == "cuda" else None,
            # T = 1 never calls the transition; the glimpse guide never calls the encoder
            # and a transition of fixed noise never uses its log-variance head
            find_unused_parameters=config.seq_len == 1
            or config.encoder == "glimpse"
            or config.transition_sd is not None,
        )
    local_batch = config.batch_size // context.world_size
    if context.is_main:
        n_params = sum(p.numel() for p in dvip.parameters())
        _check_writable(run_dir, bytes_needed=2 * 4 * 3 * n_params)  # model + Adam moments

    start_step = 0
    loop = {"objective_sum": 0.0, "interval_steps": 0, "skipped": 0, "bad_in_row": 0}
    if found is not None:
        path, state = found
        loop.update(_restore(state, dvip, optimizer, stream, context))
        start_step = state["step"]
        log.info("resuming from %s (step %d)", path, start_step)
    if context.is_main:
        atomic_write_text(run_dir / "config.json", config.to_json())
        if config.lr_schedule == "step":
            log.info(
                "lr schedule: x%g every %g steps (%d sequences at batch size %d)",
                LR_DECAY_FACTOR, lr_decay_interval(config.batch_size), LR_DECAY_SEQUENCES,
                config.batch_size,
            )  # fmt: skip
    interval = _Interval(device, loop.pop("objective_sum"), loop.pop("interval_steps"))

    def checkpoint(step: int) -> Path | None:
        """Every rank's RNG and stream state go into rank 0's checkpoint."""
        rng = distributed.gather(rng_state(), context)
        data = distributed.gather(stream.state_dict(), context)
        if not context.is_main:
            return None
        return save_checkpoint(run_dir, step, dvip, optimizer, data, config.keep_checkpoints,
                               loop={**loop, **interval.state()}, rng=rng)  # fmt: skip

    metrics = _MetricsLog(run_dir, start_step, last_step, progress) if context.is_main else None
    dvip.train()
    resumed_from = last_checkpoint = found[0] if found else None
    compile_timing = None  # (the first step's seconds, compilation included; when it ended)
    # a CPU run times its first full-length steps (after one) and says once what it will cost
    cost_from = max(start_step, config.curriculum) + 1 if device.type == "cpu" else None
    cost_started = None
    try:
        # Without argument validation a NaN reaches the loss (and the step is skipped)
        # instead of raising inside a distribution; it also saves a host sync per site.
        with (
            _deferred_stop_signals() as stop,
            pyro.validation_enabled(False),
            _compiled(dvip, config.compile),
        ):
            for step in range(start_step + 1, last_step + 1):
                x = stream.sample(local_batch).frames  # (B, T, C, H, W), on device
                x = x[:, : seq_len_at(step, config)]
                kl_scale = kl_scale_at(step, config.kl_anneal)
                if config.transition_sd_from is not None:
                    dvip.transition.sd_cap.fill_(transition_cap_at(step, config))
                if config.glimpse_visible_from is not None:
                    dvip.posterior.visibility_weight.fill_(visibility_weight_at(step, config))
                if config.glimpse_window_from is not None:
                    dvip.posterior.window_radius.fill_(window_radius_at(step, config))
                log_now = step % config.log_every == 0 or step == last_step
                args = (step_loss, optimizer, dvip, x, kl_scale, lr_at(step, config), log_now,
                        context, device, autocast, scaler)  # fmt: skip
                if config.compile and step == start_step + 1:
                    started = time.perf_counter()
                    loss, terms = _first_compiled_step(args)
                    compile_timing = (time.perf_counter() - started, time.perf_counter())
                else:
                    loss, terms = _guarded_step(*args)
                if loss is None:
                    loop["skipped"] += 1
                    loop["bad_in_row"] += 1
                    log.warning("step %d: non-finite loss or gradients, step skipped", step)
                    if loop["bad_in_row"] >= config.max_nonfinite_steps:
                        raise RunError(
                            f"step {step}: loss or gradients non-finite for "
                            f"{loop['bad_in_row']} steps in a row; stopped. Last good "
                            f"checkpoint: {last_checkpoint or 'none'}"
                        )
                else:
                    interval.add(loss)
                    loop["bad_in_row"] = 0
                if metrics is not None and metrics.bar is not None:
                    metrics.bar.update(1)
                if metrics is not None and step == cost_from:
                    cost_started = time.perf_counter()
                elif metrics is not None and cost_started and step == cost_from + COST_STEPS:
                    step_s = (time.perf_counter() - cost_started) / COST_STEPS
                    notice = cost_notice(
                        step_s, config.steps - step, config.data is not None, config.preset
                    )
                    if notice is not None:
                        _say(notice, metrics.bar)

                checkpoint_now = step % config.checkpoint_every == 0 or step == last_step
                if log_now or checkpoint_now:
                    with interval.paused():
                        row = {"step": step, "kl_scale": kl_scale, "skipped_steps": loop["skipped"]}
                        if log_now:
                            T = seq_len_at(step, config)
                            row.update(_log_row(interval, *terms, config, metrics, T))
                            if compile_timing is not None and step > start_step + 1:
                                _log_compile_cost(*compile_timing, step - start_step - 1)
                                compile_timing = None
                        if checkpoint_now:
                            if context.is_main:
                                row["test_elbo"] = test_elbo(dvip, test_frames, config.batch_size)
                            last_checkpoint = checkpoint(step)
                        if metrics is not None:
                            metrics.write(row)
                if distributed.any_rank(stop.signum is not None, context, device):
                    signum = stop.signum or signal.SIGTERM
                    last_checkpoint = checkpoint(step)
                    raise TrainingInterrupted(
                        f"{signal.Signals(signum).name} at step {step}: saved "
                        f"{last_checkpoint}; continue with --out {run_dir} --resume",
                        signum,
                    )
    finally:
        if metrics is not None:
            metrics.close()
    rows = metrics.rows if metrics is not None else []
    return TrainResult(run_dir, max(start_step, last_step), rows, resumed_from, dvip, config.steps)
