"""`dvip train --data`: training on real video files, end to end."""

import json
import logging

import torch
from click.testing import CliRunner
from conftest import TINY, tiny_args
from test_video import write_video

from dvip_cli.main import cli
from pyro_dvip import load, make_config, train
from pyro_dvip.checkpoint import list_checkpoints, load_checkpoint


def video_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):  # three clips: the clip split holds one out
        write_video(folder / f"clip{i}.mp4", seconds=4, fps=10)
    return folder


def test_train_on_a_folder_of_generated_videos(tmp_path):
    videos, out = video_folder(tmp_path), tmp_path / "run"
    args = tiny_args(steps=3, test_sequences=4)
    result = CliRunner().invoke(cli, ["train", *args, "--data", str(videos), "--fps", "4",
                                      "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                                      "--quiet", "--test-fraction", "0.3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["data"], config["fps"], config["split"]) == (str(videos), 4.0, "clip")
    state = load_checkpoint(list_checkpoints(out)[-1])
    assert state["step"] == 3 and state["data"]["sequences"] > 0
    assert load(out).image_size == 16


def test_one_short_video_trains_by_default_holding_out_its_end(tmp_path, caplog):
    video = write_video(tmp_path / "one.mp4", seconds=10, fps=10)  # 20 frames at 2 fps
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(cli, ["train", *tiny_args(steps=2, test_sequences=4),
                                          "--data", str(video), "--cache-dir",
                                          str(tmp_path / "cache"), "--out", str(out),
                                          "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["split"] == "time"
    # 3-frame sequences: training frames 0-13, a gap 14-16, test frames 17-19 (one sequence)
    assert "split by time (chosen by --split auto): 4 train sequences, 1 test sequences of 3" in (
        caplog.text
    )
    forced = CliRunner().invoke(cli, ["train", *tiny_args(steps=1), "--data", str(video),
                                      "--split", "clip", "--cache-dir", str(tmp_path / "cache"),
                                      "--out", str(tmp_path / "clip")])  # fmt: skip
    assert forced.exit_code == 2 and "'clip' needs at least 2 clips" in forced.output


def test_video_run_resumes_exactly(tmp_path):
    videos = video_folder(tmp_path)
    options = dict(steps=4, test_sequences=4, log_every=1, checkpoint_every=2)
    video = dict(data=str(videos), fps=4.0, cache_dir=str(tmp_path / "cache"), test_fraction=0.3)
    whole = train(make_config(**{**TINY, **options}, **video), tmp_path / "whole", progress=False)
    train(
        make_config(**{**TINY, **options, "steps": 2}, **video), tmp_path / "part", progress=False
    )
    resumed = train(make_config(**{**TINY, **options}, **video), tmp_path / "part", resume=True,
                    explicit={"steps"}, progress=False)  # fmt: skip
    assert [r["elbo"] for r in whole.metrics[2:]] == [r["elbo"] for r in resumed.metrics]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_bad_video_input_is_a_one_line_option_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["train", *tiny_args(steps=1), "--data", str(empty),
                                      "--out", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2
    assert "Invalid value for '--data'" in result.output and "Traceback" not in result.output
    grey = CliRunner().invoke(cli, ["train", *tiny_args(steps=1), "--data", str(empty),
                                    "--channels", "1", "--out", str(tmp_path / "run")])  # fmt: skip
    assert grey.exit_code == 2 and "video frames are RGB" in grey.output


def test_the_cpu_video_preset_trains_on_video_with_its_background_started_at_the_median(
    tmp_path,
):
    videos = video_folder(tmp_path)
    config = make_config(
        "cpu-video", data=str(videos), fps=4, cache_dir=str(tmp_path / "cache"), image_size=16,
        glimpse_size=8, width=4, batch_size=4, seq_len=3, steps=2, test_sequences=4,
        test_fraction=0.3, curriculum=1, checkpoint_every=2,
    )  # fmt: skip
    assert (config.channels, config.background, config.background_start) == (3, "static", "median")
    result = train(config, tmp_path / "run", progress=False)
    assert result.step == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["decoder"] == "glimpse" and saved["background_start"] == "median"
    background = torch.sigmoid(load(tmp_path / "run").decoder.background)
    assert background.std() > 0.01  # a picture of the clips, not the dark start's one colour
