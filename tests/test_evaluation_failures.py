"""What an evaluation does when a part cannot be made: the transition's log-variance bound, a
numerical failure recorded as failed while the rest is made, too few pairs recorded as not
computable, internal errors never shown as bad options, and `dvip compare` on evaluation
folders."""

import json
import math

import pytest
import torch
from conftest import TINY, run_cli
from pyro import distributions as dist
from test_video import write_video

from pyro_dvip import DVIP, make_config, train
from pyro_dvip.checkpoint import list_checkpoints
from pyro_dvip.data.video import split_sequences
from pyro_dvip.evaluation import run as evaluation_run
from pyro_dvip.evaluation.generations import prior_samples
from pyro_dvip.evaluation.outcome import reason
from pyro_dvip.networks import TRANSITION_LOGVAR_BOUND

FAST = [
    "--samples", 40, "--particles", 2, "--iw-samples", 2, "--bootstrap", 5, "--partitions", 3,
    "--select-pairs", 20, "--intervention-pairs", 8, "--rollouts", 2, "--examples", 2,
]  # fmt: skip
K, D = TINY["factors"], TINY["factor_dim"]


def tiny_model() -> DVIP:
    return DVIP(K, D, image_size=16, width=4, transition_layers=1).eval()


def logvar_bias(dvip: DVIP) -> torch.Tensor:
    """The log-variance half of the transition head's bias, (K, 1, d)."""
    return dvip.transition.mlp.head.bias.data[..., D:]


def test_the_log_variance_bound_changes_nothing_inside_it_and_clamps_outside():
    dvip = tiny_model()
    mlp = dvip.transition.mlp
    z = torch.randn(64, K, D)

    def unbounded(z):  # the head written out again, without the clamp
        h = z.transpose(0, 1)
        for layer in mlp.layers:
            h = torch.selu(h @ layer.weight + layer.bias)
        return (h @ mlp.head.weight + mlp.head.bias).transpose(0, 1)[..., D:]

    with torch.no_grad():
        assert unbounded(z).abs().max() < TRANSITION_LOGVAR_BOUND
        loc, logvar = mlp(z)
        assert torch.allclose(logvar, unbounded(z), rtol=0, atol=1e-6)
        logvar_bias(dvip).add_(1000.0)
        assert torch.equal(mlp(z)[1], torch.full_like(logvar, 20.0))
        assert torch.equal(mlp(z)[0], loc)  # the mean is left alone
        logvar_bias(dvip).sub_(3000.0)
        assert torch.equal(mlp(z)[1], torch.full_like(logvar, -20.0))


def test_the_bound_adds_no_parameter_so_older_checkpoints_load():
    names = set(dict(tiny_model().transition.named_parameters()))
    assert names == {"mlp.layers.0.weight", "mlp.layers.0.bias", "mlp.layers.1.weight",
                     "mlp.layers.1.bias", "mlp.head.weight", "mlp.head.bias"}  # fmt: skip


def test_prior_samples_stay_finite_with_a_huge_log_variance_bias():
    dvip = tiny_model()
    with torch.no_grad():
        logvar_bias(dvip).fill_(200.0)  # exp(100): inf in float32 without the bound
    torch.manual_seed(0)
    frames = prior_samples(dvip, 4, 8)
    assert frames.shape == (4, 8, 3, 16, 16) and torch.isfinite(frames).all()


def test_an_invalid_distribution_parameter_is_one_line_without_the_tensor():
    with pytest.raises(ValueError) as error:
        dist.Normal(torch.full((4, 2, 3), math.nan), 1.0)
    assert "tensor(" in str(error.value)  # what torch says
    assert reason(error.value) == "loc of a Normal distribution is NaN or infinite"
    wrapped = ValueError(f"Error while computing log_prob at site 'z_2':\n{error.value}")
    assert reason(wrapped) == "loc of a Normal distribution is NaN or infinite"
    assert reason(RuntimeError("singular\nmatrix")) == "RuntimeError: singular"


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("failures") / "run"
    train(make_config(**TINY, steps=2), run_dir, progress=False)
    return run_dir


def nan_prior_run(run_dir, tmp_path):
    """A copy of ``run_dir`` whose transition predicts NaN means."""
    copy = tmp_path / "nan-run"
    copy.mkdir()
    (copy / "config.json").write_text((run_dir / "config.json").read_text())
    (copy / "checkpoints").mkdir()
    source = list_checkpoints(run_dir)[-1]
    state = torch.load(source, weights_only=True)
    state["model"]["transition.mlp.head.bias"][..., :D] = math.nan
    torch.save(state, copy / "checkpoints" / source.name)
    return copy


def test_a_prior_that_gives_nan_fails_its_parts_and_the_floor_is_still_measured(
    mnist_run, tmp_path
):
    run_dir = nan_prior_run(mnist_run, tmp_path)
    result = run_cli("evaluate", run_dir, *FAST)
    assert result.exit_code == 1, result.output
    assert "Invalid value" not in result.output and "tensor(" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: evaluation incomplete: ") and "trained bound" in last
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    trained, untrained = metrics["trained"], metrics["untrained"]
    parts = ("bound", "mutual_info", "correlation", "alignment", "intervention", "identity",
             "tracking", "scene", "prediction")  # fmt: skip
    for part in parts:
        assert trained[part]["failed"] is True
        note = trained[part]["note"]
        assert note.startswith("failed: ") and "tensor" not in note
        assert "failed" not in untrained[part]  # the floor is made: a number, not a record
    assert math.isfinite(untrained["bound"]["elbo_per_frame"])
    assert set(trained["generations"]) == {"reconstructions", "prior_samples",
                                           "independent_factor", "rollout_factor"}  # fmt: skip
    assert untrained["generations"] == {}
    assert len(metrics["failed"]) == 9 + 4
    report = (run_dir / "eval" / "report.md").read_text()
    assert "**Incomplete: 13 part(s) failed**" in report and "tensor(" not in report
    why = "failed: loc of a Normal distribution is NaN or infinite"
    assert f"| test ELBO per frame (± s.e.) | {why} | -" in report
    assert f"**rollout_factor** (trained): {why}." in report
    assert (run_dir / "eval" / "generations" / "untrained" / "prior_samples.png").exists()
    assert not (run_dir / "eval" / "generations" / "trained" / "prior_samples.png").exists()


def test_one_failing_part_leaves_every_other_part_made(mnist_run, tmp_path, monkeypatch):
    def overflowing_prior(*args, **kwargs):
        return dist.Normal(torch.full((4, 2, 3), math.nan), 1.0)  # raises, as NaN loc does

    monkeypatch.setattr(evaluation_run, "prior_samples", overflowing_prior)
    result = run_cli("evaluate", mnist_run, *FAST, "--out", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: evaluation incomplete: 2 part(s) failed (trained prior_samples, untrained "
        f"prior_samples); reasons in {tmp_path / 'report.md'}"
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    note = "failed: loc of a Normal distribution is NaN or infinite"
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert m["generations"] == {"prior_samples": {"applicable": False, "failed": True,
                                                      "note": note}}  # fmt: skip
        assert math.isfinite(m["bound"]["elbo_per_frame"]) and m["mutual_info"]["pairs"] == 40
        assert len(m["alignment"]["r2"]) == K
        assert len(m["prediction"]["model"]["psnr"]) == 2  # 3 frames after a context of 1
    report = (tmp_path / "report.md").read_text()
    assert f"**prior_samples** (trained): {note}." in report
    assert f"- trained prior_samples: {note.removeprefix('failed: ')}" in report


def test_an_internal_error_is_one_line_and_not_a_bad_option(mnist_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("Expected parameter scale (Tensor of shape (2,)) of distribution "
                         "Normal to satisfy the constraint GreaterThan(lower_bound=0.0), but "
                         "found invalid values:\ntensor([nan, nan])")  # fmt: skip

    monkeypatch.setattr(evaluation_run, "evaluate", broken)
    monkeypatch.setattr("pyro_dvip.evaluation.evaluate", broken)
    result = run_cli("evaluate", mnist_run, "--out", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: evaluation failed: Expected parameter scale (Tensor of shape (2,)) of "
        "distribution Normal to satisfy the constraint GreaterThan(lower_bound=0.0), but found "
        "invalid values:"
    )


def test_a_bad_context_is_still_an_option_error(mnist_run, tmp_path):
    result = run_cli("evaluate", mnist_run, *FAST, "--context", 3, "--out", tmp_path)
    assert result.exit_code == 2
    assert "Invalid value for '--context': must be between 1 and 2 for 3-frame" in result.output


def test_the_default_split_of_a_ten_second_clip_leaves_pairs_for_the_mi():
    # 10 s at the default 2 fps, sequences of 5 (the default): one test sequence, 4 pairs,
    # more than the KSG's k = 3.
    parts = split_sequences([20], seq_len=5, stride=5)
    assert parts.split == "time" and parts.test.tolist() == [[0, 15]]
    assert len(parts.test) * (5 - 1) > evaluation_run.MIN_PAIRS


def test_a_short_clip_is_evaluated_with_the_mi_marked_not_computable(tmp_path):
    video = write_video(tmp_path / "one.mp4", seconds=10, fps=10)  # 20 frames at 2 fps
    run_dir = tmp_path / "run"
    options = {**TINY, "seq_len": 4, "test_sequences": 4}
    train(make_config(**options, steps=2, data=str(video), split="time",
                      cache_dir=str(tmp_path / "cache")), run_dir, progress=False)  # fmt: skip
    result = run_cli("evaluate", run_dir, *FAST)
    assert result.exit_code == 0, result.output
    assert "MI: not computable: 3 (z_t, z_t+1) pairs" in result.output
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    why = "not computable: 3 (z_t, z_t+1) pairs; the KSG estimator (k = 3) needs more"
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert m["mutual_info"] == {"applicable": False, "note": why}
        assert m["correlation"]["pairs"] == 3  # a correlation needs only 3
        assert math.isfinite(m["bound"]["elbo_per_frame"]) and m["bound"]["sequences"] == 1
        assert len(m["prediction"]["model"]["ssim"]) == 2
    assert metrics["failed"] == []
    report = (run_dir / "eval" / "report.md").read_text()
    assert f"| mutual information | {why} | {why} |" in report
    assert f"## mutual_info.png\n\nNot written: {why}." in report
    assert (run_dir / "eval" / "correlation.png").exists()
    assert "n/a,n/a" in (run_dir / "eval" / "summary.csv").read_text().splitlines()[1]


def test_compare_takes_evaluation_folders_and_names_what_is_missing(mnist_run, tmp_path):
    elsewhere = tmp_path / "eval-elsewhere"
    assert run_cli("evaluate", mnist_run, *FAST, "--out", elsewhere).exit_code == 0
    missing = run_cli("compare", mnist_run, "--out", tmp_path / "cmp")
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        f"Error: {mnist_run}: no metrics.json in it or in {mnist_run / 'eval'}; pass a run "
        f"evaluated with `dvip evaluate {mnist_run}` or the folder given to `dvip evaluate --out`"
    )
    result = run_cli("compare", elsewhere, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    metrics = json.loads((elsewhere / "metrics.json").read_text())
    table = (tmp_path / "cmp" / "compare.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| 2×3, 16px"))
    assert row.split(" | ")[1] == f"{metrics['trained']['mutual_info']['same']:.2f}"
    assert "](../eval-elsewhere/correlation.png)" in table
