"""The same numbers as before the code was reorganised: the first five training losses of each
recipe at seed 0, and run directories saved then, against fixtures written by
tests/fixtures/make_baseline.py with the earlier code."""

import importlib.util
import json
from pathlib import Path

import pytest

from pyro_dvip import load, make_config, train

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("make_baseline", FIXTURES / "make_baseline.py")
baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baseline)


@pytest.mark.parametrize("recipe", sorted(baseline.RECIPES))
def test_a_recipes_first_five_losses_are_those_of_the_saved_baseline(recipe, tmp_path):
    expected = json.loads((FIXTURES / "baseline_losses.json").read_text())[recipe]
    spec = dict(baseline.RECIPES[recipe])
    config = make_config(spec.pop("preset"), **{**spec, **baseline.SMALL})
    result = train(config, tmp_path / recipe, progress=False)
    losses = [-row["objective_avg"] * config.seq_len for row in result.metrics]
    assert losses == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", sorted(baseline.RUNS))
def test_a_run_directory_saved_by_the_earlier_code_loads_and_computes_the_same(name):
    expected = json.loads((FIXTURES / "saved_runs" / "expected.json").read_text())[name]
    dvip = load(FIXTURES / "saved_runs" / name)
    assert baseline.probe(dvip) == pytest.approx(expected, rel=1e-5)
