import json
import math

import pytest
import torch
from click.testing import CliRunner
from pyro import distributions as dist
from pyro import poutine
from torch.distributions import Normal, kl_divergence

from dvip_cli.main import cli
from pyro_dvip import DVIP, Transition, check_elbo
from pyro_dvip.elbo_check import (
    DERIVATIONS,
    gaussian_kl,
    gaussian_log_likelihood,
    trace_decomposition,
)
from pyro_dvip.objective import trace_terms

B, T, S = 3, 3, 16
TINY_MODEL = dict(image_size=S, width=4, transition_layers=1)
TINY_CLI = [
    "--factors", "2", "--factor-dim", "3", "--image-size", "16", "--width", "4",
    "--transition-layers", "1", "--batch-size", "3", "--seq-len", "3", "--particles", "10",
]  # fmt: skip
EXACT_CHECKS = [
    "reconstruction, shared sample: hand-written vs trace",
    "KL, shared sample: hand-written vs trace",
    "ELBO, shared sample: hand-written vs trace",
    "ELBO, shared sample: hand-written vs TraceMeanField_ELBO",
]


class LaplaceRandomWalk(Transition):
    """z_t^k ~ Laplace(a_k z_{t-1}^k, b_k): KL(Normal || Laplace) is registered in torch."""

    def __init__(self, num_factors, factor_dim):
        super().__init__(num_factors, factor_dim)
        self.a = torch.nn.Parameter(torch.full((num_factors, 1), 0.9))
        self.log_b = torch.nn.Parameter(torch.full((num_factors, 1), -0.5))

    def forward(self, z_prev):
        return dist.Laplace(self.a * z_prev, self.log_b.exp().expand_as(z_prev)).to_event(1)


class StudentTRandomWalk(Transition):
    """z_t^k ~ StudentT(4, z_{t-1}^k, 0.5): no KL(Normal || StudentT) is registered."""

    def forward(self, z_prev):
        return dist.StudentT(4.0, z_prev, 0.5 * torch.ones_like(z_prev)).to_event(1)


def frames(b=B, t=T):
    return torch.rand(b, t, 3, S, S, generator=torch.Generator().manual_seed(1))


MODELS = {
    "default": lambda: DVIP(2, 3, **TINY_MODEL),
    "entangled": lambda: DVIP(1, 6, **TINY_MODEL),
    "laplace prior": lambda: DVIP(2, 3, transition=LaplaceRandomWalk, **TINY_MODEL),
    "student-t prior": lambda: DVIP(2, 3, transition=StudentTRandomWalk, **TINY_MODEL),
}


@pytest.mark.parametrize("name", MODELS)
def test_hand_written_bound_trace_and_meanfield_agree_on_random_networks(name):
    dvip = MODELS[name]()
    result = check_elbo(dvip, frames(), num_particles=30)
    assert result.passed, result.format()
    for check in EXACT_CHECKS:
        assert result.checks.loc[check, "relative"] < 1e-12  # float64: rounding only
    assert abs(result.checks["z"].iloc[-1]) < 4
    expected = "monte carlo" if name == "student-t prior" else "analytic"
    assert result.steps["kl_method"].tolist() == ["analytic"] + [expected] * (T - 1)
    assert any("Monte Carlo" in note for note in result.notes) == (expected == "monte carlo")
    assert any("eval mode" in note for note in result.notes)


def test_float32_agrees_to_float32_rounding():
    dvip, x = DVIP(2, 3, **TINY_MODEL), frames()
    single = check_elbo(dvip, x, num_particles=10, dtype=torch.float32)
    double = check_elbo(dvip, x, num_particles=10)
    assert single.passed and single.settings["dtype"] == "float32"
    assert (single.checks.loc[EXACT_CHECKS, "relative"] < 1e-5).all()
    shared = "hand-written, shared sample"
    assert single.estimates.loc[shared, "elbo"] != double.estimates.loc[shared, "elbo"]


def test_per_factor_kl_table_sums_to_the_kl_estimate():
    dvip = DVIP(3, 2, **TINY_MODEL)
    result = check_elbo(dvip, frames(), num_particles=10)
    table = result.factor_kl
    assert list(table.columns) == ["factor 1", "factor 2", "factor 3"]
    assert list(table.index) == ["1", "2", "3", "all"]
    torch.testing.assert_close(
        torch.tensor(table.loc["all"].to_numpy()), torch.tensor(table.iloc[:T].sum().to_numpy())
    )
    assert (table.to_numpy() > 0).all()  # a KL between distinct Gaussians is positive


def traces(dvip, x, kl_scale=1.0):
    torch.manual_seed(0)
    guide = poutine.trace(dvip.guide).get_trace(x, kl_scale)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x, kl_scale)
    return model, guide


def test_trace_decomposition_matches_the_training_metrics_terms():
    dvip, x = DVIP(2, 3, **TINY_MODEL).eval(), frames()
    model, guide = traces(dvip, x)
    terms = trace_decomposition(model, guide)
    assert terms.recon.shape == (B, T) and terms.kl.shape == (B, T, 2)
    recon, kl = trace_terms(model, guide, analytic_kl=True)
    torch.testing.assert_close(terms.recon.sum(-1), recon)
    torch.testing.assert_close(terms.kl.sum((1, 2)), kl)


@pytest.mark.parametrize("name", ["default", "student-t prior"])
def test_trace_decomposition_is_unscaled_by_kl_annealing(name):
    dvip, x = MODELS[name]().eval(), frames()
    plain, annealed = (
        trace_decomposition(*traces(dvip, x)),
        trace_decomposition(*traces(dvip, x, kl_scale=0.25)),
    )
    torch.testing.assert_close(annealed.kl, plain.kl)
    torch.testing.assert_close(annealed.recon, plain.recon)


def test_the_check_leaves_the_model_and_the_global_rng_alone():
    dvip = DVIP(2, 3, **TINY_MODEL).train()
    before = {k: v.clone() for k, v in dvip.state_dict().items()}
    rng = torch.get_rng_state()
    check_elbo(dvip, frames(), num_particles=5)
    assert dvip.training and next(dvip.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in dvip.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_same_seed_same_report_and_seed_changes_the_samples():
    dvip, x = DVIP(2, 3, **TINY_MODEL), frames()
    a, b = check_elbo(dvip, x, 5, seed=3), check_elbo(dvip, x, 5, seed=3)
    c = check_elbo(dvip, x, 5, seed=4)
    assert a.estimates.equals(b.estimates)
    assert (
        a.estimates.loc["Trace_ELBO, mean of 5", "elbo"]
        != c.estimates.loc["Trace_ELBO, mean of 5", "elbo"]
    )


@pytest.mark.parametrize("derivation", [d for d in DERIVATIONS if d != "paper"])
def test_each_wrong_derivation_is_reported_as_a_failure(derivation):
    result = check_elbo(DVIP(2, 3, **TINY_MODEL), frames(), 10, derivation=derivation)
    assert not result.passed
    failed = set(result.checks.index[~result.checks["passed"]])
    assert {EXACT_CHECKS[2], EXACT_CHECKS[3]} <= failed  # the ELBO on the shared sample
    steps = result.steps
    if derivation == "drop-normaliser":
        assert EXACT_CHECKS[0] in failed and EXACT_CHECKS[1] not in failed
        constant = 0.5 * 3 * S * S * math.log(2 * math.pi * 0.25)  # (D/2) log(2 pi sigma^2)
        gap = (steps["recon_hand"] - steps["recon_trace"]).to_numpy()
        assert gap == pytest.approx([constant] * T, rel=1e-9)
    else:
        assert EXACT_CHECKS[1] in failed and EXACT_CHECKS[0] not in failed
        wrong = (steps["kl_hand"] - steps["kl_trace"]).abs() > 1e-9
        expected = [True, False, False] if derivation == "drop-kl-t1" else [False, True, True]
        assert wrong.tolist() == expected  # the report points at the wrong step
    assert any(derivation in note for note in result.notes)


def test_closed_forms_are_the_gaussian_log_density_and_kl():
    g = torch.Generator().manual_seed(0)
    x, mean = torch.rand(2, 3, 3, 4, 4, generator=g), torch.rand(2, 3, 3, 4, 4, generator=g)
    expected = Normal(mean, 0.5).log_prob(x).flatten(2).sum(-1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.25), expected)
    unnormalised = gaussian_log_likelihood(x, mean, 0.25, normalised=False)
    constant = 0.5 * 48 * math.log(2 * math.pi * 0.25)
    torch.testing.assert_close(unnormalised - constant, expected)
    m, s, mu, sigma = (torch.randn(5, 4, generator=g) for _ in range(4))
    s, sigma = s.exp(), sigma.exp()
    expected = kl_divergence(Normal(m, s), Normal(mu, sigma)).sum(-1)
    torch.testing.assert_close(gaussian_kl(m, s, mu, sigma), expected)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(x=torch.rand(3, 3, 1, S, S)), r"x: expected frames of shape \(B, T, 3, 16, 16\)"),
        (dict(num_particles=1), "num_particles: must be >= 2"),
        (dict(derivation="wrong"), "derivation: must be one of paper, drop-kl-t1"),
        (dict(x=torch.rand(3, 1, 3, S, S), derivation="prior-wrong-step"), "only for T >= 2"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, message):
    args = dict(x=frames(), num_particles=5) | kwargs
    with pytest.raises(ValueError, match=message):
        check_elbo(DVIP(2, 3, **TINY_MODEL), **args)


def run_cli(*args):
    return CliRunner().invoke(cli, ["check-elbo", *map(str, args)])


def test_cli_fresh_model_prints_the_report_and_writes_json(tmp_path):
    out = tmp_path / "check.json"
    result = run_cli(*TINY_CLI, "--json", out)
    assert result.exit_code == 0, result.output
    assert "verdict: PASS" in result.output and "KL per step and factor" in result.output
    report = json.loads(out.read_text())
    assert report["passed"] is True
    assert report["settings"] == dict(
        derivation="paper", batch_size=3, seq_len=3, num_particles=10, dtype="float64",
        seed=0, tolerance=1e-5, max_z=4.0,
    )  # fmt: skip
    assert len(report["checks"]) == 5 and all(c["passed"] for c in report["checks"])
    assert [row["t"] for row in report["steps"]] == [1, 2, 3]
    assert set(report["factor_kl"]) == {"1", "2", "3", "all"}
    assert report["checks"][0]["z"] is None  # NaN is written as null: valid JSON


@pytest.mark.parametrize("derivation", [d for d in DERIVATIONS if d != "paper"])
def test_cli_exits_non_zero_for_a_wrong_derivation(tmp_path, derivation):
    out = tmp_path / "check.json"
    result = run_cli(*TINY_CLI, "--derivation", derivation, "--json", out)
    assert result.exit_code == 1
    assert "verdict: FAIL" in result.output
    assert json.loads(out.read_text())["passed"] is False


def test_cli_checks_the_entangled_model_in_float32():
    result = run_cli(*TINY_CLI, "--entangled", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    assert "float32" in result.output and "factor 2" not in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--particles", "1"], "Invalid value for '--particles'"),
        (["--image-size", "48"], "Invalid value for '--image-size': must be one of 16"),
        (["--derivation", "nope"], "Invalid value for '--derivation'"),
        (["no/such/run"], "Directory 'no/such/run' does not exist"),
        (["--seq-len", "1", "--derivation", "prior-wrong-step"], "Invalid value for '--seq-len'"),
    ],
)
def test_cli_bad_options_get_a_one_line_error(args, message):
    result = run_cli(*TINY_CLI, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_run_dir_must_be_a_run_and_excludes_model_options(tmp_path):
    result = run_cli(tmp_path)
    assert result.exit_code == 1
    assert f"Error: {tmp_path}: not a run directory (no config.json)" in result.output
    result = run_cli(tmp_path, "--factors", "3")
    assert result.exit_code == 2
    assert "--factors describes a fresh model; RUN_DIR's model comes from" in result.output
