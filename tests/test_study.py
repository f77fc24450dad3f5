"""Studies (their statistics: test_study_stats.py): identical splits, resuming without recomputing, costs, the report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_sentences
from warmstart.data import Dataset
from warmstart.errors import ParameterError
from warmstart.study import StudyConfig, run_study


@pytest.fixture
def study_data():
    texts, labels = make_sentences(12, seed=3)
    return Dataset(texts, labels, "text", "synthetic")


def config(tiny_bert_dir, **kw):
    base = dict(
        data="synthetic",
        backbone=str(tiny_bert_dir),
        techniques=["scratch", "probe", "finetune"],
        shots=[2, 4],
        seeds=2,
        params={"finetune": {"epochs": 2}, "scratch": {"epochs": 2}},
    )
    return StudyConfig(**{**base, **kw})


def test_study_runs_every_cell_on_identical_splits_and_resumes(
    tiny_bert_dir, study_data, tmp_path, monkeypatch
):
    import warmstart.study as st

    out = tmp_path / "study"
    summary = run_study(study_data, config(tiny_bert_dir), out, progress=False)
    cells = st.load_cells(out)
    assert len(cells) == 3 * 2 * 2 and summary["cells"] == 12
    for k in (2, 4):
        for seed in (0, 1):
            same = {c["n_train"] for c in cells if c["shots"] == k and c["seed"] == seed}
            assert same == {3 * k}
            assert len({c["train_rows"] for c in cells if c["shots"] == k and c["seed"] == seed}) == 1
    assert len({c["train_rows"] for c in cells}) == 4  # the four (shots, seed) pairs train on different rows
    assert {c["n_test"] for c in cells} == {6}  # 20% of each class of 12 rows, the same rows for every cell
    assert len({c["test_rows"] for c in cells}) == 1
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    assert len(df) == 12 and {"accuracy", "cpu_s", "flops", "energy_j", "trainable_params"} <= set(df.columns)
    assert len(pd.read_parquet(out / "results.parquet")) == 12
    tuned = df[df.technique == "finetune"]
    assert (tuned.train_flops > 0).all() and (df[df.technique == "probe"].train_flops == 0).all()
    assert (df.flops > 0).all() and (df.trainable_params > 0).all()
    rows = {(r["technique"], r["shots"]): r for r in summary["rows"]}
    assert "vs_scratch" in rows[("probe", "2")] and "vs_probe" in rows[("finetune", "4")]
    assert "vs_scratch" not in rows[("scratch", "2")]

    # a crash lost one cell: rerunning computes that one only
    (out / "cells" / "probe-k4-s1.json").unlink()
    calls = []
    real = st.run_cell
    monkeypatch.setattr(st, "run_cell", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    run_study(study_data, config(tiny_bert_dir), out, progress=False)
    assert calls == ["probe"] and len(st.load_cells(out)) == 12
    # changing what a cell means is refused; growing the study adds only the new cells
    with pytest.raises(ParameterError, match=r"other settings \(test_rows\)"):
        run_study(study_data, config(tiny_bert_dir, test_rows=4), out, progress=False)
    other = {"finetune": {"epochs": 3}, "scratch": {"epochs": 2}}
    with pytest.raises(ParameterError, match=r"other settings \(params of finetune\)"):
        run_study(study_data, config(tiny_bert_dir, params=other), out, progress=False)
    calls.clear()
    grown = config(tiny_bert_dir, techniques=["probe"], shots=[4, 6], seeds=3)
    summary = run_study(study_data, grown, out, progress=False)
    assert calls == ["probe"] * 4  # k=4 seed 2, and k=6 seeds 0, 1, 2
    assert summary["cells"] == 16
    saved = json.loads((out / "study.json").read_text())
    assert saved["techniques"] == ["scratch", "probe", "finetune"] and saved["shots"] == [2, 4, 6]
    assert saved["seeds"] == 3 and saved["params"]["finetune"] == {"epochs": 2}


def test_report_is_rebuilt_from_saved_results_alone(tiny_bert_dir, study_data, tmp_path, monkeypatch):
    from warmstart.cli import main

    out = tmp_path / "study"
    run_study(
        study_data, config(tiny_bert_dir, techniques=["scratch", "probe"], shots=[2]), out, progress=False
    )
    from warmstart.report import write_study_report

    write_study_report(out)  # the study writes tables and summary; the report is an app above it
    html = (out / "report.html").read_text()
    summary = (out / "summary.json").read_text()
    for part in (
        "Learning curves",
        "paired comparisons",
        "Cost",
        "The chosen model",
        "Resolved configuration",
    ):
        assert part in html
    assert html.count("data:image/png;base64,") == 3 and "<script" not in html
    (out / "report.html").unlink()
    (out / "summary.json").unlink()
    import warmstart.study as st

    monkeypatch.setattr(st, "run_cell", lambda *a, **k: pytest.fail("the report must not train"))
    assert main(["report", str(out)]) == 0
    assert (out / "summary.json").read_text() == summary
    assert (out / "report.html").read_text() == html


def test_training_flops_are_about_three_forward_passes_per_epoch(tiny_bert_dir, study_data):
    from warmstart.backbones import get_backbone
    from warmstart.cost import forward_flops
    from warmstart.techniques import get_technique

    bb = get_backbone(str(tiny_bert_dir))
    est = get_technique("finetune", backbone=bb, epochs=2, min_steps=0, progress=False, batch_size=36).fit(
        study_data
    )
    ratio = est.train_flops_ / (2 * forward_flops(bb, study_data))
    assert 2.0 < ratio < 4.5  # backward is about twice the forward; padding adds a little


def test_energy_from_rapl_when_readable_else_a_labelled_estimate(tmp_path, monkeypatch):
    import warmstart.cost as cost

    monkeypatch.setattr(cost, "POWERCAP", str(tmp_path / "none"))
    with cost.measure() as c:
        sum(range(10000))
    assert c.energy_method.startswith("estimate") and c.energy_joules == pytest.approx(c.cpu_seconds * 10)
    dom = tmp_path / "powercap" / "intel-rapl:0"
    dom.mkdir(parents=True)
    (dom / "energy_uj").write_text("999000000")
    (dom / "max_energy_range_uj").write_text("1000000000")
    (tmp_path / "powercap" / "intel-rapl:0:0").mkdir()  # a sub-domain: not counted twice
    monkeypatch.setattr(cost, "POWERCAP", str(tmp_path / "powercap"))
    with cost.measure() as c:
        (dom / "energy_uj").write_text("2000000")  # wrapped: 1,000,000 to the top, then 2,000,000
    assert c.energy_method.startswith("RAPL") and c.energy_joules == pytest.approx(3.0)


def test_ray_engine_gives_the_local_engines_table(tiny_bert_dir, study_data, tmp_path):
    ray = pytest.importorskip("ray")
    import pandas as pd
    import torch

    from warmstart.study import load_cells

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the one-thread Ray tasks
    try:
        cfg = config(tiny_bert_dir, techniques=["probe", "finetune"], shots=[2, 4], seeds=2)
        run_study(study_data, cfg, tmp_path / "local", progress=False)
        (tmp_path / "ray" / "cells").mkdir(parents=True)
        # one cell already finished: the Ray run must keep it and compute only the other seven
        kept = tmp_path / "local" / "cells" / "probe-k2-s0.json"
        (tmp_path / "ray" / "cells" / kept.name).write_text(
            kept.read_text().replace('"predict_s"', '"kept": 1, "predict_s"')
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            run_study(study_data, cfg, tmp_path / "ray", progress=False, engine="ray")
        finally:
            ray.shutdown()
    finally:
        torch.set_num_threads(threads)
    assert any(c.get("kept") for c in load_cells(tmp_path / "ray"))
    content = [
        "technique",
        "shots",
        "seed",
        "n_train",
        "n_test",
        "accuracy",
        "macro_f1",
        "trainable_params",
        "flops",
    ]
    a = pd.read_csv(tmp_path / "local" / "results.csv")[content]
    b = pd.read_csv(tmp_path / "ray" / "results.csv")[content]
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    la = {
        (c["technique"], c["shots"], c["seed"]): c["confusion_matrix"] for c in load_cells(tmp_path / "local")
    }
    lb = {
        (c["technique"], c["shots"], c["seed"]): c["confusion_matrix"] for c in load_cells(tmp_path / "ray")
    }
    assert la == lb


def test_a_study_on_an_image_folder_records_its_rows(tmp_path, tiny_image_backbone):
    """Image-folder rows are file paths, not numbers: the row hashes must take them (regression)."""
    import numpy as np
    from PIL import Image

    import warmstart.study as st
    from warmstart.data import load_image_folder

    for cls, value in (("dark", 30), ("light", 220)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((32, 32, 3), value + i, np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    tiny_image_backbone.save(tmp_path / "bb")
    cfg = StudyConfig(
        data="imgs", backbone=str(tmp_path / "bb"), techniques=["probe"], shots=[2], seeds=1, test_size=0.34
    )
    run_study(load_image_folder(tmp_path / "imgs"), cfg, tmp_path / "study", progress=False)
    (cell,) = st.load_cells(tmp_path / "study")
    assert len(cell["train_rows"]) == len(cell["test_rows"]) == 16
