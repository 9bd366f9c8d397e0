"""examples/identity_pressure.py: what a slot code costs an independent prior over an identity
code, counted on the generator's trajectories, with its estimator checked on known answers."""

import importlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.identity_pressure")


def test_conditional_entropy_known_answers(example):
    cell = np.repeat(np.arange(3), 4)  # 3 cells of 4 samples
    determined = cell * 7  # the target is a function of the cell
    assert example.conditional_entropy(determined, cell) == 0.0
    coin = np.tile([0, 1], 6)  # two outcomes, two each, in every cell
    assert example.conditional_entropy(coin, cell, corrected=False) == pytest.approx(math.log(2))
    # Miller-Madow: one extra outcome in each of 3 cells, over 12 samples
    assert example.conditional_entropy(coin, cell) == pytest.approx(math.log(2) + 3 / (2 * 12))


def test_next_position_entropy_reads_the_last_position_and_velocity(example):
    # one track, 3 frames: the same last position and velocity, then one of two next positions
    tracks = np.zeros((4, 3, 1, 2), dtype=np.int64)
    tracks[:, 1, 0] = [1, 0]
    tracks[:, 2, 0] = [[2, 0], [2, 1], [2, 0], [2, 1]]
    expected = math.log(2) + 1 / (2 * 4)  # plug-in ln 2, Miller-Madow 1 / (2n)
    assert example.next_position_entropy(tracks) == pytest.approx(expected)
    # a different velocity tells them apart: then nothing is left to predict
    tracks[1::2, 0, 0] = [0, 1]
    assert example.next_position_entropy(tracks) == 0.0


def test_slots_cost_an_independent_prior_at_every_order_flip(example):
    recipe = {a: example.identity_pressure(a, sequences=100_000) for a in example.ARENAS}
    slow = example.identity_pressure("box", speed=3.6, sequences=100_000)
    still = example.identity_pressure("box", speed=0.0, sequences=2_000)
    for r in (*recipe.values(), slow):
        assert r["h_slot"] > r["h_identity"] > 0
        assert r["saving_per_flip"] > 8  # about 11 nats at 100,000 sequences, more with more
    # the recipe's speed: over a nat per factor per frame; slower digits flip less often
    assert min(r["saving"] for r in recipe.values()) > 1.0
    assert slow["flips_per_frame"] < recipe["box"]["flips_per_frame"] / 2
    assert slow["saving"] < recipe["box"]["saving"]
    assert still["h_identity"] == still["h_slot"] == still["flips_per_frame"] == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seq-len", "2"], "--seq-len must be at least 3"),
        (["--num-digits", "1"], "--num-digits must be 2 or 3"),
        (["--sequences", "1"], "--sequences must be at least 2"),
        (["--speed", "-1"], "speed must be non-negative"),
    ],
)
def test_bad_options_get_a_one_line_error_naming_them(args, message):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "identity_pressure.py"), *args],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_order_flips_marks_the_frames_where_left_and_right_change(example):
    x = np.array([[0, 5, 9, 9, 2], [8, 8, 1, 9, 7]]).T  # digit 0 and 1's x over 5 frames
    positions = np.zeros((1, 5, 2, 2))
    positions[0, :, :, 0] = x
    # left to right: [0, 1] [0, 1] [1, 0] [0, 1] (a tie keeps digit order) [0, 1]
    assert example.order_flips(positions).tolist() == [[False, False, True, True, False]]


def test_a_trained_runs_kl_at_flips_counts_every_predicted_frame(example, tmp_path):
    """The run's newest checkpoint made into a model whose every step's KL is known in closed
    form (conftest.make_known_answer): q(z_t^k) = N(m_k, e^v_k) whatever the frames, against a
    N(0, I) prior at every step. Then every frame, at a flip or not, costs the same sum over
    factors and units of 1/2 (e^v + m^2 - 1 - v)."""
    import torch
    from conftest import TINY, make_known_answer, unit_kl_to_standard_normal

    from pyro_dvip import load, make_config, train
    from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint
    from pyro_dvip.config import TrainConfig
    from pyro_dvip.evaluation.held_out import held_out_sequences

    run = tmp_path / "run"
    train(make_config(**{**TINY, "channels": 1}, steps=2), run, progress=False)
    q_loc = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.0, 0.25]])  # (K, d) = (2, 3)
    q_logvar = torch.tensor([[0.0, 0.5, -1.0], [0.0, 0.0, 1.0]])
    newest = list_checkpoints(run)[-1]
    dvip = make_known_answer(load(run), q_loc, q_logvar)
    torch.save({**load_checkpoint(newest), "model": dvip.state_dict()}, newest)
    expected = float(unit_kl_to_standard_normal(q_loc, q_logvar).sum())  # nats per frame
    assert expected == pytest.approx(
        0.5 * ((0.25 + 0) + (math.exp(0.5) + 1 - 1 - 0.5) + (math.exp(-1) - 1 + 1)
               + 4 + 0 + (math.exp(1) + 0.0625 - 1 - 1))
    )  # fmt: skip

    r = example.kl_at_flips(str(run), sequences=24, particles=2)
    config = TrainConfig.load(run / "config.json")
    x = held_out_sequences(config, 24).positions[..., 0].numpy()  # (B, T, 2)
    side = np.sign(x[..., 0] - x[..., 1])  # which digit is further left, per frame
    flips = int((side[:, 1:] != side[:, :-1]).sum())
    assert r["flip_frames"] == flips > 0
    assert r["flip_frames"] + r["other_frames"] == 24 * (config.seq_len - 1)
    assert r["at_flips"] == pytest.approx(expected, rel=1e-5)
    assert r["elsewhere"] == pytest.approx(expected, rel=1e-5)
    assert example.kl_at_flips(str(run), sequences=24, particles=2) == r  # seeded
