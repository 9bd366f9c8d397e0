import importlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_args

from dvip_cli.main import cli
from pyro_dvip import DVIP, load
from pyro_dvip.build import import_transition

ROOT = Path(__file__).resolve().parents[1]
TINY_EXAMPLE = dict(
    steps=3, image_size=16, width=4, num_factors=2, factor_dim=3, batch_size=4, seq_len=3,
    particles=10,
)  # fmt: skip


@pytest.fixture
def example(monkeypatch):
    """``examples/custom_prior.py`` imported as ``examples.custom_prior``, as --transition does."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.custom_prior")


def test_both_priors_train_and_pass_the_check_and_only_one_couples_factors(example):
    results = example.run(**TINY_EXAMPLE)
    assert list(results) == ["StudentTTransition", "CoupledLinearTransition"]
    for result, influence in results.values():
        assert result.passed, result.format()
        assert influence.shape == (2, 2) and (influence.diagonal() > 0).all()
    student_t, student_t_influence = results["StudentTTransition"]
    assert student_t.steps["kl_method"].tolist() == ["analytic", "monte carlo", "monte carlo"]
    assert any("Independent(StudentT)" in note for note in student_t.notes)
    assert student_t_influence[0, 1] == 0 and student_t_influence[1, 0] == 0
    assert student_t.coupling == {}
    coupled, coupled_influence = results["CoupledLinearTransition"]
    assert set(coupled.steps["kl_method"]) == {"analytic"}
    assert coupled_influence[0, 1] > 0 and coupled_influence[1, 0] > 0
    assert coupled.coupling == {1: [2], 2: [1]}  # the check's line agrees with the Jacobian


def test_example_script_runs_at_a_tiny_size(example):
    args = ["--steps", "2", "--image-size", "16", "--width", "4", "--factor-dim", "3",
            "--batch-size", "4", "--particles", "5"]  # fmt: skip
    result = CliRunner().invoke(example.main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("verdict: PASS") == 2
    assert "=== StudentTTransition: 2 training steps ===" in result.output
    assert "=== CoupledLinearTransition: 2 training steps ===" in result.output
    assert result.output.count("Cross-factor influence") == 2


def test_student_t_prior_gives_gradients_to_its_parameters(example):
    from pyro_dvip import NegELBO

    dvip = DVIP(2, 3, image_size=16, width=4, transition=example.StudentTTransition)
    NegELBO(dvip)(torch.rand(2, 3, 3, 16, 16)).backward()
    prior = dvip.transition
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters())
    mean, logvar = prior.moments(torch.randn(2, 2, 3))
    assert torch.isfinite(logvar).all()  # nu > 2: the guide always sees a finite variance


@pytest.mark.parametrize(
    "prior,kl_methods",
    [
        ("CoupledLinearTransition", ["analytic"] * 3),
        ("StudentTTransition", ["analytic", "monte carlo", "monte carlo"]),
    ],
)
def test_dvip_train_and_check_elbo_with_an_example_prior(example, tmp_path, prior, kl_methods):
    target = f"examples.custom_prior:{prior}"
    assert import_transition(target) is getattr(example, prior)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["train", *tiny_args(steps=2), "--transition", target, "--out", str(run), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["transition"] == target
    assert isinstance(load(run).transition, getattr(example, prior))

    out = tmp_path / "check.json"
    result = CliRunner().invoke(
        cli, ["check-elbo", str(run), "--particles", "10", "--batch-size", "3", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["settings"]["seq_len"] == 3  # the run's
    assert [step["kl_method"] for step in report["steps"]] == kl_methods
    assert report["factors_independent"] is (prior == "StudentTTransition")


def test_factored_linear_prior_maps_each_factor_by_its_own_matrix_and_passes_the_check(example):
    from pyro_dvip import check_elbo

    torch.manual_seed(0)
    prior = example.FactoredLinearTransition(2, 3)
    with torch.no_grad():
        prior.A.copy_(torch.randn(2, 3, 3))
        prior.b.copy_(torch.randn(2, 3))
    z_prev = torch.randn(5, 2, 3)
    p = prior(z_prev)
    assert p.batch_shape == (5, 2) and p.event_shape == (3,)
    for k in range(2):  # factor k's mean: its own row vector times its own matrix, plus b_k
        expected = torch.stack([z_prev[b, k] @ prior.A[k] + prior.b[k] for b in range(5)])
        assert torch.allclose(p.mean[:, k], expected, atol=1e-6)
    assert torch.allclose(p.stddev, torch.full((5, 2, 3), torch.log(torch.tensor(2.0)).item()))
    influence = example.cross_factor_influence(prior, z_prev)
    assert influence[0, 1] == 0 and influence[1, 0] == 0
    expected_diagonal = torch.linalg.matrix_norm(prior.A.detach())  # d(zA)/dz = A^T, same norm
    assert torch.allclose(influence.diagonal(), expected_diagonal, atol=1e-5)

    dvip = DVIP(2, 3, image_size=16, width=4, transition=example.FactoredLinearTransition)
    result = check_elbo(dvip, torch.rand(4, 3, 3, 16, 16), 10, seed=0)
    assert result.passed, result.format()
    assert set(result.steps["kl_method"]) == {"analytic"}
    assert result.coupling == {}
