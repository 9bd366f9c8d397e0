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


def write_run(folder: Path, r2, passed, idf1=0.99, switches=1.0, applicable=True):
    """A run folder whose eval/metrics.json holds a probe record (K x O position R², whole
    R² 0.95), a label-free record of two compact moving drawings whose tracks pass at
    ``passed`` of 20 meetings (stored as judged ``objects``) and tracking scores."""
    alignment = {"r2": r2, "whole_r2": [0.95] * len(r2[0]), "protocol": "factors"}
    if not applicable:
        alignment = {"applicable": False, "note": "not applicable: real video"}
    drawing = {"used": True, "one_region": 1.0, "step": 2.0}
    scene = {"used": [0, 1], "unexplained": 0.1, "undrawn": 0.05, "frame_width": 32,
             "per_factor": [drawing, drawing], "verdict": "objects", "reason": "stored",
             "pairs": [{"factors": [0, 1], "shared": 0.0, "meetings": 20,
                        "passed": passed}]}  # fmt: skip
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
        write_run(tmp_path / "a", aligned, 18),  # objects; agrees with both
        write_run(tmp_path / "b", mixed, 18, idf1=0.97, switches=0.5),  # tracks only
        write_run(tmp_path / "c", mixed, 5, idf1=0.78, switches=17.6),  # slots; agrees with both
        write_run(tmp_path / "d", mixed, 14, idf1=0.90, switches=8.0),  # swaps, stored objects
        write_run(tmp_path / "v", aligned, 18, applicable=False),  # no ground truth
    ]
    out = tmp_path / "table.csv"
    example.main([*map(str, runs), "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["run"][-1] for r in rows] == ["a", "b", "c", "d"]  # the video run is left out
    assert [r["verdict"] for r in rows] == ["objects", "mixed", "mixed", "mixed"]
    assert [r["scene_verdict"] for r in rows] == ["objects", "objects", "slots", "swaps"]
    assert [r["stored_scene_verdict"] for r in rows] == ["objects"] * 4  # judged again today
    assert [r["agree"] for r in rows] == ["True", "False", "True", "True"]
    assert [r["tracking_objects"] for r in rows] == ["True", "True", "False", "False"]
    assert [r["agree_tracking"] for r in rows] == ["True", "True", "True", "True"]


def test_an_earlier_table_is_recounted_from_its_meetings(example, tmp_path):
    old = tmp_path / "old.csv"
    with old.open("w", newline="") as f:  # judged before swaps: objects at 0.70 passed
        writer = csv.DictWriter(f, fieldnames=example.COLUMNS)
        writer.writeheader()
        for name, verdict, label_free, passed, tracks in [
            ("three", "under-encoded", "objects", 70, "False"),  # becomes swaps
            ("same", "objects", "objects", 90, "True"),  # stays
            ("gone", "dropped", "not drawn", 10, "False"),  # an earlier rule: stays
        ]:
            writer.writerow({"run": name, "verdict": verdict, "scene_verdict": label_free,
                             "meetings": 100, "passed": passed, "tracking_objects": tracks,
                             "scene_reason": "stored"})  # fmt: skip
    out = tmp_path / "new.csv"
    example.main(["--recount", str(old), "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["scene_verdict"] for r in rows] == ["swaps", "objects", "not drawn"]
    assert [r["agree"] for r in rows] == ["True"] * 3
    assert [r["agree_tracking"] for r in rows] == ["True"] * 3
    assert rows[0]["scene_reason"] == "recounted: 70 of 100 meetings passed"


def test_no_runs_and_no_table_is_an_error(example, tmp_path, capsys):
    with pytest.raises(SystemExit):
        example.main(["--out", str(tmp_path / "t.csv")])
    assert "give run directories or --recount CSV" in capsys.readouterr().err
