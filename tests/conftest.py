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
