import pyro
import pytest
import torch
from click.testing import CliRunner
from hypothesis import settings

# Property tests draw the same examples in every run: a CI failure is reproducible, and a
# new example is explored by changing the test, not by chance.
settings.register_profile("derandomized", derandomize=True)
settings.load_profile("derandomized")

torch.set_num_threads(2)

# Options small enough for a 2-core CPU: 16x16 frames, narrow networks, short sequences.
TINY = dict(
    factors=2, factor_dim=3, image_size=16, width=4, batch_size=4, seq_len=3,
    test_sequences=8, log_every=1, checkpoint_every=2, transition_layers=1,
)  # fmt: skip


def tiny_args(**overrides) -> list[str]:
    """TINY as `dvip train` command-line arguments."""
    values = {**TINY, **overrides}
    args = []
    for name, value in values.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def run_cli(*args):
    """Invoke `dvip ARGS...` in-process; arguments are converted to strings."""
    from dvip_cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield


def make_known_answer(dvip, q_loc: torch.Tensor, q_logvar: torch.Tensor):
    """Set a DVIP with the default transition, in place, so that its ELBO's terms are known in
    closed form: q(z_t^k) = N(q_loc[k], exp(q_logvar[k])) whatever the frames and the past
    (posterior loc and log-variance heads zeroed, their biases set; q_loc, q_logvar (K, d)),
    p(z_t | z_{t-1}) = N(0, I) at every step (transition head zeroed: loc 0, log-variance 0),
    the decoder's mean 0.5 at every pixel (last transposed conv zeroed: sigmoid(0)). Then
    log p(x_t | z_t) = log N(x_t | 0.5, obs_var I) and every step's KL per unit is
    1/2 (exp(q_logvar) + q_loc^2 - 1 - q_logvar)."""
    with torch.no_grad():
        for head, bias in ((dvip.posterior.loc, q_loc), (dvip.posterior.logvar, q_logvar)):
            head.weight.zero_()
            head.bias.copy_(bias.flatten())
        dvip.transition.mlp.head.weight.zero_()
        dvip.transition.mlp.head.bias.zero_()
        last = dvip.decoder.deconv[-2]
        last.weight.zero_()
        last.bias.zero_()
    return dvip


def unit_kl_to_standard_normal(q_loc: torch.Tensor, q_logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(m, e^v) || N(0, 1)) per unit, written out: 1/2 (e^v + m^2 - 1 - v)."""
    return 0.5 * (q_logvar.exp() + q_loc**2 - 1 - q_logvar)
