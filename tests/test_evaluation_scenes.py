"""`dvip evaluate` on scenes without the gifts: one colour channel for every digit, and more
factors than digits."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import TINY, make_known_answer, run_cli

from pyro_dvip import load, make_config, train
from pyro_dvip.checkpoint import load_checkpoint
from pyro_dvip.evaluation.alignment import SHARED_CHANNEL, alignment_summary
from pyro_dvip.evaluation.verdict import alignment_verdict, unused_factors

# Measurement sizes small enough for a 2-core CPU; every code path still runs.
FAST = [
    "--samples", 40, "--particles", 2, "--iw-samples", 2, "--bootstrap", 5,
    "--intervention-pairs", 8, "--rollouts", 2, "--examples", 2,
]  # fmt: skip
MODELS = ("trained", "untrained")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run whose two digits share one channel, and one with four factors for two digits."""
    root = tmp_path_factory.mktemp("scenes")
    made = {}
    for name, options in {"one-channel": dict(channels=1), "four-factors": dict(factors=4)}.items():
        train(make_config(**{**TINY, **options}, steps=2), root / name, progress=False)
        made[name] = root / name
    return made


def test_one_channel_run_marks_the_intervention_not_applicable_and_measures_identity(runs):
    run = runs["one-channel"]
    result = run_cli("evaluate", run, *FAST)
    assert result.exit_code == 0, result.output
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    note = metrics["trained"]["intervention"]["note"]
    assert note == (
        f"{SHARED_CHANNEL} (2 digits drawn in 1 channel: no channel is one digit's, and the "
        "test reads digit o's change in channel o)"
    )
    assert f"  intervention test: {note}" in result.output
    for model in MODELS:
        m = metrics[model]
        assert m["intervention"] == {"applicable": False, "note": note}
        assert len(m["alignment"]["r2"]) == 2  # the probes read positions, not channels
        identity = m["identity"]
        assert identity["factors"] == [k for k, _ in m["alignment"]["assignment"]]
        assert identity["sequences"] == 10  # the scored half of 20 sequences
        assert identity["threshold_pixels"] == 3.5  # half the 7-pixel digit box at 16x16
        assert 0 <= identity["swaps"] <= identity["crossings"]
        assert 0 <= identity["consistent_share"] <= 1
    report = (out / "report.md").read_text()
    assert f"| intervention test | {note} | {note} |" in report
    assert f"Intervention test: {note}." in report
    assert f"## intervention.png\n\nNot written: {note}." in report
    assert "| identity swaps per crossing (a factor leaves its digit for the other) |" in report
    assert "![identity.png](identity.png)" in report
    assert not (out / "intervention.csv").exists() and not (out / "intervention.png").exists()
    assert (out / "identity.png").stat().st_size > 0
    with open(out / "identity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list(MODELS)
    assert [int(r["crossings"]) for r in rows] == [
        metrics[m]["identity"]["crossings"] for m in MODELS
    ]
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert summary[0]["min_intervention_share"] == "n/a"
    assert (
        float(summary[0]["identity_consistent_share"])
        == (metrics["trained"]["identity"]["consistent_share"])
    )
    assert "identity: " in result.output and " swaps per crossing (" in result.output


def test_four_factor_run_matches_every_digit_and_passes_the_kl_to_the_verdict(runs):
    run = runs["four-factors"]
    result = run_cli("evaluate", run, *FAST)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    for model in MODELS:
        a, kl = metrics[model]["alignment"], metrics[model]["bound"]["kl_per_factor_per_frame"]
        assert len(a["r2"]) == 4 and len(a["assignment"]) == 2  # every digit, two factors left
        assert sorted(o for _, o in a["assignment"]) == [0, 1]
        assert a["kl_per_factor_per_frame"] == kl
        assert a["unused"] == [k for k in range(4) if kl[k] is not None and kl[k] < 0.1]
        assert len(metrics[model]["identity"]["factors"]) == 2
        assert len(metrics[model]["intervention"]["fractions"]) == 4  # three channels: applies
    report = (run / "eval" / "report.md").read_text()
    assert "| unused factors (KL < 0.1 nats per frame) |" in report


def test_unused_factors_are_those_under_0_1_nats_whatever_they_read():
    """Seven factors, two digits, probes and KL chosen so that each rule decides one factor:
    0 and 1 hold a digit each and cost 4 nats per frame; 2 and 5 cost under 0.1 nats per frame
    (unused, whatever their means read: 2 reads 0.45 of digit 1); 3 costs exactly 0.1 nats,
    4 costs 0.5 nats, 6's KL is NaN (null in metrics.json): none of those is unused, and their
    leakage is 0.29, so the verdict is objects and its reason names factors 2 and 5. Then
    factor 4 reads 0.3 of digit 1: leakage, no longer objects."""
    r2 = np.array([
        [0.9, 0.05],  # 0: digit 0
        [0.1, 0.85],  # 1: digit 1
        [0.02, 0.45],  # 2: unused
        [0.29, 0.01],  # 3: KL at the threshold
        [0.0, 0.29],  # 4: costs KL
        [-0.1, 0.0],  # 5: unused
        [0.0, 0.0],  # 6: no KL
    ])  # fmt: skip
    kl = [4.0, 4.0, 0.05, 0.1, 0.5, 0.0, None]

    def alignment(r2):
        return {"r2": r2.tolist(), "whole_r2": [0.95, 0.9], **alignment_summary(r2),
                "kl_per_factor_per_frame": kl}  # fmt: skip

    a = alignment(r2)
    assert a["assignment"] == [[0, 0], [1, 1]]
    assert unused_factors(a) == [2, 5]
    assert alignment_verdict(a) == {
        "verdict": "objects",
        "reason": "matched ≥ 0.85, leakage ≤ 0.29; unused: factors 2, 5 (KL < 0.1 nats per "
        "frame, left out of the matching)",
    }
    assert unused_factors({**a, "kl_per_factor_per_frame": None}) == []  # older metrics
    assert alignment_verdict({**a, "kl_per_factor_per_frame": None})["verdict"] == "mixed"

    r2[4, 1] = 0.3
    verdict = alignment_verdict(alignment(r2))
    assert verdict["verdict"] == "mixed"
    assert verdict["reason"].endswith(
        "; unused: factors 2, 5 (KL < 0.1 nats per frame, left out of the matching)"
    )


def test_four_factors_that_cost_no_kl_are_all_unused(runs, tmp_path):
    """A checkpoint made into a model whose posterior is the prior N(0, I) for every factor
    (conftest.make_known_answer): every factor's KL is exactly 0 and its latents hold nothing,
    so nothing encodes a digit (dropped) and all four factors are unused."""
    run = runs["four-factors"]
    newest = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    zeros = torch.zeros(4, TINY["factor_dim"])
    dvip = make_known_answer(load(run, checkpoint=newest), zeros, zeros)
    known = tmp_path / "known.pt"
    torch.save({**load_checkpoint(newest), "model": dvip.state_dict()}, known)
    result = run_cli("evaluate", run, *FAST, "--checkpoint", known, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    a = json.loads((tmp_path / "eval" / "metrics.json").read_text())["trained"]["alignment"]
    assert a["kl_per_factor_per_frame"] == pytest.approx([0.0] * 4, abs=1e-6)
    assert a["unused"] == [0, 1, 2, 3]
    assert a["verdict"] == "dropped"
    assert a["verdict_reason"].endswith(
        "; unused: factors 0, 1, 2, 3 (KL < 0.1 nats per frame, left out of the matching)"
    )
    assert "verdict: dropped (not encoded: digit 0" in result.output
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| unused factors (KL < 0.1 nats per frame) | 0, 1, 2, 3 |" in report


def test_an_identity_that_fails_leaves_the_probes_made(runs, tmp_path, monkeypatch):
    from pyro_dvip.evaluation import run as evaluation_run

    def singular(*args, **kwargs):
        raise ValueError("Input contains NaN")  # what scikit-learn raises on a NaN latent

    monkeypatch.setattr(evaluation_run, "probe_positions", singular)
    result = run_cli("evaluate", runs["one-channel"], *FAST, "--out", tmp_path)
    assert result.exit_code == 1
    # the paper decoder's tracks are the same probes' read-outs: the tracking fails with it
    failed = "(trained identity, trained tracking, untrained identity, untrained tracking)"
    assert failed in result.output.strip().splitlines()[-1]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for model in MODELS:
        m = metrics[model]
        assert m["identity"] == {
            "applicable": False, "failed": True, "note": "failed: ValueError: Input contains NaN"
        }  # fmt: skip
        assert len(m["alignment"]["r2"]) == 2 and "verdict" in m["alignment"]
    assert not (tmp_path / "identity.csv").exists() and not (tmp_path / "identity.png").exists()
