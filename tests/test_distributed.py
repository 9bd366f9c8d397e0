"""Multi-process training with gloo on CPU: DDP around Pyro's ELBO."""

import json
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_args

from pyro_dvip import DVIP, NegELBO, load
from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dvip_cli(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dvip_cli", "train", *map(str, args), "--quiet", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def launch(out, *args):
    """`dvip train ARGS --out OUT` (through torchrun when ARGS has --nproc)."""
    return dvip_cli(*args, "--out", out)


def test_a_torchrun_worker_exits_with_the_commands_status_and_flushed_output(tmp_path):
    # Workers end through distributed.exit_worker (os._exit): nothing printed may be lost and
    # the status must be the command's.
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    ok = subprocess.run([sys.executable, "-m", "dvip_cli", "presets", "cpu-objects-paper"],
                        capture_output=True, text=True, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["lr_schedule"] == "cosine"
    bad = subprocess.run([sys.executable, "-m", "dvip_cli", "train", "--factors", "0"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2
    assert "Invalid value for '--factors'" in bad.stderr


def test_nproc_2_trains_resumes_and_keeps_per_rank_states(tmp_path):
    out = tmp_path / "ddp"
    first = launch(out, *tiny_args(steps=4, batch_size=4), "--nproc", 2)
    assert first.returncode == 0, first.stderr
    assert "torch.distributed.run" in first.stderr and "--nproc-per-node=2" in first.stderr
    assert first.stdout.count("run directory:") == 1  # only rank 0 reports
    state = load_checkpoint(list_checkpoints(out)[-1])
    assert state["step"] == 4
    assert len(state["rng"]) == 2 and len(state["data"]) == 2  # each rank's own stream
    assert not torch.equal(state["data"][0]["generator"], state["data"][1]["generator"])

    resumed = launch(out, "--nproc", 2, "--resume", "--steps", 6)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 6
    assert load(out).num_factors == 2

    single = dvip_cli("--out", out, "--resume", "--steps", 8)
    assert single.returncode == 1
    assert "from 2 processes, this run has 1; resume with the same --nproc" in single.stderr


def test_nproc_must_divide_the_batch(tmp_path):
    result = dvip_cli(*tiny_args(steps=1, batch_size=3), "--nproc", 2, "--out", tmp_path / "x")
    assert result.returncode == 2
    assert "Invalid value for '--nproc': --batch-size 3 does not split over 2 processes" in (
        result.stderr
    )


def near_deterministic(seed: int) -> DVIP:
    """A tiny model whose posterior has scale e^-15: the sampled z is the posterior mean, so
    runs with different noise streams compute the same gradients (with the analytic KL of
    TraceMeanField_ELBO; Trace_ELBO's log q(z) at so small a scale is float32 noise)."""
    torch.manual_seed(seed)
    dvip = DVIP(2, 3, image_size=16, width=4, transition_layers=1)
    with torch.no_grad():
        dvip.posterior.logvar.weight.zero_()
        dvip.posterior.logvar.bias.fill_(-30.0)
    return dvip


def train_steps(objective, parameters, batches):
    # Plain SGD: the parameters then differ by gradient differences times lr, whereas Adam
    # would blow float rounding in near-zero gradients up to a full lr-sized step.
    optimizer = torch.optim.SGD(parameters, lr=1e-4)
    for x in batches:
        optimizer.zero_grad()
        objective(x).backward()
        optimizer.step()


def ddp_worker(rank, world_size, port, batches, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(100 + rank)  # different posterior noise on each rank
    dvip = near_deterministic(seed=0)
    ddp = torch.nn.parallel.DistributedDataParallel(NegELBO(dvip, "meanfield"))
    train_steps(ddp, dvip.parameters(), batches)
    torch.save(dvip.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_ranks_match_each_other_and_one_process_on_the_global_batch(tmp_path):
    torch.manual_seed(0)
    halves = [torch.rand(2, 3, 3, 16, 16) for _ in range(3)]  # each rank's share, per step
    # Both ranks see the same share, so BatchNorm's batch statistics equal those of one
    # process on the global batch [share, share].
    mp.spawn(ddp_worker, args=(2, free_port(), halves, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)

    single = near_deterministic(seed=0)
    torch.manual_seed(999)
    train_steps(
        NegELBO(single, "meanfield"), single.parameters(), [torch.cat([h, h]) for h in halves]
    )
    initial = near_deterministic(seed=0).state_dict()
    for name, value in single.state_dict().items():
        assert torch.equal(rank0[name], rank1[name]), name  # DDP keeps ranks identical
        if value.is_floating_point() and "running" not in name:
            update_single, update_ddp = value - initial[name], rank0[name] - initial[name]
            negligible = 1e-6 * max(value.norm().item(), 1.0)
            if update_single.norm() < negligible:  # a conv bias before BatchNorm: no gradient
                assert update_ddp.norm() < negligible, name
                continue
            # float32 sums in another order: the updates agree to a small fraction (which one
            # depends on the CPU's kernels: up to 1.4e-4 on an AMD EPYC VM, under 1e-4 on Intel)
            relative = (update_ddp - update_single).norm() / update_single.norm()
            assert relative < 1e-3, (name, relative.item())
