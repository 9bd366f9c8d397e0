"""The label-free verdict (pyro_dvip/evaluation/scene.py) on constructed drawings whose answer
is known: two compact moving blobs are objects; one factor drawing both, two drawing the same
blob, tracks that turn back where they meet, a frame part nobody draws are not."""

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_dvip.evaluation.generations import save_track_gif, save_tracks, track_colour
from pyro_dvip.evaluation.posterior import FilteredLatents
from pyro_dvip.evaluation.scene import (
    NO_TRACKS,
    factor_scene,
    largest_region_share,
    meetings,
    scene_verdict,
    shared_share,
)

S, T, N = 24, 8, 40


def blob(centre, size=S, radius=1.5):
    """A square blob of side 2 radius + 1 (value 1) at (x, y), on a (size, size) map."""
    image = torch.zeros(size, size)
    x, y = (int(round(float(c))) for c in centre)
    r = int(radius)
    image[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = 1.0
    return image


class _Decoder:
    def __init__(self, num_parts):
        self.num_parts, self.appearance_dim = num_parts, 0


class Drawn:
    """A stand-in model whose latent is two objects' centres, z = (x0, y0, x1, y1), and whose
    factors draw what ``assign`` says: a list, per factor, of the objects it draws."""

    def __init__(self, assign, parts=2, value=1.0):
        self.assign, self.decoder, self.num_factors = assign, _Decoder(parts), parts
        self.value = value  # what it draws at an object's pixels (the frames: 1)

    def parts(self, z, appearance=None):
        layers = torch.zeros(len(z), self.decoder.num_parts, 1, S, S)
        for n, row in enumerate(z):
            for k, objects in enumerate(self.assign):
                for o in objects:
                    layers[n, k, 0] = torch.maximum(layers[n, k, 0], blob(row[2 * o : 2 * o + 2]))
        return {"layers": self.value * layers}

    def render(self, z, appearance=None):
        return self.parts(z)["layers"].amax(1)


def passing(seed=0):
    """(N, T, 4) centres of two objects on one row that pass through each other mid-sequence,
    and the frames (N, T, 1, S, S) that show both."""
    rng = np.random.default_rng(seed)
    z = np.zeros((N, T, 4))
    for n in range(N):
        y, speed = rng.uniform(8, 16), rng.uniform(2.0, 3.0)
        start = 12 - speed * (T - 1) / 2
        xs = start + speed * np.arange(T)
        z[n, :, 0], z[n, :, 1] = xs, y
        z[n, :, 2], z[n, :, 3] = xs[::-1], y + 0.5
    z = torch.tensor(z, dtype=torch.float32)
    both = Drawn([[0], [1]])
    frames = both.render(z.flatten(0, 1)).view(N, T, 1, S, S)
    return z, frames


def judge(model, z, frames, kl=(2.0, 2.0)):
    record, tracks = factor_scene(model, frames, FilteredLatents(z, z), list(kl))
    return record, tracks


def test_two_compact_moving_blobs_that_pass_each_other_are_objects():
    z, frames = passing()
    record, tracks = judge(Drawn([[0], [1]]), z, frames)
    assert record["verdict"] == "objects", record["reason"]
    assert record["used"] == [0, 1] and record["unexplained"] == pytest.approx(0.0, abs=1e-6)
    assert record["undrawn"] == pytest.approx(0.0, abs=1e-6)
    pair = record["pairs"][0]
    assert pair["meetings"] >= 10 and pair["passed"] == pair["meetings"]
    # each track is its blob's centre (the blob is symmetric, unclipped at these positions)
    assert tracks[..., 0, :] == pytest.approx(z[..., :2].round().numpy(), abs=1e-4)
    assert record["per_factor"][0]["one_region"] == pytest.approx(1.0)
    assert record["per_factor"][0]["step"] > 2.0


def test_a_factor_drawing_both_objects_is_mixed():
    z, frames = passing()
    record, _ = judge(Drawn([[0, 1], [1]]), z, frames)
    assert record["verdict"] == "mixed" and record["reason"].startswith("factor 0")
    assert record["per_factor"][0]["one_region"] == pytest.approx(0.5, abs=0.01)  # two blobs


def test_two_factors_drawing_the_same_object_share_its_pixels():
    z, _ = passing()
    one = Drawn([[0]], parts=1)
    frames = one.render(z.flatten(0, 1)).view(N, T, 1, S, S)  # only object 0 in the frames
    record, _ = judge(Drawn([[0], [0]]), z, frames)
    assert record["verdict"] == "shared"
    assert record["pairs"][0]["shared"] == pytest.approx(1.0)


def test_tracks_that_turn_back_where_they_meet_are_slots():
    z, frames = passing()
    left = torch.minimum(z[..., 0], z[..., 2])  # a left/right slot code of the same frames
    slots = z.clone()
    slots[..., 0], slots[..., 2] = left, z[..., 0] + z[..., 2] - left
    slots[..., 3] = slots[..., 1]  # (the rows differ by half a pixel: one row for both)
    record, _ = judge(Drawn([[0], [1]]), slots, frames)
    assert record["verdict"] == "slots"
    assert record["pairs"][0]["passed"] == 0 and record["pairs"][0]["meetings"] >= 10


@pytest.mark.parametrize("slot_sequences, verdict", [(12, "swaps"), (4, "objects")])
def test_tracks_that_turn_back_at_some_meetings_swap_objects(slot_sequences, verdict):
    z, frames = passing()  # they meet at the two frames either side of the crossing
    left = torch.minimum(z[..., 0], z[..., 2])
    handed = z.clone()  # the first sequences' tracks hand the objects over where they meet
    handed[:slot_sequences, :, 0] = left[:slot_sequences]
    handed[:slot_sequences, :, 2] = (z[..., 0] + z[..., 2] - left)[:slot_sequences]
    handed[:slot_sequences, :, 3] = handed[:slot_sequences, :, 1]
    record, _ = judge(Drawn([[0], [1]]), handed, frames)
    pair = record["pairs"][0]
    assert (pair["meetings"], pair["passed"]) == (2 * N, 2 * (N - slot_sequences))  # 0.7, 0.9
    assert record["verdict"] == verdict, record["reason"]


def test_an_object_no_factor_draws_is_not_drawn_and_the_unused_factor_is_named():
    z, frames = passing()
    record, _ = judge(Drawn([[0], [1]]), z, frames, kl=(2.0, 0.05))  # factor 1 under the KL
    assert record["used"] == [0]
    assert record["per_factor"][1]["used"] is False
    half = Drawn([[0], []])  # factor 1 draws nothing: unused by its share, whatever its KL
    record, _ = judge(half, z, frames)
    assert record["used"] == [0] and record["per_factor"][1]["share"] == 0.0
    assert record["verdict"] == "not drawn"
    assert record["unexplained"] == pytest.approx(0.5, abs=0.05)  # one of two equal blobs
    assert record["undrawn"] == pytest.approx(0.5, abs=0.05)  # where no factor draws


def test_objects_drawn_faintly_are_drawn_where_the_error_is():
    z, frames = passing()
    faint = Drawn([[0], [1]], value=0.4)  # each object at 0.4 where the frames show 1
    record, _ = judge(faint, z, frames)
    # (1 - 0.4)^2 of every moving pixel is not reproduced, all of it where a factor draws
    assert record["unexplained"] == pytest.approx(0.36, abs=0.03)
    assert record["undrawn"] == pytest.approx(0.0, abs=1e-6)
    assert record["verdict"] == "objects", record["reason"]


def test_a_still_drawing_is_not_a_moving_object():
    z, frames = passing()
    still = z.clone()
    still[..., 2:] = z[:, :1, 2:]  # object 1 held at its first position
    frames = Drawn([[0], [1]]).render(still.flatten(0, 1)).view(N, T, 1, S, S)
    record, _ = judge(Drawn([[0], [1]]), still, frames)
    assert record["verdict"] == "still" and "factor 1" in record["reason"]


def test_the_papers_decoder_says_no_track_can_be_drawn():
    z, frames = passing()
    paper = Drawn([[0, 1]], parts=1)
    record, tracks = judge(paper, z, frames, kl=(2.0, 0.01))
    assert tracks is None and record["tracks"] == NO_TRACKS
    assert record["used"] == [0]  # by the KL alone
    assert scene_verdict(record) == {"verdict": "n/a", "reason": NO_TRACKS}


def test_region_share_shared_share_and_meetings_on_small_cases():
    maps = torch.zeros(3, 9, 9)
    maps[0, 1:3, 1:3] = 1  # one region
    maps[1, 1:3, 1:3] = 1
    maps[1, 6:8, 6:8] = 3  # and a heavier one apart: 3/4 of the mass
    maps[2, 1:3, 1:3] = 1
    maps[2, 3, 3] = 1  # a diagonal neighbour joins the region
    share = largest_region_share(maps.numpy())
    assert share == pytest.approx([1.0, 0.75, 1.0])
    assert np.isnan(largest_region_share(np.zeros((1, 4, 4))))[0]
    pair = torch.stack([maps[0], maps[1]])[None]  # (1, 2, H, W)
    assert shared_share(pair)[0, 0].item() == pytest.approx(1.0)  # all of the lighter one
    # crossing tracks pass; tracks that touch and go back turn back; far ones do not meet
    t = np.arange(5.0)
    cross = np.stack([np.stack([t, 0 * t], -1), np.stack([4 - t, 0 * t], -1)], 1)[None]
    back = np.stack([np.stack([np.minimum(t, 4 - t), 0 * t], -1),
                     np.stack([np.maximum(4 - t, t), 0 * t], -1)], 1)[None]  # fmt: skip
    assert meetings(cross, 1.0) == (1, 1)  # (N, T, 2 tracks, 2)
    assert meetings(back, 1.0) == (1, 0)
    assert meetings(cross + [[0, 0], [0, 50]], 1.0) == (0, 0)


def test_the_track_figures_draw_each_factor_in_its_colour(tmp_path):
    z, frames = passing()
    _, tracks = judge(Drawn([[0], [1]]), z, frames)
    save_tracks(frames[:2], tracks[:2], [0, 1], tmp_path / "tracks.png")
    save_track_gif(frames[:2], tracks[:2], 1, tmp_path / "track_factor1.gif")
    with Image.open(tmp_path / "tracks.png") as image:
        pixels = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
        assert track_colour(0) in pixels and track_colour(1) in pixels
        assert image.width > image.height  # 8 steps across, 2 sequences down
    with Image.open(tmp_path / "track_factor1.gif") as gif:
        assert gif.n_frames == T
        gif.seek(T - 1)
        colours = {c for _, c in gif.convert("RGB").getcolors(1 << 16)}
        assert track_colour(1) in colours and track_colour(0) not in colours
