"""What and where (--decoder glimpse --encoder glimpse): placement, compositing, the site of
the appearance, the guide's match, the bound, and the options."""

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from pyro_dvip.build import build_model
from pyro_dvip.config import make_config
from pyro_dvip.elbo_check import check_elbo
from pyro_dvip.glimpse import (
    GATE_GAIN,
    GlimpseDecoder,
    GlimpsePosterior,
    Seen,
    composite,
    composite_mean,
    crop,
    place,
)

H, G = 16, 8


def _position(column: float, row: float) -> torch.Tensor:
    """Frame coordinates of a glimpse centred on the corner before pixel (column, row)."""
    return torch.tensor([[2 * column / H - 1, 2 * row / H - 1]])


def _drawing(templates: torch.Tensor) -> GlimpseDecoder:
    """A decoder of K factors that draws the fixed glimpses ``templates`` (1,
    K, 2, G, G: colour and opacity) whatever the appearance."""
    K = templates.shape[1]
    decoder = GlimpseDecoder(1, H, K, 3, appearance_dim=4, glimpse_size=G, width=8)
    decoder.glimpses = lambda appearance: templates.expand(len(appearance), -1, -1, -1, -1)
    return decoder


def _guide_step(match: str, sharpness: float, x, prior, decoder, weight: float = 1.0):
    """The posterior loc (K d,) of one guide step at t >= 2 for frame x (1, 1, H, W)."""
    K = decoder.num_parts
    posterior = GlimpsePosterior(K, 3, 1, H, 4, G, width=8, match=match)
    with torch.no_grad():
        posterior.log_sharpness.fill_(math.log(sharpness))
        posterior.visibility_weight.fill_(weight)
    return posterior.step(None, x, prior, decoder, Seen(torch.zeros(1, K, 16), 1))[0][0]


def test_a_position_moves_the_drawing_by_whole_pixels():
    glimpse = torch.zeros(1, 1, G, G)
    glimpse[0, 0, 2, 5] = 1.0  # row 2, column 5 of the glimpse
    for column, row in [(4, 4), (9, 6), (12, 11)]:
        frame = place(glimpse, _position(column, row), H)[0, 0]
        # the glimpse covers columns column - G/2 ..; its pixel (2, 5) lands here, alone
        expected = torch.zeros(H, H)
        expected[row - G // 2 + 2, column - G // 2 + 5] = 1.0
        torch.testing.assert_close(frame, expected, atol=1e-6, rtol=0)


def test_crop_reads_back_what_place_drew():
    glimpse = torch.rand(2, 3, G, G)
    positions = torch.cat([_position(8, 8), _position(5, 10)])
    frames = place(glimpse, positions, H)
    torch.testing.assert_close(crop(frames, positions, G), glimpse, atol=1e-6, rtol=0)


def test_composite_puts_factor_one_in_front():
    colour = torch.tensor([0.2, 0.9]).view(1, 2, 1, 1, 1).expand(1, 2, 1, 2, 2)
    alpha = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 1, 2, 2)  # factor 1 on row 0
    alphas = torch.stack([alpha[:, 0], torch.ones(1, 1, 2, 2)], 1)  # factor 2 everywhere
    mean, shown, share = composite(colour * alphas, alphas, torch.full((1, 2, 2), 0.5))
    expected = torch.tensor([[0.2, 0.2], [0.9, 0.9]])  # factor 1 hides factor 2 on row 0
    torch.testing.assert_close(mean[0, 0], expected)
    torch.testing.assert_close(share.sum(1)[0, 0], torch.ones(2, 2))  # nothing left behind


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("with_background", [True, False])
def test_composite_mean_is_the_front_to_back_sum_pixel_by_pixel(K, with_background):
    """The decoder's mean, summed one factor at a time, against the definition written out per
    pixel: sum_k c_k prod_{j<k} (1 - a_j) + b prod_j (1 - a_j); and composite's mean alike."""
    torch.manual_seed(K)
    N, C, S = 2, 2, 3
    alphas = torch.rand(N, K, 1, S, S, dtype=torch.float64)
    layers = torch.rand(N, K, C, S, S, dtype=torch.float64) * alphas
    background = torch.rand(C, S, S, dtype=torch.float64) if with_background else None
    expected = torch.zeros(N, C, S, S, dtype=torch.float64)
    for n, c, i, j in itertools.product(range(N), range(C), range(S), range(S)):
        seen = 1.0
        for k in range(K):
            expected[n, c, i, j] += layers[n, k, c, i, j] * seen
            seen *= 1 - alphas[n, k, 0, i, j]
        if with_background:
            expected[n, c, i, j] += background[c, i, j] * seen
    torch.testing.assert_close(composite_mean(layers, alphas, background), expected)
    torch.testing.assert_close(composite(layers, alphas, background)[0], expected)


def test_glimpse_decoder_mean_and_its_gradients_match_the_composite_of_its_layers():
    torch.manual_seed(0)
    dec = GlimpseDecoder(2, H, 3, 4, 5, G, width=8, background="static")
    z, appearance = torch.randn(6, 12) * 0.5, torch.randn(6, 3, 5)
    mean = dec(z, appearance)
    grads = torch.autograd.grad(mean.pow(2).sum(), list(dec.parameters()))
    reference = composite(*dec.layers(z, appearance), torch.sigmoid(dec.background))[0]
    reference_grads = torch.autograd.grad(reference.pow(2).sum(), list(dec.parameters()))
    torch.testing.assert_close(mean, reference)
    for got, want in zip(grads, reference_grads):
        torch.testing.assert_close(got, want)


def _config(**overrides):
    values = dict(image_size=H, glimpse_size=G, appearance_dim=4, width=8, batch_size=4,
                  seq_len=3, test_sequences=4)  # fmt: skip
    return make_config("cpu-sprites", **{**values, **overrides})


def test_one_appearance_site_per_factor_inside_the_factor_plate_without_time():
    pyro.set_rng_seed(0)
    dvip = build_model(_config(factors=3))
    x = torch.rand(5, 3, 1, H, H)
    trace = pyro.poutine.trace(dvip.model).get_trace(x)
    sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
             and s["fn"].__class__.__name__ != "_Subsample"]  # fmt: skip
    assert sites == ["z_1", "z_2", "z_3", "a"]
    a = trace.nodes["a"]
    assert a["value"].shape == (5, 3, 4)
    assert {f.name: f.dim for f in a["cond_indep_stack"]} == {"videos": -2, "factors": -1}
    assert not any(f.name.startswith("_") for f in a["cond_indep_stack"])  # no markov/steps
    guide = pyro.poutine.trace(dvip.guide).get_trace(x)
    assert guide.nodes["a"]["fn"].batch_shape == (5, 3)


def test_the_decoder_draws_the_appearance_where_the_state_puts_it():
    pyro.set_rng_seed(0)
    decoder = GlimpseDecoder(1, H, 2, 3, appearance_dim=4, glimpse_size=G, width=8)
    a = torch.randn(1, 2, 4)
    z = torch.zeros(1, 2, 3)
    z[0, 0, :2] = _position(8, 8)[0]
    moved = z.clone()
    moved[0, 0, :2] = _position(11, 6)[0]  # factor 0 three columns right, two rows up
    layers = decoder.parts(z.flatten(1), a)["layers"][0, 0, 0]
    layers_moved = decoder.parts(moved.flatten(1), a)["layers"][0, 0, 0]
    assert layers.abs().sum() > 0
    # moved[r, c] = before[r + 2, c - 3]; both glimpses lie inside the frame
    torch.testing.assert_close(layers_moved[: H - 2, 3:], layers[2:, : H - 3], atol=1e-6, rtol=0)
    assert layers_moved[H - 2 :].abs().max() == 0 and layers_moved[:, :3].abs().max() == 0
    # the state moves factor 0's drawing; its velocity units change nothing
    z[0, 0, 2] = 5.0
    torch.testing.assert_close(decoder.parts(z.flatten(1), a)["layers"][0, 0, 0], layers)


@pytest.mark.parametrize("match", ["ncc", "residual", "visible"])
def test_the_guide_finds_a_factor_by_what_it_draws(match):
    """A decoder that draws a fixed template for factor 0 and another for factor 1; the frame
    shows template 1 at one place and template 0 at another; the prior is broad. The guide's
    position for each factor is where its own template is, with every match (the templates
    are opaque and the two bars equally bright)."""
    torch.manual_seed(0)
    decoder = GlimpseDecoder(1, H, 2, 3, appearance_dim=4, glimpse_size=G, width=8)
    templates = torch.zeros(1, 2, 2, G, G)
    templates[0, 0, :, 1:7, 3:5] = 1.0  # a vertical bar
    templates[0, 1, :, 3:5, 1:7] = 1.0  # a horizontal bar
    decoder.glimpses = lambda appearance: templates.expand(len(appearance), -1, -1, -1, -1)
    posterior = GlimpsePosterior(2, 3, 1, H, 4, G, width=8, match=match)
    with torch.no_grad():
        posterior.log_sharpness.fill_(math.log(300.0))
    where = {0: (11, 5), 1: (5, 11)}
    x = sum(place(templates[:, k, :1] * templates[:, k, 1:], _position(*where[k]), H)
            for k in (0, 1))  # fmt: skip
    prior = (torch.zeros(1, 6), torch.full((1, 6), math.log(4.0)))  # broad, centred
    seen = Seen(torch.zeros(1, 2, 16), 1)
    loc, _ = posterior.step(None, x, prior, decoder, seen)
    for k in (0, 1):
        found = loc[0, 3 * k : 3 * k + 2]
        torch.testing.assert_close(found, _position(*where[k])[0], atol=0.5 * 2 / H, rtol=0)


def test_with_the_residual_match_what_is_left_faint_leaves_the_factor_to_its_prior():
    """Factor 0 draws an opaque bar of brightness 1 where the frame shows one (its prior
    predicts that place narrowly), so nothing of it is left for factor 1; the frame also shows
    the same bar at brightness 0.05 elsewhere. Factor 1 draws that bar too and its prior is
    broad and centred. The plain match, normalised by the residual's own energy, places factor
    1 on the faint bar; with --glimpse-match residual the faint window counts as half as
    energetic as the bright one (its match 0.05 / sqrt(0.5) of full, about 0.07) and factor 1
    stays near the prior's centre."""
    templates = torch.zeros(1, 2, 2, G, G)
    templates[0, :, :, 1:7, 3:5] = 1.0  # a vertical bar for both factors, opaque
    decoder = _drawing(templates)
    bar = templates[:, 0, :1]
    bright, faint = _position(5, 11), _position(13, 3)
    x = place(bar, bright, H) + 0.05 * place(bar, faint, H)
    prior_loc, prior_logvar = torch.zeros(1, 6), torch.full((1, 6), math.log(4.0))
    prior_loc[0, :2], prior_logvar[0, :3] = bright[0], math.log(1e-6)  # factor 0: at the bar
    found = {}
    for match in ("ncc", "residual"):
        loc = _guide_step(match, 20.0, x, (prior_loc, prior_logvar), decoder)
        torch.testing.assert_close(loc[:2], bright[0], atol=1e-3, rtol=0)  # factor 0
        found[match] = loc[3:5]
    torch.testing.assert_close(found["ncc"], faint[0], atol=0.5 * 2 / H, rtol=0)
    assert found["residual"].abs().max() < 2 * 2 / H  # within two pixels of the centre


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_with_the_visible_match_a_faint_drawing_beside_a_clear_one_is_left_to_its_prior(weight):
    """Factor 0 draws a bar at peak 1 where the frame shows it (its prior holds it there
    narrowly); factor 1 draws the same bar at peak 0.01, 1% as visible, its prior broad and
    centred; the frame shows the bar a second time elsewhere. The residual match pulls factor 1
    onto it; the visible one, its visibility weighing fully (exponent 1), leaves factor 1 near
    the centre, and with the exponent at 0 (--glimpse-visible-from, before its step) it is the
    residual match."""
    templates = torch.zeros(1, 2, 2, G, G)
    templates[0, :, 0, 1:7, 3:5] = 1.0  # a vertical bar, in colour 1 for both factors
    templates[0, 0, 1, 1:7, 3:5] = 1.0  # factor 0 draws it opaque
    templates[0, 1, 1, 1:7, 3:5] = 0.01  # factor 1 at opacity 0.01
    decoder = _drawing(templates)
    held, other = _position(5, 11), _position(13, 3)
    x = place(templates[:, 0, :1], held, H) + place(templates[:, 0, :1], other, H)
    prior_loc, prior_logvar = torch.zeros(1, 6), torch.full((1, 6), math.log(4.0))
    prior_loc[0, :2], prior_logvar[0, :3] = held[0], math.log(1e-6)  # factor 0: held
    found = {}
    for match in ("residual", "visible"):
        loc = _guide_step(match, 20.0, x, (prior_loc, prior_logvar), decoder, weight)
        torch.testing.assert_close(loc[:2], held[0], atol=1e-3, rtol=0)  # factor 0
        found[match] = loc[3:5]
    torch.testing.assert_close(found["residual"], other[0], atol=0.5 * 2 / H, rtol=0)
    if weight == 0.0:
        torch.testing.assert_close(found["visible"], found["residual"])
    else:
        assert found["visible"].abs().max() < 2 * 2 / H  # within two pixels of the centre


def test_the_visibility_weighs_in_on_its_schedule_and_only_with_the_visible_match():
    from pyro_dvip.train import visibility_weight_at

    config = _config(glimpse_match="visible", glimpse_visible_from=1000)
    weights = [visibility_weight_at(s, config) for s in (1, 1000, 1500, 2000, 3000)]
    assert weights == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert visibility_weight_at(1, _config(glimpse_match="visible")) == 1.0  # no schedule
    with pytest.raises(ValueError, match="glimpse_visible_from: applies to --glimpse-match"):
        _config(glimpse_visible_from=1000)


def test_the_matches_beyond_the_recipe_are_options_of_the_glimpse_encoder_only():
    assert build_model(_config(glimpse_match="visible")).posterior.match == "visible"
    assert build_model(_config(glimpse_match="residual")).posterior.match == "residual"
    assert build_model(_config()).posterior.match == "ncc"
    for match in ("residual", "visible"):
        with pytest.raises(ValueError, match="glimpse_match: applies to --decoder glimpse only"):
            make_config("cpu-objects", glimpse_match=match)


@pytest.mark.parametrize("entangled", [False, True])
def test_check_elbo_passes_with_the_appearance(entangled):
    pyro.set_rng_seed(0)
    dvip = build_model(_config(entangled=entangled))
    x = torch.rand(3, 3, 1, H, H)
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()
    assert list(result.steps.index) == [1, 2, 3, "a"]
    assert result.steps.loc["a", "kl_trace"] > 0  # the appearance's KL is a term of its own
    assert not check_elbo(dvip, x, num_particles=10, derivation="drop-normaliser").passed


def test_a_closed_gate_draws_nothing_and_its_appearance_costs_no_kl():
    """--factor-gates: factor k's opacity is the generator's times sigmoid(g_k) (checked
    against the generator itself), and the guide's q(a^k) is N(g loc, scale^g): with factor 1's
    gate shut, it draws nothing and its appearance's KL from the prior N(0, I) is 0, while
    factor 0's is not."""
    pyro.set_rng_seed(0)
    dvip = build_model(_config(factors=2, factor_gates=True))
    decoder = dvip.decoder
    torch.testing.assert_close(decoder.gates(), torch.full((2,), 0.95))
    with torch.no_grad():
        decoder.gate_scores.copy_(torch.tensor([0.05, -4.0]))  # logits 0.5 and -40
    a = torch.randn(3, 2, 4)
    drawn = decoder.generator(a.reshape(6, 4)).view(3, 2, 2, G, G)  # colour, opacity
    glimpses = decoder.glimpses(a)
    torch.testing.assert_close(glimpses[:, :, 0], drawn[:, :, 0])
    torch.testing.assert_close(glimpses[:, 0, 1], drawn[:, 0, 1] * torch.sigmoid(torch.tensor(0.5)))
    assert glimpses[:, 1, 1].abs().max() < 1e-15
    z = torch.zeros(3, 2 * dvip.factor_dim)
    assert dvip.parts(z, a)["layers"][:, 1].abs().max() < 1e-12  # what factor 1 draws
    x = torch.rand(3, 3, 1, H, H)
    guide = pyro.poutine.trace(dvip.guide).get_trace(x)
    q = guide.nodes["a"]["fn"].base_dist
    torch.testing.assert_close(q.loc[:, 1], torch.zeros(3, 4), atol=1e-15, rtol=0)
    torch.testing.assert_close(q.scale[:, 1], torch.ones(3, 4), atol=1e-7, rtol=0)
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert kl[:, 1].abs().max() < 1e-6 and kl[:, 0].min() > 1e-3
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_gates_are_an_option_of_the_glimpse_decoder_only(tmp_path):
    assert build_model(_config()).decoder.gates() is None
    with pytest.raises(ValueError, match="factor_gates: applies to --decoder glimpse only"):
        make_config("cpu-objects", factor_gates=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--decoder", "glimpse"], "--decoder glimpse and --encoder glimpse go together"),
        (["--preset", "cpu-sprites", "--encoder", "paper"], "go together"),
        (["--preset", "cpu-sprites", "--glimpse-size", "10"], "must be a multiple of 4"),
        (["--preset", "cpu-sprites", "--factor-dim", "1"], "--decoder glimpse needs >= 2"),
        (["--appearance-dim", "8"], "applies to --decoder glimpse only"),
        (["--guide-previous"], "'--guide-previous': applies to --decoder glimpse only"),
        (["--glimpse-window", "2"], "'--glimpse-window': applies to --decoder glimpse only"),
        (["--preset", "cpu-sprites", "--glimpse-window", "0"], "must be >= 1, got 0"),
    ],
)
def test_a_bad_combination_is_a_one_line_error(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", *args, "--steps", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and message in error[0], result.output
    assert not (tmp_path / "r").exists()


def _fixed_templates(decoder, templates):
    """Make ``decoder`` draw templates[0] for an appearance whose first unit is > 0, else
    templates[1] (templates (2, C + 1, G, G))."""

    def glimpses(appearance):
        pick = (appearance[..., 0] <= 0).long()  # (N, K)
        return templates[pick]

    decoder.glimpses = glimpses


def test_the_appearance_swap_exchanges_what_two_factors_draw():
    from pyro_dvip.evaluation.appearance import appearance_swap
    from pyro_dvip.evaluation.posterior import FilteredLatents

    pyro.set_rng_seed(0)
    dvip = build_model(_config())
    templates = torch.zeros(2, 2, G, G)
    templates[0, :, 1:7, 3:5] = 1.0  # vertical bar, 12 pixels
    templates[1, :, 3:5, 1:7] = 1.0  # horizontal bar, 12 pixels; 4 shared with the vertical
    _fixed_templates(dvip.decoder, templates)
    means = torch.zeros(3, 2, 2, 4)  # 3 sequences, 2 steps, factors far apart
    means[..., 0, :2] = _position(4, 4)[0]
    means[..., 1, :2] = _position(12, 12)[0]
    distinct = torch.tensor([1.0, -1.0]).view(1, 2, 1).expand(3, 2, 4)
    result = appearance_swap(dvip, FilteredLatents(means, means, distinct))
    # what factor j draws after the exchange: the other bar in its place: (12 + 12 - 2 * 4) / 12
    assert result["min_change"] == pytest.approx(16 / 12)
    assert result["change"][0][0] == 0.0
    same = torch.ones(3, 2, 4)  # a collapsed appearance: both factors draw the same bar
    assert appearance_swap(dvip, FilteredLatents(means, means, same))["mean_change"] == 0.0
    paper = build_model(make_config(image_size=H, width=8))
    assert appearance_swap(paper, FilteredLatents(means, means))["applicable"] is False


@pytest.mark.parametrize("entangled, gates", [(False, False), (True, False), (False, True)])
def test_an_evaluated_glimpse_run_has_tracks_and_the_appearance_swap(tmp_path, entangled, gates):
    import json

    from pyro_dvip.evaluation import evaluate
    from pyro_dvip.train import train

    run = tmp_path / "sprites"
    config = _config(steps=2, curriculum=1, checkpoint_every=2, entangled=entangled,
                     factor_gates=gates)  # fmt: skip
    train(config, run, progress=False)
    evaluate(run, samples=40, particles=2, iw_samples=2, bootstrap=5, intervention_pairs=8,
             rollouts=2, examples=2)  # fmt: skip
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    for model in ("trained", "untrained"):
        m = saved[model]
        assert m["tracking"]["tracks"] == "centre of mass of what each factor draws"
        assert m["tracking"]["factors"] == [0, 1]  # the decoder's parts, also when entangled
        assert 0 <= m["appearance_swap"]["min_change"] <= m["appearance_swap"]["mean_change"]
        assert "forward-mode" in m["object_score"]["note"]
        # one channel: each sequence's digits put in the order of the factors tracking them
        assert m["alignment"]["objects_ordered"].startswith("per sequence")
        scene = m["scene"]  # label-free: the decoder's parts, used by KL (or share) alone
        assert scene["factors"] == 2 and len(scene["per_factor"]) == 2
        visible = [f["visible_share"] for f in scene["per_factor"]]
        assert min(visible) >= 0 and sum(visible) == pytest.approx(1.0)
        assert scene["verdict"] in {"objects", "not drawn", "mixed", "shared", "still", "slots",
                                    "swaps", "no factor used"}  # fmt: skip
        expected = [None, None]  # each factor's gate: as the checkpoint holds it, or at start
        if gates and model == "trained":
            last = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
            scores = torch.load(last, weights_only=False)["model"]["decoder.gate_scores"]
            expected = torch.sigmoid(GATE_GAIN * scores).tolist()
        elif gates:
            expected = [0.95, 0.95]
        assert [f["gate"] for f in scene["per_factor"]] == pytest.approx(expected)
        folder = run / "eval" / "generations" / model
        assert (folder / "tracks.png").exists() == bool(scene["used"])
        gifs = sorted(p.name for p in folder.glob("track_factor*.gif"))
        assert gifs == [f"track_factor{k}.gif" for k in scene["used"]]
    report = (run / "eval" / "report.md").read_text()
    assert "appearance swap" in report
    assert "| label-free verdict (objects / not drawn" in report
    assert "| label-free: share of the visible change per factor (for reading) |" in report
    assert ("| label-free: gate per factor (--factor-gates) |" in report) == gates


@pytest.mark.parametrize("background", [False, True])
def test_a_drawing_shows_only_where_its_colour_differs_from_the_background(background):
    """Three factors: factor 0 a white bar, opaque, at (5, 11); factor 1 a bar of the
    background's colour at opacity 0.5 at (13, 3); factor 2 a white bar exactly behind factor
    0's. Over black (or a static background of 0.25): factor 0 shows its 12 pixels at 1 (0.75)
    from what it covers; factor 1 (the background's colour) and factor 2 (hidden) nothing."""
    decoder = GlimpseDecoder(1, H, 3, 3, appearance_dim=4, glimpse_size=G, width=8,
                             background="static" if background else "none")  # fmt: skip
    level = 0.25 if background else 0.0
    if background:
        with torch.no_grad():
            decoder.background.fill_(math.log(level / (1 - level)))
    templates = torch.zeros(1, 3, 2, G, G)
    templates[0, :, 1, 1:7, 3:5] = 1.0  # opaque bars
    templates[0, 1, 1, 1:7, 3:5] = 0.5  # factor 1 at opacity 0.5
    templates[0, [0, 2], 0, 1:7, 3:5] = 1.0  # factors 0 and 2 white
    templates[0, 1, 0, 1:7, 3:5] = level  # factor 1 the background's colour
    decoder.glimpses = lambda appearance: templates.expand(len(appearance), -1, -1, -1, -1)
    z = torch.zeros(1, 3, 3)
    z[0, 0, :2] = z[0, 2, :2] = _position(5, 11)[0]
    z[0, 1, :2] = _position(13, 3)[0]
    changes = decoder.visible_changes(z.flatten(1), torch.zeros(1, 3, 4)).sum((0, 2, 3))
    torch.testing.assert_close(changes, torch.tensor([12 * (1 - level), 0.0, 0.0]))


def test_a_transition_of_fixed_noise_predicts_with_that_noise_and_the_same_weights():
    from pyro_dvip.priors import FactoredMLPTransition

    torch.manual_seed(0)
    fixed = build_model(_config(transition_sd=0.05))
    torch.manual_seed(0)
    learnt = build_model(_config())
    for a, b in zip(fixed.state_dict().values(), learnt.state_dict().values()):
        torch.testing.assert_close(a, b)  # the same initial weights
    z = torch.randn(6, 2, 4)
    p = fixed.transition(z)
    torch.testing.assert_close(p.base_dist.scale, torch.full((6, 2, 4), 0.05))
    torch.testing.assert_close(p.base_dist.loc, learnt.transition(z).base_dist.loc)
    with pytest.raises(ValueError, match="fixed_sd: must be > 0"):
        FactoredMLPTransition(2, 4, fixed_sd=0.0)
    with pytest.raises(ValueError, match="transition_sd: applies to the default transition"):
        make_config(transition_sd=0.1, transition="m:C")


def test_a_narrowing_transition_is_learnt_then_capped_on_its_schedule(tmp_path):
    """--transition-sd 0.05 --transition-sd-from 4: no cap to step 4, then 0.05 ** ((s - 4) /
    4): 0.05 ** 0.5 at step 6 and 0.05 from step 8; the capped prior's sd is its learnt one
    where that is narrower. A run of 9 steps saves the cap with the model."""
    from pyro_dvip.build import load
    from pyro_dvip.priors import FactoredMLPTransition
    from pyro_dvip.train import train, transition_cap_at

    config = _config(transition_sd=0.05, transition_sd_from=4, steps=9, checkpoint_every=9,
                     log_every=9, curriculum=0, kl_anneal=0)  # fmt: skip
    caps = [transition_cap_at(s, config) for s in (1, 4, 5, 6, 8, 20)]
    assert caps[:2] == [math.inf, math.inf]
    np.testing.assert_allclose(caps[2:], [0.05**0.25, 0.05**0.5, 0.05, 0.05])
    assert transition_cap_at(20, _config()) == math.inf  # no schedule
    torch.manual_seed(0)
    capped = FactoredMLPTransition(2, 4, capped=True)
    torch.manual_seed(0)
    learnt = FactoredMLPTransition(2, 4)
    z = torch.randn(6, 2, 4)
    free = learnt(z).base_dist.scale.detach()
    torch.testing.assert_close(capped(z).base_dist.scale, free)  # no cap yet
    cap = float(free.median())  # half the units above it, half below
    capped.sd_cap.fill_(cap)
    torch.testing.assert_close(capped(z).base_dist.scale, free.clamp(max=cap))
    train(config, tmp_path / "run", progress=False)
    assert float(load(tmp_path / "run").transition.sd_cap) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="transition_sd_from: needs --transition-sd"):
        _config(transition_sd_from=4)
    with pytest.raises(ValueError, match="capped: a held sd"):
        FactoredMLPTransition(2, 4, fixed_sd=0.1, capped=True)


def test_the_match_is_the_normalised_cross_correlation_of_each_residual_with_its_template():
    import torch.nn.functional as F

    torch.manual_seed(0)
    posterior = GlimpsePosterior(2, 3, 3, H, 4, G, width=8).double()
    residual = torch.rand(4, 3, H, H, dtype=torch.float64)
    template = torch.rand(4, 3, G, G, dtype=torch.float64)
    padded = F.pad(residual, (G // 2,) * 4)
    for b in range(4):  # one sample at a time, by the textbook formula
        dot = F.conv2d(padded[b : b + 1], template[b : b + 1])[0, 0]
        energy = F.conv2d(padded[b : b + 1].pow(2), torch.ones_like(template[b : b + 1]))[0, 0]
        expected = dot / (energy.sqrt() * template[b].norm() + 1e-6)
        torch.testing.assert_close(posterior._ncc(residual, template)[b], expected)


def test_what_is_explained_includes_the_static_background_where_no_factor_draws():
    decoder = GlimpseDecoder(1, H, 2, 3, appearance_dim=4, glimpse_size=G, width=8,
                             background="static")  # fmt: skip
    with torch.no_grad():
        decoder.background.fill_(0.0)  # sigmoid: 0.5 everywhere
    layers = torch.zeros(1, 1, 1, H, H)
    alphas = torch.zeros(1, 1, 1, H, H)
    layers[..., :4, :4], alphas[..., :4, :4] = 0.9, 1.0  # an opaque factor in the corner
    drawn, scope = decoder.explained(layers, alphas)
    expected = torch.full((H, H), 0.5)
    expected[:4, :4] = 0.9
    torch.testing.assert_close(drawn[0, 0], expected)
    assert scope[0, 0, :4, :4].max() == 0 and scope[0, 0, 4:].min() == 1
    nothing, _ = decoder.explained(layers[:, :0], alphas[:, :0])  # no factor yet: background
    torch.testing.assert_close(nothing[0, 0], torch.full((H, H), 0.5))


def test_the_curriculum_trains_its_first_steps_on_two_frames():
    from pyro_dvip.train import seq_len_at

    config = _config(seq_len=8, curriculum=3)
    assert [seq_len_at(step, config) for step in range(1, 6)] == [2, 2, 2, 8, 8]
    assert seq_len_at(1, _config(seq_len=1, curriculum=3)) == 1  # never longer than --seq-len
    assert seq_len_at(1, _config(seq_len=8, curriculum=0)) == 8
    with pytest.raises(ValueError, match="curriculum: must be >= 0, got -1"):
        _config(curriculum=-1)


def test_a_curriculum_run_trains_and_logs_two_frames_then_the_whole_sequence(tmp_path):
    import csv

    from pyro_dvip.train import train

    run = tmp_path / "curriculum"
    config = _config(steps=4, curriculum=2, log_every=1, checkpoint_every=4, seq_len=3)
    train(config, run, progress=False)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    seconds = [0.0] + [float(r["seconds"]) for r in rows]
    # frames per second times the step's seconds over the batch: the frames of its sequences
    frames = [float(r["frames_per_s"]) * (seconds[i + 1] - seconds[i]) / config.batch_size
              for i, r in enumerate(rows)]  # fmt: skip
    assert [round(f) for f in frames] == [2, 2, 3, 3]
    for r in rows:
        assert float(r["elbo"]) == pytest.approx(float(r["recon"]) - float(r["kl"]), rel=1e-5)


@pytest.mark.parametrize("decoder", ["glimpse", "additive", "composite"])
def test_the_background_starts_at_the_median_of_frames_from_a_stream_of_its_own(decoder):
    from pyro_dvip.build import BACKGROUND_SEED_OFFSET, BACKGROUND_SEQUENCES, make_data
    from pyro_dvip.build import start_background as start

    options = dict(scene="discs", channels=3, image_size=16, width=4, seq_len=3, factors=2,
                   background="static", background_start="median", test_sequences=4)  # fmt: skip
    if decoder == "glimpse":
        config = _config(**{**options, "image_size": 16, "glimpse_size": 8})
    else:
        config = make_config(decoder=decoder, factor_dim=4, **options)
    dvip = build_model(config)
    before = torch.get_rng_state()
    start(dvip, config)
    assert torch.equal(torch.get_rng_state(), before)  # the run's random state is untouched
    stream, _ = make_data(config, torch.device("cpu"), config.seed + BACKGROUND_SEED_OFFSET)
    frames = stream.sample(BACKGROUND_SEQUENCES).frames.flatten(0, 1)  # (B T, C, H, W)
    median = np.median(frames.numpy(), axis=0)  # numpy's median: the middle pair's mean
    colour = torch.sigmoid(dvip.decoder.background[:3]).detach().numpy()
    # torch's median takes the lower of the middle pair: within one grey level of numpy's
    assert colour == pytest.approx(median.clip(0.01, 0.99), abs=1 / 255 + 1e-6)
    assert colour.std() > 0.01  # the texture, not one colour
    if decoder == "composite":  # its mask logit stays where it starts
        mask = dvip.decoder.background[3:]
        assert torch.equal(mask, torch.zeros_like(mask))


def test_a_background_start_without_a_static_background_is_an_error():
    with pytest.raises(ValueError, match="background_start: applies to --background static"):
        make_config(decoder="additive", background_start="median")


@pytest.mark.parametrize("entangled", [False, True])
def test_with_guide_previous_the_other_units_read_the_factors_own_last_state(entangled):
    """--guide-previous: the other units' MLP reads, after what it read before, the factor's
    own sampled state at t - 1 (zeros at t = 1); the guide's trace gives those states, so the
    inputs are checked against the trace's z_{t-1}, factor by factor. check-elbo passes."""
    pyro.set_rng_seed(0)
    dvip = build_model(_config(guide_previous=True, entangled=entangled))
    K, d = 2, dvip.decoder.part_dim
    read = []
    dvip.posterior.rest[0].register_forward_pre_hook(lambda _, args: read.append(args[0]))
    x = torch.rand(3, 3, 1, H, H)
    trace = pyro.poutine.trace(dvip.guide).get_trace(x)
    assert len(read) == 3 * K  # one call per step and factor
    for t in range(1, 4):
        for k in range(K):
            last = read[(t - 1) * K + k][:, -d:]
            if t == 1:
                expected = torch.zeros(3, d)
            else:
                expected = trace.nodes[f"z_{t - 1}"]["value"].reshape(3, K, d)[:, k]
            torch.testing.assert_close(last, expected)
    result = check_elbo(dvip, x, num_particles=10)
    assert result.passed, result.format()


def test_guide_previous_is_an_option_of_the_glimpse_guide_only():
    plain = build_model(_config()).posterior.rest[0].in_features
    assert build_model(_config(guide_previous=True)).posterior.rest[0].in_features == plain + 4
    with pytest.raises(ValueError, match="guide_previous: applies to --decoder glimpse only"):
        make_config("cpu-objects", guide_previous=True)


def test_near_best_keeps_the_candidates_around_the_best_one():
    """Two peaks 8 steps apart, scores 10 and 9.5 over -50 elsewhere: the soft-argmax of all
    candidates lies between them (weights e^0.5 : 1), of those within 2 steps of the best at the
    best peak itself; a window wide enough for both is the plain soft-argmax."""
    from pyro_dvip.glimpse import near_best, soft_argmax

    coords = torch.arange(12.0)
    scores = torch.full((1, 12, 12), -50.0)
    scores[0, 2, 3], scores[0, 2, 11] = 10.0, 9.5  # row 2; columns 3 and 11
    share = 1 / (1 + math.exp(-0.5))  # the best peak's weight
    mean, _ = soft_argmax(scores, coords)
    torch.testing.assert_close(mean[0], torch.tensor([3 * share + 11 * (1 - share), 2.0]))
    mean, spread = soft_argmax(near_best(scores, 2), coords)
    torch.testing.assert_close(mean[0], torch.tensor([3.0, 2.0]))
    assert spread.max() < 1e-12
    torch.testing.assert_close(soft_argmax(near_best(scores, 8), coords)[0],
                               soft_argmax(scores, coords)[0])  # fmt: skip


def test_with_a_window_a_factor_between_two_equal_matches_takes_the_predicted_one():
    """The frame shows one bar twice, 4 px apart, and the factor draws that bar; its prior,
    broad (sd 3 px), predicts 1 px past the second bar. The whole-frame soft-argmax lands
    between the bars (the first's weight is not negligible); with --glimpse-window 1 the
    factor is on the second bar, within a quarter pixel."""
    templates = torch.zeros(1, 1, 2, G, G)
    templates[0, 0, :, 1:7, 3:5] = 1.0  # a vertical bar, opaque
    decoder = _drawing(templates)
    bar = templates[:, 0, :1]
    first, second = _position(6, 8), _position(10, 8)
    x = place(bar, first, H) + place(bar, second, H)
    prior_loc, prior_logvar = torch.zeros(1, 3), torch.full((1, 3), math.log((3 * 2 / H) ** 2))
    prior_loc[0, :2] = _position(11, 8)[0]
    found = {}
    for window in (None, 1):
        posterior = GlimpsePosterior(1, 3, 1, H, 4, G, width=8, window=window)
        with torch.no_grad():
            posterior.log_sharpness.fill_(math.log(5.0))
        seen = Seen(torch.zeros(1, 1, 16), 1)
        found[window] = posterior.step(None, x, (prior_loc, prior_logvar), decoder, seen)[0][0]
    torch.testing.assert_close(found[1][:2], second[0], atol=0.25 * 2 / H, rtol=0)
    assert second[0, 0] - found[None][0] > 0.25 * 2 / H  # pulled towards the first bar
    with pytest.raises(ValueError, match="glimpse_window: applies to --decoder glimpse only"):
        make_config("cpu-objects", glimpse_window=2)
    pyro.set_rng_seed(0)
    dvip = build_model(_config(glimpse_window=2))
    assert dvip.posterior.window == 2
    result = check_elbo(dvip, torch.rand(3, 3, 1, H, H), num_particles=10)
    assert result.passed, result.format()


def test_a_scheduled_window_reads_the_whole_frame_then_narrows(monkeypatch, tmp_path):
    """--glimpse-window 2 --glimpse-window-from 4 (frames of H pixels): the radius is H up to
    step 4, H - (H - 2) / 4 at step 5, and 2 from step 8 on. A guide whose radius is H finds
    what the whole-frame guide finds; the training loop reads the radius of each step."""
    from pyro_dvip import glimpse
    from pyro_dvip.train import train, window_radius_at

    config = _config(glimpse_window=2, glimpse_window_from=4, steps=5, checkpoint_every=5,
                     log_every=5, curriculum=0, kl_anneal=0)  # fmt: skip
    radii = [window_radius_at(s, config) for s in (1, 4, 5, 6, 8, 20)]
    np.testing.assert_allclose(radii, [H, H, H - (H - 2) / 4, H - (H - 2) / 2, 2, 2])
    assert window_radius_at(1, _config(glimpse_window=2)) == 2  # no schedule
    scores = torch.randn(3, H, H)
    wide = glimpse.near_best(scores, torch.tensor(float(H)))
    assert torch.equal(wide, scores)  # every candidate kept
    assert torch.isinf(glimpse.near_best(scores, torch.tensor(2.0))).sum() > 0
    read, near_best = [], glimpse.near_best
    monkeypatch.setattr(glimpse, "near_best", lambda s, r: read.append(float(r)) or near_best(s, r))
    train(config, tmp_path / "run", progress=False)
    calls = 2 * 3  # a call per factor and frame (K = 2, T = 3); then the test set's bound
    steps = np.array(read[: 5 * calls]).reshape(5, calls)
    assert (steps == steps[:, :1]).all()  # every call of a step reads the same radius
    np.testing.assert_allclose(steps[:, 0], [H, H, H, H, H - (H - 2) / 4])
    with pytest.raises(ValueError, match="glimpse_window_from: needs --glimpse-window"):
        _config(glimpse_window_from=4)
