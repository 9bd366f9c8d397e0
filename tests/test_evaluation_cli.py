import csv
import json
import math
import re
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from conftest import TINY, make_known_answer, run_cli, unit_kl_to_standard_normal
from PIL import Image
from torch.distributions import Normal

from dvip_cli.main import cli
from pyro_dvip import load, make_config, train
from pyro_dvip.checkpoint import load_checkpoint
from pyro_dvip.evaluation import EvalOptions
from pyro_dvip.evaluation.generations import grid_size
from pyro_dvip.evaluation.held_out import held_out_sequences

# Measurement sizes small enough for a 2-core CPU; every code path still runs.
FAST = [
    "--samples", 40, "--particles", 2, "--iw-samples", 2, "--bootstrap", 5, "--partitions", 3,
    "--select-pairs", 20, "--intervention-pairs", 8, "--rollouts", 2, "--examples", 2,
]  # fmt: skip
EXAMPLES, SEQ_LEN, SIZE = 2, TINY["seq_len"], TINY["image_size"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two factored runs differing only in the seed, and one entangled run: 2 steps each."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, options in {
        "factored-s0": dict(seed=0),
        "factored-s1": dict(seed=1),
        "entangled": dict(entangled=True),
    }.items():
        train(make_config(**TINY, steps=2, **options), root / name, progress=False)
        made[name] = root / name
    return made


@pytest.fixture(scope="module")
def evaluated(runs):
    results = {name: run_cli("evaluate", run_dir, *FAST) for name, run_dir in runs.items()}
    return runs, results


def test_evaluate_writes_every_file_with_valid_images(evaluated):
    runs, results = evaluated
    assert results["factored-s0"].exit_code == 0, results["factored-s0"].output
    out = runs["factored-s0"] / "eval"
    assert f"report: {out / 'report.md'}" in results["factored-s0"].output
    # the printed and reported values are pinned on a model with known numbers below
    # (test_evaluate_a_chosen_checkpoint_reports_the_known_numbers_of_a_known_model)
    report = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    kl = metrics["trained"]["bound"]
    assert "KL per factor per frame, nats" in report
    assert len(kl["prediction_saving"]) == 2 and len(kl["kl_per_step_per_factor"]) == SEQ_LEN
    assert len(kl["active_units"]) == 2 and all(0 <= n <= 3 for n in kl["active_units"])
    for name in [
        "metrics.json", "report.md", "summary.csv", "probe_r2.csv", "mutual_info.csv",
        "intervention.csv", "identity.csv", "prediction.csv", "correlation.png",
        "mutual_info.png", "probe_r2.png", "intervention.png", "identity.png", "prediction.png",
    ]:  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    for model in ("trained", "untrained"):
        folder = out / "generations" / model
        stems = ["reconstructions", "prior_samples", "independent_factor0",
                 "independent_factor1", "rollout_factor0", "rollout_factor1"]  # fmt: skip
        for stem in ["truth"] + stems:
            with Image.open(folder / f"{stem}.png") as image:
                assert image.format == "PNG"
                assert image.size == grid_size(EXAMPLES, SEQ_LEN, SIZE)
        for stem in stems:
            with Image.open(folder / f"{stem}.gif") as gif:
                assert gif.format == "GIF" and gif.n_frames == SEQ_LEN
                assert gif.size == grid_size(1, EXAMPLES, SIZE)
    # the paper's decoder draws the factors together: no track, and it says so
    assert "label-free verdict: n/a (the paper's decoder draws all factors together" in (
        results["factored-s0"].output
    )
    assert not (out / "generations" / "trained" / "tracks.png").exists()
    scene = metrics["trained"]["scene"]
    assert scene["used"] == [k for k, v in enumerate(kl["kl_per_factor_per_frame"]) if v >= 0.1]
    for figure in ("correlation.png", "probe_r2.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width > image.height  # two panels


def test_metrics_hold_every_measurement_for_the_model_and_its_floor(evaluated):
    runs, _ = evaluated
    metrics = json.loads((runs["factored-s0"] / "eval" / "metrics.json").read_text())
    assert metrics["sequences"] == 20  # 40 pairs from 3-frame sequences
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert m["bound"]["normalising_constant_included"] is True
        assert m["mutual_info"]["pairs"] == 40 and m["mutual_info"]["protocol"] == "factors"
        assert len(m["mutual_info"]["same_interval"]) == 2
        assert len(m["alignment"]["r2"]) == 2 and len(m["alignment"]["r2"][0]) == 2
        a = m["alignment"]
        assert a["targets"] == "position"  # the headline probe decodes positions
        assert a["r2"] == a["by_target"]["position"]["r2"]
        for part in ("velocity", "position+velocity"):  # the same probes on other targets
            assert len(a["by_target"][part]["r2"]) == 2
            assert len(a["by_target"][part]["whole_r2"]) == 2
        coordinates = a["by_coordinate"]  # factor x digit x (x, y, vx, vy)
        assert coordinates["coordinates"] == ["x", "y", "vx", "vy"]
        assert np.array(coordinates["r2"]).shape == (2, 2, 4)
        assert np.array(coordinates["whole_r2"]).shape == (2, 4)
        position = np.array(coordinates["r2"])[..., :2].mean(-1)  # the same probes, split
        assert position == pytest.approx(np.array(a["r2"]), abs=1e-6)
        assert len(m["intervention"]["fractions"]) == 2
        assert sum(m["intervention"]["fractions"][0]) == pytest.approx(1.0)
        # every digit's matched factor is followed, on the scored half of the 20 sequences
        assert sorted(m["identity"]["digits"]) == [0, 1] and m["identity"]["sequences"] == 10
        assert a["kl_per_factor_per_frame"] == m["bound"]["kl_per_factor_per_frame"]
        kl = a["kl_per_factor_per_frame"]  # unused: under 0.1 nats per frame, matched or not
        assert a["unused"] == [k for k, v in enumerate(kl) if v is not None and v < 0.1]
        assert len(m["prediction"]["model"]["psnr"]) == 2  # context 1 of 3 frames
        assert m["object_score"]["groups"] == "factors"  # the paper's decoder is scored too
        assert 0 <= m["object_score"]["normalised"] <= 1
    report = (runs["factored-s0"] / "eval" / "report.md").read_text()
    assert "| measurement | trained | untrained floor |" in report
    assert "| probe R² on position [factor, digit] |" in report
    assert "| probe R² on velocity [factor, digit]; whole latent |" in report
    assert "| probe R² on position+velocity [factor, digit]; whole latent |" in report
    assert "| factor 1: R² on (x, y) per digit | digit 0 (" in report
    assert "![correlation.png](correlation.png)" in report


def test_entangled_run_is_split_by_the_partition_protocol(evaluated):
    runs, results = evaluated
    assert results["entangled"].exit_code == 0, results["entangled"].output
    metrics = json.loads((runs["entangled"] / "eval" / "metrics.json").read_text())
    mi = metrics["trained"]["mutual_info"]
    assert mi["protocol"] == "best of 3 random partitions" and len(mi["scores"]) == 3
    assert mi["groups"] == 2 and mi["group_size"] == 3  # the factored model's 2x3
    assert sorted(u for g in mi["units"] for u in g) == list(range(6))
    score = metrics["trained"]["object_score"]  # label-free: scored on the MI partition
    assert score["units"] == mi["units"] and 0 <= score["normalised"] <= 1
    assert metrics["trained"]["alignment"]["protocol"].startswith("most favourable of 3")
    # the split's groups are not the prior's factors: no KL per group, no factor unused
    assert "kl_per_factor_per_frame" not in metrics["trained"]["alignment"]
    assert metrics["trained"]["alignment"]["unused"] == []
    report = (runs["entangled"] / "eval" / "report.md").read_text()
    assert "| unused factors (KL < 0.1 nats per frame) | n/a (no KL per probed" in report
    assert len(metrics["trained"]["identity"]["factors"]) == 2  # the split's groups, followed


def test_probe_targets_choose_what_the_headline_probe_decodes(runs, tmp_path):
    result = run_cli(
        "evaluate", runs["factored-s0"], *FAST, "--probe-targets", "position+velocity",
        "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "position+velocity ridge probe min matched" in result.output
    a = json.loads((tmp_path / "metrics.json").read_text())["trained"]["alignment"]
    assert a["targets"] == "position+velocity"
    assert a["r2"] == a["by_target"]["position+velocity"]["r2"]
    assert a["r2"] != a["by_target"]["position"]["r2"]
    bad = run_cli("evaluate", runs["factored-s0"], "--probe-targets", "colour")
    assert bad.exit_code == 2 and "'--probe-targets'" in bad.output


def test_an_mlp_probe_is_recorded_reported_and_not_compared_with_ridge(evaluated, tmp_path):
    runs, _ = evaluated
    result = run_cli("evaluate", runs["factored-s1"], *FAST, "--probe", "mlp", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "position mlp probe min matched" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    ridge = json.loads((runs["factored-s1"] / "eval" / "metrics.json").read_text())
    for model in ("trained", "untrained"):  # the floor is measured with the same probe
        assert metrics[model]["alignment"]["probe"] == "mlp"
        assert ridge[model]["alignment"]["probe"] == "ridge"
        assert metrics[model]["alignment"]["r2"] != ridge[model]["alignment"]["r2"]
    assert "probes: MLP 64-64 ReLU" in (tmp_path / "report.md").read_text()
    bad = run_cli("evaluate", runs["factored-s0"], "--probe", "forest")
    assert bad.exit_code == 2 and "'--probe'" in bad.output

    (runs["factored-s1"] / "eval").rename(runs["factored-s1"] / "eval-ridge")
    tmp_path.rename(runs["factored-s1"] / "eval")  # factored-s1 now holds the MLP evaluation
    try:
        mixed = run_cli("compare", runs["factored-s0"], runs["factored-s1"], "--out", tmp_path)
        assert mixed.exit_code == 1
        assert "runs were probed with different probes (ridge: " in mixed.output
        assert "the same `dvip evaluate --probe`" in mixed.output and not tmp_path.exists()
    finally:
        (runs["factored-s1"] / "eval").rename(tmp_path)
        (runs["factored-s1"] / "eval-ridge").rename(runs["factored-s1"] / "eval")


def test_group_size_that_does_not_divide_z_dim_is_a_usage_error(runs, tmp_path):
    result = run_cli("evaluate", runs["entangled"], *FAST, "--groups", 4, "--out", tmp_path)
    assert result.exit_code == 2
    assert "--groups" in result.output and "does not divide z_dim 6" in result.output


def test_compare_groups_seeds_and_shows_the_paper_row(evaluated, tmp_path):
    runs, _ = evaluated
    result = run_cli("compare", *runs.values(), "--out", tmp_path)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "compare.md").read_text()
    assert "| 2×3, 16px, obs var 0.25, speed 3.6, 3 frames, 2 steps (2 runs) |" in table
    assert "entangled 1×6, 16px, obs var 0.25, speed 3.6, 3 frames, 2 steps (1 run)" in table
    assert "| paper: moving MNIST, two factors (2×20) | 4.61 | 0.75 | -2902 |" in table
    factored = next(line for line in table.splitlines() if "(2 runs)" in line)
    assert factored.count(" ± ") == 14  # every column as mean ± sd
    assert (tmp_path / "compare.csv").exists()
    # seeds 0 and 1 were each measured on their own test sequences: the table says so
    assert "**The runs were measured on different held-out sets**" in table
    s0, s1 = runs["factored-s0"], runs["factored-s1"]
    assert f"- Moving MNIST test sequences of seed 1: `{s1}`" in table
    assert f"- Moving MNIST test sequences of seed 0: `{s0}`, `{runs['entangled']}`" in table


def test_compare_names_a_common_held_out_set():
    from pyro_dvip.evaluation.compare import _held_out_lines, held_out_sets

    config = json.loads(make_config(**TINY).to_json())
    common = {"config": config, "held_out": {"seed": 4, "notes": []}}
    older = {"config": config}  # evaluated before the held-out set was recorded
    assert _held_out_lines({Path("a"): common, Path("b"): common}) == [
        "All runs were measured on the same held-out set: Moving MNIST test sequences of seed 4.",
        "",
    ]
    sets = held_out_sets({Path("a"): common, Path("b"): older})
    assert list(sets.values()) == [[Path("a")], [Path("b")]]
    assert "unrecorded" in list(sets)[1]


def test_command_line_defaults_are_the_library_defaults():
    context = click.Context(cli.commands["evaluate"])
    options = {p.name: p for p in cli.commands["evaluate"].params}
    for name, field in EvalOptions.__dataclass_fields__.items():
        if name == "batch_size":
            continue
        assert name in options, name
        if field.default is not None:  # None: left to the library (config or sequence length)
            assert options[name].get_default(context) == field.default, name


def test_compare_of_an_unevaluated_run_says_what_to_run(runs, tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    result = run_cli("compare", empty, "--out", tmp_path / "cmp")
    assert result.exit_code == 1 and "dvip evaluate" in result.output


def test_evaluate_a_chosen_checkpoint_reports_the_known_numbers_of_a_known_model(runs, tmp_path):
    """A checkpoint made a model whose bound is known in closed form (conftest): decoder mean
    0.5, q(z_t) fixed per unit, p(z_t | z_{t-1}) = N(0, I). Evaluated with --checkpoint, the
    printed summary, report.md and metrics.json must show those numbers."""
    run = runs["factored-s0"]
    step2 = run / "checkpoints" / "step_00000002.pt"
    q_loc = torch.tensor([[1.0, 0.0, 0.2], [0.0, 0.0, 0.0]])
    q_logvar = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    known = tmp_path / "known.pt"
    dvip = make_known_answer(load(run, checkpoint=step2), q_loc, q_logvar)
    torch.save({**load_checkpoint(step2), "model": dvip.state_dict()}, known)
    result = run_cli("evaluate", run, *FAST, "--checkpoint", known, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(known)

    unit_kl = unit_kl_to_standard_normal(q_loc, q_logvar)  # (K, d): 0.5, 0.153, 0.02; 0, 0, 0
    kl = unit_kl.sum(-1)  # 0.673, 0 nats per frame, at every step
    frames = held_out_sequences(make_config(**TINY), 20).frames  # 40 pairs of 3-frame sequences
    log_lik = Normal(0.5, 0.5).log_prob(frames).flatten(2).sum(-1).mean()  # per frame
    elbo = (log_lik - kl.sum()).item()
    assert f"test ELBO per frame: {elbo:.2f} ± 0.00 (test sequences of seed 0)" in result.output
    assert "KL per factor per frame (nats; ~0 = a collapsed factor): 0.67, 0.00" in result.output
    # factor 1 pays the same KL at every step (nothing predicted); factor 2 is collapsed
    assert re.search(r"1 - KL\(t>=2\)/KL\(t=1\): -?0\.00, nan ", result.output)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"| test ELBO per frame (± s.e.) | {elbo:.1f} ± 0.0 |" in report
    assert "| KL per factor per frame, nats (≈0: a collapsed factor) | [0.67, 0.00] |" in report
    assert "| KL per step summed over factors, nats (t = 1..T) | 0.7, 0.7, 0.7 |" in report
    assert "| active units per factor (KL > 0.05 nats per frame) | 2, 0 |" in report  # 0.02 < 0.05
    # the latents carry nothing about the frames: no digit can be read, the verdict says so
    assert metrics["trained"]["alignment"]["verdict"] == "dropped"
    assert "  verdict: dropped (not encoded: digit 0 (whole-latent R² " in result.output
    assert (
        "| verdict (objects / axis split / slots / dropped / under-encoded / mixed; evaluation.md) "
        "| dropped: " in report
    )
    bound = metrics["trained"]["bound"]
    assert bound["elbo_per_frame"] == pytest.approx(elbo, rel=1e-5)
    assert bound["iw_bound_per_frame"] <= log_lik.item() + 0.1  # log p(x) = the likelihood here
    torch.testing.assert_close(
        torch.tensor(bound["kl_per_unit_per_frame"]), unit_kl, rtol=0, atol=1e-5
    )
    # predictions: the decoder's 0.5 at every pixel, after a context of 1 frame; copy_last
    # repeats frame 1. MSE per predicted step, from the frames themselves
    with open(tmp_path / "eval" / "prediction.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for model, guess in (("trained", 0.5), ("copy_last", frames[:, 0])):
        mse = [((frames[:, t] - guess) ** 2).mean().item() for t in (1, 2)]
        got = [float(r["mse"]) for r in rows if r["model"] == model]
        assert got == pytest.approx(mse, rel=1e-5), model
    missing = run_cli("evaluate", run, "--checkpoint", tmp_path / "none.pt")
    assert missing.exit_code == 2 and "Invalid value for '--checkpoint'" in missing.output


def test_compare_keeps_groups_whose_short_labels_coincide():
    from pyro_dvip.evaluation.compare import group_runs

    config = json.loads(make_config(**TINY).to_json())
    old = {k: v for k, v in config.items() if k != "kl_anneal"}  # a run from before the field
    old["free_bits"] = 0.0  # and with a retired option at its neutral value
    evaluations = {
        Path("a-s0"): {"config": {**config, "seed": 0}},
        Path("a-s1"): {"config": {**old, "seed": 1}},
        Path("b-s0"): {"config": {**config, "lr": 0.001}},  # lr is not in the short label
        Path("c-s0"): {"config": {**config, "kl_anneal": 20}},
    }
    groups = group_runs(evaluations)
    assert sorted(map(sorted, groups.values())) == [
        [Path("a-s0"), Path("a-s1")], [Path("b-s0")], [Path("c-s0")]
    ]  # fmt: skip
    labels = {tuple(dirs): label for label, dirs in groups.items()}
    assert labels[(Path("b-s0"),)].endswith("kl_anneal 0, lr 0.001")
    assert labels[(Path("c-s0"),)].endswith("kl_anneal 20, lr 0.0003")


def test_compare_labels_name_a_circle_arena_and_old_runs_group_as_the_box():
    from pyro_dvip.evaluation.compare import group_label, group_runs

    config = json.loads(make_config(**TINY).to_json())
    old = {k: v for k, v in config.items() if k != "arena"}  # a run from before the field
    circle = {**config, "arena": "circle"}
    assert "circle arena" in group_label(circle) and "arena" not in group_label(config)
    groups = group_runs({
        Path("box-s0"): {"config": {**config, "seed": 0}},
        Path("box-s1"): {"config": {**old, "seed": 1}},
        Path("circle-s0"): {"config": circle},
    })  # fmt: skip
    assert sorted(map(sorted, groups.values())) == [
        [Path("box-s0"), Path("box-s1")], [Path("circle-s0")]
    ]  # fmt: skip


def test_compare_labels_name_a_per_factor_decoder_and_old_runs_group_as_the_papers():
    from pyro_dvip.evaluation.compare import group_label, group_runs

    config = json.loads(make_config(**TINY).to_json())
    old = {k: v for k, v in config.items() if not k.startswith("decoder")}
    additive = {**config, "decoder": "additive"}
    assert "additive decoder" in group_label(additive)
    assert "decoder" not in group_label(config) and "encoder" not in group_label(config)
    residual = group_label({**additive, "encoder": "residual"})
    assert "additive decoder, residual encoder, 16px" in residual
    saved_with_weights = {**additive, "decoder_weights": "per-factor", "decoder_init": "black"}
    groups = group_runs({
        Path("paper-s0"): {"config": {**config, "seed": 0}},
        Path("paper-s1"): {"config": {**old, "seed": 1}},
        Path("additive-s0"): {"config": {**additive, "seed": 0}},
        Path("additive-s1"): {"config": {**saved_with_weights, "seed": 1}},
    })  # fmt: skip
    assert sorted(map(sorted, groups.values())) == [
        [Path("additive-s0"), Path("additive-s1")], [Path("paper-s0"), Path("paper-s1")]
    ]  # fmt: skip


def test_held_out_seed_measures_runs_of_different_seeds_on_the_same_sequences(runs, tmp_path):
    from pyro_dvip.evaluation.held_out import held_out_sequences

    config0 = make_config(**TINY, seed=0)
    config1 = make_config(**TINY, seed=1)
    theirs = held_out_sequences(config1, 8)
    assert torch.equal(held_out_sequences(config0, 8, run_seed=1).frames, theirs.frames)
    assert not torch.equal(held_out_sequences(config0, 8).frames, theirs.frames)

    result = run_cli("evaluate", runs["factored-s0"], *FAST, "--held-out-seed", 1,
                     "--out", tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test ELBO per frame: " in result.output
    assert "(test sequences of seed 1)" in result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["held_out"]["seed"] == 1 and metrics["options"]["held_out_seed"] == 1
    assert "seed 1" in metrics["held_out"]["source"]
    default = run_cli("evaluate", runs["factored-s0"], *FAST, "--out", tmp_path / "own")
    assert "(test sequences of seed 0)" in default.output
    elbo = {json.loads((d / "metrics.json").read_text())["trained"]["bound"]["elbo_per_frame"]
            for d in (tmp_path, tmp_path / "own")}  # fmt: skip
    assert len(elbo) == 2  # other sequences, another ELBO
