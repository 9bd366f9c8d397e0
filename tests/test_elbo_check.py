import json
import math

import pytest
import torch
from click.testing import CliRunner
from conftest import make_known_answer, unit_kl_to_standard_normal
from pyro import distributions as dist
from pyro import poutine
from test_objective import UndetachedGuide
from torch.distributions import Normal, kl_divergence

from dvip_cli.main import cli
from pyro_dvip import DVIP, Transition, check_elbo
from pyro_dvip.elbo_check import (
    DERIVATIONS,
    gaussian_kl,
    gaussian_log_likelihood,
    trace_decomposition,
)

B, T, S = 3, 3, 16
TINY_MODEL = dict(image_size=S, width=4, transition_layers=1)
TINY_CLI = [
    "--factors", "2", "--factor-dim", "3", "--image-size", "16", "--width", "4",
    "--transition-layers", "1", "--batch-size", "3", "--seq-len", "3", "--particles", "10",
]  # fmt: skip
RECON, KL, LOG_P, LOG_Q, ELBO, ELBO_TRACE, ELBO_MEANFIELD = EXACT_CHECKS = [
    "reconstruction, shared sample: hand-written vs trace",
    "KL, shared sample: hand-written vs trace",
    "log p(z), shared sample: hand-written vs Trace_ELBO's model trace",
    "log q(z), shared sample: hand-written vs Trace_ELBO's guide trace",
    "ELBO, shared sample: hand-written vs trace",
    "ELBO, shared sample: hand-written log p - log q vs Trace_ELBO",
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
    assert result.coupling == {}  # each of these priors reads only its own factor's past
    single = "independent (a single factor: trivially" if name == "entangled" else "independent ("
    assert f"factors: {single}" in result.format()


def test_float32_agrees_to_float32_rounding():
    dvip, x = DVIP(2, 3, **TINY_MODEL), frames()
    single = check_elbo(dvip, x, num_particles=10, dtype=torch.float32)
    double = check_elbo(dvip, x, num_particles=10)
    assert single.passed and single.settings["dtype"] == "float32"
    assert (single.checks.loc[EXACT_CHECKS, "relative"] < 1e-5).all()
    # float32 noise is not float64 noise: the two Monte Carlo means agree within their errors
    mean = "Trace_ELBO, mean of 10"
    (a, se_a), (b, se_b) = (r.estimates.loc[mean, ["elbo", "se"]] for r in (single, double))
    assert abs(a - b) < 4 * math.hypot(se_a, se_b)


def known_answer_model(K=3, d=2):
    """q(z_t^k) = N(loc_k, e^{logvar_k}) fixed, p = N(0, I), decoder mean 0.5 (conftest)."""
    q_loc = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, -1.0]])[:K, :d]
    q_logvar = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(0.5), 0.0]])[:K, :d]
    return make_known_answer(DVIP(K, d, **TINY_MODEL), q_loc, q_logvar), q_loc, q_logvar


def test_per_factor_kl_table_gives_each_factor_its_closed_form_kl():
    dvip, q_loc, q_logvar = known_answer_model()
    # factor 1: 1/2 * 1^2; factor 2: q = p; factor 3: 1/2 (0.5 + 4 - 1 - log 0.5) + 1/2 * 1
    expected = [0.5, 0.0, 0.5 * (3.5 - math.log(0.5)) + 0.5]
    assert unit_kl_to_standard_normal(q_loc, q_logvar).sum(-1).tolist() == pytest.approx(expected)
    result = check_elbo(dvip, frames(), num_particles=5)
    assert result.passed, result.format()
    table = result.factor_kl
    assert list(table.columns) == ["factor 1", "factor 2", "factor 3"]
    assert list(table.index) == ["1", "2", "3", "all"]
    for step in ("1", "2", "3"):
        assert table.loc[step].tolist() == pytest.approx(expected, abs=1e-6)
    assert table.loc["all"].tolist() == pytest.approx([T * v for v in expected], abs=1e-6)


def traces(dvip, x, kl_scale=1.0):
    torch.manual_seed(0)
    guide = poutine.trace(dvip.guide).get_trace(x, kl_scale)
    model = poutine.trace(poutine.replay(dvip.model, trace=guide)).get_trace(x, kl_scale)
    return model, guide


def test_trace_decomposition_gives_the_closed_form_terms_of_a_known_model():
    dvip, q_loc, q_logvar = known_answer_model()
    x = frames()
    model, guide = traces(dvip.eval(), x)
    terms = trace_decomposition(model, guide)
    # log N(x | 0.5, 0.25) per pixel, summed over each frame's 3 x 16 x 16 pixels
    per_pixel = -((x - 0.5) ** 2) / (2 * 0.25) - 0.5 * math.log(2 * math.pi * 0.25)
    torch.testing.assert_close(terms.recon, per_pixel.flatten(2).sum(-1))  # (B, T)
    kl = unit_kl_to_standard_normal(q_loc, q_logvar).sum(-1)  # (K,)
    torch.testing.assert_close(terms.kl, kl.expand(B, T, 3))
    # Trace_ELBO's terms at the sample: log N(z | 0, I) and log N(z | loc, e^logvar), by hand
    z = torch.stack([guide.nodes[f"z_{t}"]["value"] for t in (1, 2, 3)], 1)  # (B, T, K, d)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_q = (
        -0.5 * (z - q_loc) ** 2 / q_logvar.exp() - 0.5 * q_logvar - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    torch.testing.assert_close(terms.log_p, log_p)
    torch.testing.assert_close(terms.log_q, log_q)


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
    steps = result.steps
    if derivation == "drop-normaliser":
        assert {RECON, ELBO, ELBO_TRACE, ELBO_MEANFIELD} <= failed
        assert not {KL, LOG_P, LOG_Q} & failed
        constant = 0.5 * 3 * S * S * math.log(2 * math.pi * 0.25)  # (D/2) log(2 pi sigma^2)
        gap = (steps["recon_hand"] - steps["recon_trace"]).to_numpy()
        assert gap == pytest.approx([constant] * T, rel=1e-9)
    else:
        assert {KL, ELBO, ELBO_MEANFIELD} <= failed and RECON not in failed
        # leaving out KL_1 changes no log-density; p(z_t | z_t) changes log p(z) too
        assert (LOG_P in failed) == (derivation == "prior-wrong-step")
        assert (ELBO_TRACE in failed) == (derivation == "prior-wrong-step")
        assert LOG_Q not in failed
        wrong = (steps["kl_hand"] - steps["kl_trace"]).abs() > 1e-9
        expected = [True, False, False] if derivation == "drop-kl-t1" else [False, True, True]
        assert wrong.tolist() == expected  # the report points at the wrong step
    assert any(derivation in note for note in result.notes)


class WideLikelihood(DVIP):
    """A user's model whose likelihood scale is 1.5 sqrt(obs_var), not the sqrt(obs_var) that
    ``obs_var`` (and so the hand-written bound) says."""

    def model(self, x, kl_scale=1.0):
        obs_var, self.obs_var = self.obs_var, 2.25 * self.obs_var
        try:
            super().model(x, kl_scale)
        finally:
            self.obs_var = obs_var


class HalfScaledPrior(DVIP):
    """A user's model that scales its z sites by 1/2 while the guide does not."""

    def model(self, x, kl_scale=1.0):
        super().model(x, 0.5 * kl_scale)


def test_a_model_with_a_wider_likelihood_fails_on_the_reconstruction():
    result = check_elbo(WideLikelihood(2, 3, **TINY_MODEL), frames(), 3)
    assert not result.passed
    failed = set(result.checks.index[~result.checks["passed"]])
    assert {RECON, ELBO, ELBO_TRACE, ELBO_MEANFIELD} <= failed
    assert not {KL, LOG_P, LOG_Q} & failed  # the latent side is the paper's
    assert (result.steps["recon_hand"] != result.steps["recon_trace"]).all()  # every step


def test_a_model_that_scales_its_latents_alone_fails_on_log_p():
    result = check_elbo(HalfScaledPrior(2, 3, **TINY_MODEL), frames(), 3)
    assert not result.passed
    failed = set(result.checks.index[~result.checks["passed"]])
    assert {LOG_P, ELBO_TRACE} <= failed
    # the KL rows read unscaled densities, and TraceMeanField_ELBO scales the KL by the guide's
    # scale: neither sees a scale on the model side alone
    assert not {RECON, KL, LOG_Q, ELBO, ELBO_MEANFIELD} & failed
    hand, trace = result.checks.loc[LOG_P, ["a", "b"]]
    assert trace == pytest.approx(0.5 * hand, rel=1e-9)


def test_the_check_cannot_see_a_guide_that_stops_detaching_the_prior():
    """Detaching changes gradients, not values, and the check compares values (see
    docs/derivation.md); tests/test_objective.py pins the detachment by its gradients."""
    result = check_elbo(UndetachedGuide(2, 3, **TINY_MODEL), frames(), 3)
    assert result.passed, result.format()


class CoupledPrior(Transition):
    """K = 3, d = 2: factor 1's mean reads factor 2; factor 3's mean reads factor 2 and its
    scale factor 1; factor 2 reads only itself."""

    def forward(self, z_prev):
        z1, z2, z3 = z_prev.unbind(1)  # (B, d) each
        loc = torch.stack([0.9 * z1 + 0.5 * z2, 0.9 * z2, 0.9 * z3 + 0.1 * z2], 1)
        scale = torch.stack([torch.ones_like(z1), torch.ones_like(z2), (0.3 * z1).exp()], 1)
        return dist.Normal(loc, scale).to_event(1)


def test_a_coupled_prior_is_reported_with_the_factors_it_reads_and_still_passes():
    dvip = DVIP(3, 2, transition=CoupledPrior, **TINY_MODEL)
    result = check_elbo(dvip, frames(), 3)
    assert result.passed, result.format()  # a coupled prior is allowed
    assert result.coupling == {1: [2], 3: [1, 2]}
    line = "factors: coupled (factor 1 reads factor 2; factor 3 reads factors 1, 2)"
    assert line in result.format()
    report = result.to_dict()
    assert report["factors_independent"] is False
    assert report["factor_coupling"] == {"1": [2], "3": [1, 2]}


def test_coupling_is_found_on_one_step_sequences_too():
    dvip = DVIP(3, 2, transition=CoupledPrior, **TINY_MODEL)
    assert check_elbo(dvip, frames(t=1), 2).coupling == {1: [2], 3: [1, 2]}
    paper = check_elbo(DVIP(3, 2, **TINY_MODEL), frames(t=1), 2)
    assert paper.coupling == {} and paper.to_dict()["factors_independent"] is True


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
    assert [c["check"] for c in report["checks"]][:-1] == EXACT_CHECKS
    assert all(c["passed"] for c in report["checks"])
    assert report["factors_independent"] is True and report["factor_coupling"] == {}
    assert "factors: independent (" in result.output
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
    assert "factors: independent (a single factor: trivially" in result.output


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
