"""`dvip evaluate` and `dvip compare` on runs trained on real video, which has no ground truth."""

import json
import math
import shutil

import numpy as np
import pytest
from conftest import TINY, run_cli
from PIL import Image
from test_evaluation_cli import FAST
from test_video import write_video

from pyro_dvip import make_config, train
from pyro_dvip.evaluation import evaluate
from pyro_dvip.evaluation.alignment import NO_GROUND_TRUTH
from pyro_dvip.evaluation.generations import grid_size

EXAMPLES, SEQ_LEN, SIZE = 2, TINY["seq_len"], TINY["image_size"]
# 3 clips of 4 s at 4 fps: 16 frames each; the clip split holds one out: 5 test sequences
# of 3 frames, 10 (z_t, z_t+1) pairs, fewer than FAST's 40.
TEST_SEQUENCES, TEST_PAIRS = 5, 10


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A factored and an entangled video run, and a Moving MNIST run: 2 steps each."""
    root = tmp_path_factory.mktemp("video-runs")
    videos = root / "videos"
    for i in range(3):
        write_video(videos / f"clip{i}.mp4", seconds=4, fps=10)
    video = dict(data=str(videos), fps=4.0, cache_dir=str(root / "cache"), test_fraction=0.3)
    made = {}
    for name, options in {
        "video": video,
        "video-entangled": dict(video, entangled=True),
        "video-residual": dict(
            video,
            decoder="additive",
            encoder="residual",
        ),  # the cpu-objects recipe's networks
        "mnist": {},
    }.items():
        train(make_config(**TINY, steps=2, **options), root / name, progress=False)
        made[name] = root / name
    return made


@pytest.fixture(scope="module")
def evaluated(runs):
    return runs, run_cli("evaluate", runs["video"], *FAST)


def test_video_run_measures_everything_but_the_ground_truth_tests(evaluated):
    runs, result = evaluated
    assert result.exit_code == 0, result.output
    assert f"probes, intervention test: {NO_GROUND_TRUTH}" in result.output
    assert f"all {TEST_PAIRS} (z_t, z_t+1) pairs" in result.output
    metrics = json.loads(
        (runs["video"] / "eval" / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"),
    )
    assert metrics["sequences"] == TEST_SEQUENCES and metrics["held_out"]["data"] == "video"
    assert any("fewer than the 20 asked for" in n for n in metrics["held_out"]["notes"])
    for model in ("trained", "untrained"):
        m = metrics[model]
        assert math.isfinite(m["bound"]["elbo_per_frame"])
        assert math.isfinite(m["bound"]["iw_bound_per_frame"])
        assert m["bound"]["sequences"] == TEST_SEQUENCES
        assert m["mutual_info"]["pairs"] == TEST_PAIRS
        assert m["mutual_info"]["protocol"] == "factors"
        assert m["correlation"]["same_abs_corr"] is not None
        assert len(m["prediction"]["model"]["psnr"]) == SEQ_LEN - 1
        for measurement in ("alignment", "intervention", "identity"):
            assert m[measurement]["applicable"] is False
            assert m[measurement]["note"].startswith(NO_GROUND_TRUTH)


def test_video_report_marks_probes_and_intervention_not_applicable(evaluated):
    runs, _ = evaluated
    out = runs["video"] / "eval"
    report = (out / "report.md").read_text()
    assert f"| factor–object probes | {NO_GROUND_TRUTH} | {NO_GROUND_TRUTH} |" in report
    assert f"| intervention test | {NO_GROUND_TRUTH} | {NO_GROUND_TRUTH} |" in report
    assert "test split of the video" in report and "nan" not in report.lower()
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[1].endswith(",n/a,n/a,n/a,n/a,n/a,n/a")
    assert f"| identity across crossings | {NO_GROUND_TRUTH} | {NO_GROUND_TRUTH} |" in report
    for absent in ("probe_r2.png", "intervention.png", "identity.png", "probe_r2.csv",
                   "intervention.csv", "identity.csv"):  # fmt: skip
        assert not (out / absent).exists(), absent


def test_every_video_figure_and_generation_opens_at_its_size(evaluated):
    runs, _ = evaluated
    out = runs["video"] / "eval"
    for figure in ("correlation.png", "mutual_info.png", "prediction.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width > image.height
    stems = ["reconstructions", "prior_samples", "independent_factor0", "independent_factor1",
             "rollout_factor0", "rollout_factor1"]  # fmt: skip
    for model in ("trained", "untrained"):
        folder = out / "generations" / model
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(
            f"{s}.png" for s in ["truth", *stems]
        )
        for stem in ["truth", *stems]:
            with Image.open(folder / f"{stem}.png") as image:
                assert image.format == "PNG"
                assert image.size == grid_size(EXAMPLES, SEQ_LEN, SIZE)
        for stem in stems:
            with Image.open(folder / f"{stem}.gif") as gif:
                assert gif.format == "GIF" and gif.n_frames == SEQ_LEN
                assert gif.size == grid_size(1, EXAMPLES, SIZE)


def test_entangled_video_run_uses_the_partition_protocol(runs, tmp_path):
    metrics = evaluate(
        runs["video-entangled"], tmp_path, samples=40, particles=2, iw_samples=2, bootstrap=5,
        partitions=3, select_pairs=20, rollouts=2, examples=2,
    )  # fmt: skip
    mi = metrics["trained"]["mutual_info"]
    assert mi["protocol"] == "best of 3 random partitions" and mi["group_size"] == 3
    assert metrics["trained"]["alignment"]["applicable"] is False
    for k in range(2):  # one generation per MI group
        assert (tmp_path / "generations" / "trained" / f"independent_factor{k}.gif").exists()


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def test_a_video_run_with_per_factor_layers_gets_the_object_score_and_its_layers(runs):
    # Real video has no labels: the object score and each factor's layer are what a user has.
    result = run_cli("evaluate", runs["video-residual"], *FAST)
    assert result.exit_code == 0, result.output
    out = runs["video-residual"] / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("trained", "untrained"):
        score = metrics[model]["object_score"]
        assert 0 <= score["normalised"] <= 1 and score["groups"] == "factors"
        assert len(score["factor_share"]) == 2
        assert metrics[model]["alignment"]["applicable"] is False
    assert "object score" in result.output
    lines = result.output.splitlines()
    assert not any(line.startswith("  verdict:") for line in lines)  # no probes without labels
    label_free = metrics["trained"]["scene"]  # but the label-free verdict, and its pictures
    assert f"  label-free verdict: {label_free['verdict']} (" in result.output
    tracks = out / "generations" / "trained" / "tracks.png"
    assert tracks.exists() == bool(label_free["used"])
    folder = out / "generations" / "trained"
    for stem in ("layer_factor0", "layer_factor1"):
        with Image.open(folder / f"{stem}.png") as image:
            assert image.size == grid_size(EXAMPLES, SEQ_LEN, SIZE)
        with Image.open(folder / f"{stem}.gif") as gif:
            assert gif.n_frames == SEQ_LEN
    # additive: the mean is the sum of the layers, wherever the sum is not clipped at white
    layers = _pixels(folder / "layer_factor0.png") + _pixels(folder / "layer_factor1.png")
    reconstruction = _pixels(folder / "reconstructions.png")
    inside = layers < 250
    assert inside.mean() > 0.5
    assert np.abs(layers - reconstruction)[inside].max() <= 2  # 8-bit rounding of each layer
    # the black start draws little, so also check that no single layer is the reconstruction
    sum_error = np.abs(layers - reconstruction)[inside].mean()
    for stem in ("layer_factor0", "layer_factor1"):
        alone = np.abs(_pixels(folder / f"{stem}.png") - reconstruction)[inside].mean()
        assert alone > 2 * sum_error


def test_compare_shows_n_a_for_a_video_runs_alignment(evaluated, tmp_path):
    runs, _ = evaluated
    assert run_cli("evaluate", runs["mnist"], *FAST).exit_code == 0
    result = run_cli("compare", runs["video"], runs["mnist"], "--out", tmp_path)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "compare.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 2×3, 16px")]
    video = next(r for r in rows if "video" in r)
    mnist = next(r for r in rows if "speed 3.6" in r)
    assert video.endswith("| n/a | n/a | n/a | n/a |")
    assert "n/a" not in mnist
    assert f"`{runs['video']}`: {NO_GROUND_TRUTH}" in table


def test_video_run_whose_videos_are_gone_is_a_one_line_error(runs, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(runs["video"], moved, ignore=shutil.ignore_patterns("eval"))
    config = json.loads((moved / "config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    result = run_cli("evaluate", moved, *FAST)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot read the run's video test split" in result.output


def test_held_out_seed_is_refused_for_a_video_run(runs, tmp_path):
    result = run_cli("evaluate", runs["video"], *FAST, "--held-out-seed", 1, "--out", tmp_path)
    assert result.exit_code == 2 and "'--held-out-seed'" in result.output
    assert "applies to Moving MNIST runs only" in result.output
