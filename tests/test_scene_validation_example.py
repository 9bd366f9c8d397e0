import csv
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("examples.scene_validation")


def write_run(folder: Path, r2, scene_verdict, idf1=0.99, switches=1.0, applicable=True):
    """A run folder whose eval/metrics.json holds a probe record (K x O position R², whole
    R² 0.95), a label-free verdict and tracking scores."""
    alignment = {"r2": r2, "whole_r2": [0.95] * len(r2[0]), "protocol": "factors"}
    if not applicable:
        alignment = {"applicable": False, "note": "not applicable: real video"}
    scene = {"used": [0, 1], "unexplained": 0.1, "undrawn": 0.05,
             "pairs": [{"meetings": 20, "passed": 18}], "verdict": scene_verdict,
             "reason": "constructed"}  # fmt: skip
    metrics = {
        "config": {
            "scene": "digits",
            "decoder": "glimpse",
            "factors": 2,
            "num_digits": 2,
            "channels": 1,
            "seed": 0,
        },  # fmt: skip
        "trained": {
            "alignment": alignment,
            "scene": scene,
            "tracking": {"idf1": idf1, "id_switches_per_100": switches},
        },  # fmt: skip
    }
    (folder / "eval").mkdir(parents=True)
    (folder / "eval" / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_agreement_is_counted_against_the_probes_and_the_tracking_targets(example, tmp_path):
    aligned, mixed = [[0.9, 0.0], [0.0, 0.9]], [[0.5, 0.5], [0.5, 0.5]]
    runs = [
        write_run(tmp_path / "a", aligned, "objects"),  # agrees with both
        write_run(tmp_path / "b", mixed, "objects", idf1=0.97, switches=0.5),  # tracks only
        write_run(tmp_path / "c", mixed, "slots", idf1=0.78, switches=17.6),  # agrees with both
        write_run(tmp_path / "v", aligned, "objects", applicable=False),  # no ground truth
    ]
    out = tmp_path / "table.csv"
    example.main([*map(str, runs), "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["run"][-1] for r in rows] == ["a", "b", "c"]  # the video run is left out
    assert [r["verdict"] for r in rows] == ["objects", "mixed", "mixed"]
    assert [r["agree"] for r in rows] == ["True", "False", "True"]
    assert [r["tracking_objects"] for r in rows] == ["True", "True", "False"]
    assert [r["agree_tracking"] for r in rows] == ["True", "True", "True"]
