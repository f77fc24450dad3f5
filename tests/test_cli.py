import json

import pandas as pd
import pytest

from tests.conftest import make_sentences
from warmstart.cli import build_parser, main


@pytest.fixture
def csvs(tmp_path):
    tr, trl = make_sentences(15, seed=0)
    te, tel = make_sentences(5, seed=1)
    pd.DataFrame({"text": tr, "label": trl}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": te, "label": tel}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"text": te}).to_csv(tmp_path / "new.csv", index=False)
    return tmp_path


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("fit", "predict", "backbones", "datasets", "demo", "examples:"):
        assert cmd in out
    assert "--shots" in build_parser()._subparsers._group_actions[0].choices["fit"].format_help()


def test_fit_then_predict_csv_and_json(csvs, tiny_bert_dir, capsys):
    art = csvs / "art"
    rc = main(
        [
            "fit",
            "--data",
            str(csvs / "train.csv"),
            "--test",
            str(csvs / "test.csv"),
            "--backbone",
            str(tiny_bert_dir),
            "--shots",
            "10",
            "--output",
            str(art),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "trained on 30 rows, tested on 15" in out
    rc = main(["predict", str(art), str(csvs / "new.csv"), "--output", str(csvs / "p.csv")])
    assert rc == 0
    df = pd.read_csv(csvs / "p.csv")
    assert list(df.columns) == ["row", "prediction", "confidence", "p_food", "p_sports", "p_tech"]
    assert len(df) == 15 and df["row"].tolist() == list(range(1, 16))
    assert (df[["p_food", "p_sports", "p_tech"]].sum(axis=1) - 1).abs().max() < 1e-4
    rc = main(["predict", str(art), str(csvs / "test.csv"), "--format", "json"])
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert len(records) == 15 and "accuracy against the file's labels" in captured.err


def image_folder_and_backbone(tmp_path, backbone, n_per_class: int) -> None:
    """``tmp_path/imgs/<class>/<i>.png`` from ``make_images``, and the backbone saved to ``tmp_path/bb``."""
    from PIL import Image

    from tests.conftest import make_images

    x, y = make_images(n_per_class, size=24)
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        (tmp_path / "imgs" / lab).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / lab / f"{i}.png")
    backbone.save(tmp_path / "bb")


def test_fit_image_folder_and_predict_folder(tmp_path, tiny_image_backbone, capsys):
    image_folder_and_backbone(tmp_path, tiny_image_backbone, 8)
    rc = main(
        [
            "fit",
            "--data",
            str(tmp_path / "imgs"),
            "--backbone",
            str(tmp_path / "bb"),
            "--test-size",
            "0.25",
            "--output",
            str(tmp_path / "art"),
        ]
    )
    assert rc == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "art"), str(tmp_path / "imgs" / "left")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 9 and lines[1].split(",")[0].endswith(".png")


def test_user_errors_exit_2_with_a_message(csvs, tiny_bert_dir, capsys):
    rc = main(["fit", "--data", str(csvs / "missing.csv"), "--output", str(csvs / "x")])
    assert rc == 2 and "missing.csv: no such file" in capsys.readouterr().err
    rc = main(
        ["fit", "--data", str(csvs / "train.csv"), "--backbone", "all-minilm", "--output", str(csvs / "x")]
    )
    assert rc == 2 and "Did you mean 'all-MiniLM-L6-v2'" in capsys.readouterr().err
    rc = main(
        [
            "fit",
            "--data",
            str(csvs / "train.csv"),
            "--backbone",
            str(tiny_bert_dir),
            "--param",
            "C=-3",
            "--output",
            str(csvs / "x"),
        ]
    )
    assert rc == 2 and "'C' parameter of LinearProbe must be a float in (0, inf)" in capsys.readouterr().err
    rc = main(["fit", "--data", str(csvs / "train.csv"), "--param", "C", "--output", str(csvs / "x")])
    assert rc == 2 and "--param 'C' is not KEY=VALUE" in capsys.readouterr().err
    rc = main(["predict", str(csvs / "nope"), str(csvs / "new.csv")])
    assert rc == 2 and "no such artifact folder" in capsys.readouterr().err


def test_backbones_and_datasets_lists(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "efficientnet-lite0" in out
    assert main(["datasets"]) == 0
    assert "20newsgroups" in capsys.readouterr().out


def test_fit_a_trained_technique_then_predict(csvs, tiny_bert_dir, capsys):
    art = csvs / "lora"
    args = ["fit", "--data", str(csvs / "train.csv"), "--test", str(csvs / "test.csv")]
    args += ["--backbone", str(tiny_bert_dir), "--technique", "lora", "--output", str(art)]
    rc = main(args + ["--param", "epochs=1", "--param", "r=4", "--param", "progress=false"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "trainable parameters" in out and "peak memory" in out
    meta = json.loads((art / "warmstart.json").read_text())
    assert meta["technique"] == "lora" and meta["params"]["r"] == 4
    assert (art / "backbone" / "model.safetensors").is_file(), "the merged backbone travels with the model"
    assert main(["predict", str(art), str(csvs / "new.csv"), "--output", str(csvs / "p.csv")]) == 0
    assert len(pd.read_csv(csvs / "p.csv")) == 15


def test_techniques_lists_every_registered_one(capsys):
    from warmstart.techniques import available_techniques

    assert main(["techniques", "-v"]) == 0
    out = capsys.readouterr().out
    for name in available_techniques():
        assert f"\n{name} " in "\n" + out
    assert "lr_decay=1.0" in out and "target_modules=None" in out


def test_bad_technique_parameter_is_a_clear_error(csvs, tiny_bert_dir, capsys):
    args = ["fit", "--data", str(csvs / "train.csv"), "--backbone", str(tiny_bert_dir)]
    rc = main(args + ["--technique", "finetune", "--param", "epochs=0", "--output", str(csvs / "x")])
    assert rc == 2
    assert (
        "The 'epochs' parameter of FineTune must be an int in [1, inf) or 'auto'. Got 0 instead."
        in capsys.readouterr().err
    )


def test_multilabel_file_fit_and_predict(tmp_path, tiny_bert_dir, capsys):
    from .test_contrastive import make_multilabel

    texts, labels = make_multilabel(60, seed=0)
    pd.DataFrame({"text": texts, "labels": ["|".join(lab) for lab in labels]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    art = tmp_path / "m"
    args = ["fit", "--data", str(tmp_path / "m.csv"), "--label-sep", "|", "--backbone", str(tiny_bert_dir)]
    args += [
        "--technique",
        "contrastive",
        "--output",
        str(art),
        "--param",
        "steps=3",
        "--param",
        "progress=false",
    ]
    assert main(args) == 0
    metrics = json.loads((art / "metrics.json").read_text())
    assert metrics["multilabel"] and "micro_f1" in metrics
    rc = main(
        [
            "predict",
            str(art),
            str(tmp_path / "m.csv"),
            "--label-sep",
            "|",
            "--output",
            str(tmp_path / "p.csv"),
        ]
    )
    assert rc == 0
    pred = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert len(pred) == 60 and {"p_food", "p_sports", "p_tech"} <= set(pred.columns)
    assert all(set(p.split("|")) <= {"food", "sports", "tech", ""} for p in pred["prediction"])
    assert "exact-match accuracy against the file's labels" in capsys.readouterr().err


def test_rank_prints_a_table_and_how_to_read_it(csvs, tiny_bert_dir, tiny_bert_dir_b, capsys):
    out_json = csvs / "rank.json"
    backbones = f"{tiny_bert_dir},{tiny_bert_dir_b}"
    argv = ["rank", "--data", str(csvs / "train.csv"), "--backbones", backbones, "--resamples", "3"]
    assert main([*argv, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert (
        "| rank | backbone | dim | logme | knn | hscore | leep | nleep | ridge_loo | probe_cv | sfda | sfda_lw |"
        in out
    )
    assert "Ranked by ridge_loo" in out and "subsamples" in out
    saved = json.loads(out_json.read_text())
    assert [c["backbone"] for c in saved["candidates"]][0] in out.split("\n")[2]
    assert all(c["scores"]["leep"] is None for c in saved["candidates"])  # text encoders have no classifier
    # the second run reads the features from the cache
    assert (
        main([*argv, "--scores", "knn", "--primary", "knn", "--metric", "macro_f1", "--json", str(out_json)])
        == 0
    )
    assert "(cached)" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["metric"] == "macro_f1"
    assert main([*argv, "--scores", "knn,bogus"]) == 2
    assert "unknown score" in capsys.readouterr().err
    # at most 4 rows of each class; 0: every row
    rows = json.loads(out_json.read_text())
    classes, total = rows["classes"], rows["rows"]
    assert main([*argv, "--scores", "knn", "--max-per-class", "4", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["rows"] == 4 * classes < total
    assert f"a sample of {4 * classes} of the {total} labelled rows" in capsys.readouterr().out
    assert main([*argv, "--scores", "knn", "--max-per-class", "0", "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["rows"] == total


def test_recommend_and_fit_auto(csvs, tiny_bert_dir, capsys):
    common = ["--data", str(csvs / "train.csv"), "--backbone", str(tiny_bert_dir)]
    assert main(["recommend", *common, "--candidates", "bitfit,probe", "--max-params", "500"]) == 0
    out = capsys.readouterr().out
    assert "| bitfit |" in out and "trainable params > 500" in out and "--technique probe" in out
    assert main(["recommend", *common, "--candidates", "probe", "--budget", "0.001s"]) == 3
    assert "Nothing fits" in capsys.readouterr().out
    # without the race: the first candidate that fits, no held-out folds
    assert main(["recommend", *common, "--candidates", "bitfit,probe", "--no-race"]) == 0
    out = capsys.readouterr().out
    assert "--technique bitfit" in out and "fold 1" not in out and "is the first of bitfit" in out
    art = csvs / "auto"
    rc = main(["fit", *common, "--technique", "auto", "--max-params", "500", "--output", str(art)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "probe on" in out and "chosen" in out
    config = json.loads((art / "config.json").read_text())
    assert config["technique"] == "probe" and config["technique_choice"]["technique"] == "probe"


def test_export_finds_the_held_out_rows_itself_or_takes_test(csvs, tiny_bert_dir, capsys):
    pytest.importorskip("onnxruntime")
    art = csvs / "art"
    base = ["fit", "--data", str(csvs / "train.csv"), "--backbone", str(tiny_bert_dir), "--output", str(art)]
    assert main(base) == 0
    assert main(["export", str(art), "--onnx", "--int8"]) == 0
    out = capsys.readouterr().out
    assert "checked on 9 held-out rows" in out and "int8" in out  # the artifact's own 20% test split
    meta = json.loads((csvs / "art-onnx" / "export.json").read_text())
    assert meta["parity"]["fp32"]["argmax_agreement"] == 1.0
    assert main(["export", str(art), "--onnx", "--test", str(csvs / "test.csv"), "-o", str(csvs / "x")]) == 0
    assert "checked on 15 held-out rows" in capsys.readouterr().out
    assert main(["export", str(art)]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_study_and_report_commands(csvs, tiny_bert_dir, capsys):
    out = csvs / "study"
    argv = ["study", "--data", str(csvs / "train.csv"), "--test", str(csvs / "test.csv")]
    argv += [
        "--backbone",
        str(tiny_bert_dir),
        "--techniques",
        "scratch,probe",
        "--shots",
        "2,4",
        "--seeds",
        "2",
    ]
    argv += ["--param", "scratch.epochs=1", "--output", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| probe |" in text and "vs scratch" in text and (out / "report.html").is_file()
    assert main(["report", str(out)]) == 0
    assert main(["study", *argv[1:-2], "--output", str(out), "--param", "bad"]) == 2
    assert "TECHNIQUE.KEY=VALUE" in capsys.readouterr().err
    art = csvs / "art"
    assert (
        main(["fit", "--data", str(csvs / "train.csv"), "--backbone", str(tiny_bert_dir), "-o", str(art)])
        == 0
    )
    assert main(["report", str(art)]) == 0
    html = (csvs / "art-report.html").read_text()
    assert "confusion matrix" in html and "Resolved configuration" in html
    assert "reliability diagram" in html and "expected calibration error" in html
    assert main(["report", str(csvs)]) == 2


def test_fit_never_deletes_a_users_files_and_checks_the_output_first(tmp_path, tiny_bert_dir, capsys):
    """Regression: --output on a folder holding other files used to replace it (the files were lost)."""
    _small_csv(tmp_path / "t.csv")
    base = ["fit", "--data", str(tmp_path / "t.csv"), "--backbone", str(tiny_bert_dir)]
    mine = tmp_path / "d"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    assert main([*base, "--output", str(mine)]) == 2
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert "not a warmstart artifact" in capsys.readouterr().err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    assert main([*base, "--output", str(a_file)]) == 2 and a_file.read_text() == "keep"
    assert not list(tmp_path.glob(".notes.txt.old-*"))
    # an artifact folder is replaced; --overwrite replaces anything
    art = tmp_path / "art"
    assert main([*base, "--output", str(art)]) == 0
    assert main([*base, "--output", str(art)]) == 0
    assert main([*base, "--output", str(mine), "--overwrite"]) == 0 and not (mine / "thesis.txt").exists()


def test_predict_never_overwrites_its_input_or_the_artifact(tmp_path, tiny_bert_dir, capsys):
    _small_csv(tmp_path / "t.csv")
    art = tmp_path / "art"
    assert (
        main(["fit", "--data", str(tmp_path / "t.csv"), "--backbone", str(tiny_bert_dir), "-o", str(art)])
        == 0
    )
    before = (tmp_path / "t.csv").read_bytes()
    assert main(["predict", str(art), str(tmp_path / "t.csv"), "--output", str(tmp_path / "t.csv")]) == 2
    assert (tmp_path / "t.csv").read_bytes() == before
    assert main(["predict", str(art), str(tmp_path / "t.csv"), "--output", str(art / "metrics.json")]) == 2
    assert "inside the artifact" in capsys.readouterr().err
    from warmstart.artifact import verify_artifact

    verify_artifact(art)  # still intact


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--param", "CC=1"], "probe has no parameter 'CC'. Did you mean 'C'?"),
        (["--technique", "lora", "--param", "rank=4"], "lora has no parameter 'rank'"),
        (["--technique", "auto", "--budget", "0s"], "a budget must be more than 0 seconds"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_parameters_are_one_line_errors_before_any_work(extra, message, tmp_path, tiny_bert_dir, capsys):
    _small_csv(tmp_path / "t.csv")
    args = [
        "fit",
        "--data",
        str(tmp_path / "t.csv"),
        "--backbone",
        str(tiny_bert_dir),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_study_with_a_bad_parameter_writes_nothing(tmp_path, tiny_bert_dir, capsys):
    _small_csv(tmp_path / "t.csv")
    args = [
        "study",
        "--data",
        str(tmp_path / "t.csv"),
        "--backbone",
        str(tiny_bert_dir),
        "--techniques",
        "probe",
    ]
    assert (
        main([*args, "--param", "probe.CC=1", "--shots", "2", "--seeds", "1", "-o", str(tmp_path / "s")]) == 2
    )
    assert "probe has no parameter 'CC'" in capsys.readouterr().err
    assert not (tmp_path / "s" / "study.json").exists()


def test_debug_shows_the_traceback_instead_of_the_one_line_error(tmp_path):
    from warmstart.errors import DataError

    with pytest.raises(DataError, match="no such file"):
        main(["fit", "--data", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o"), "--debug"])


def test_clean_lists_and_removes_abandoned_checkpoints(tmp_path, capsys):
    import os
    import time

    old, new = tmp_path / "ck" / "finetune-old", tmp_path / "ck" / "finetune-new"
    for d in (old, new):
        d.mkdir(parents=True)
        (d / "state.pt").write_bytes(b"x" * 2048)
    past = time.time() - 3 * 86400
    os.utime(old / "state.pt", (past, past))
    assert main(["clean", "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    out = capsys.readouterr().out
    assert "finetune-old" in out and "finetune-new" not in out and old.exists()
    assert main(["clean", "--checkpoint-dir", str(tmp_path / "ck"), "--remove"]) == 0
    assert not old.exists() and new.exists()


def test_a_class_without_test_rows_is_left_out_of_macro_f1_with_a_note():
    from warmstart.metrics import classification_metrics

    m = classification_metrics(["a", "a", "b"], ["a", "b", "b"], ["a", "b", "c"])
    assert m["classes_without_test_rows"] == ["c"] and "macro-F1 is over the other 2" in m["note"]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # not dragged down by an F1 of 0 for 'c'


def _small_csv(path):
    """6 rows of each of the three keyword classes, as a CSV a user would pass to --data."""
    texts, labels = make_sentences(6)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)


def test_an_artifact_records_its_data_path_absolute_so_export_works_from_elsewhere(
    tmp_path, tiny_bert_dir, monkeypatch
):
    _small_csv(tmp_path / "t.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--data", "t.csv", "--backbone", str(tiny_bert_dir), "-o", "art"]) == 0
    record = json.loads((tmp_path / "art" / "config.json").read_text())["record"]
    assert record["data"] == str((tmp_path / "t.csv").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["export", str(tmp_path / "art"), "--onnx", "--output", str(tmp_path / "onnx")]) == 0


def test_predict_with_test_time_augmentation(tmp_path, tiny_image_backbone, capsys):
    image_folder_and_backbone(tmp_path, tiny_image_backbone, 6)
    common = ["--data", str(tmp_path / "imgs"), "--backbone", str(tmp_path / "bb"), "--test-size", "0.25"]
    for technique in ("probe", "finetune"):
        extra = ["--param", "epochs=1", "--param", "min_steps=2", "--param", "hflip=false"]
        rc = main(
            [
                "fit",
                *common,
                "--technique",
                technique,
                *(extra if technique != "probe" else []),
                "--output",
                str(tmp_path / technique),
            ]
        )
        assert rc == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "probe"), str(tmp_path / "imgs"), "--tta"]) == 2
    assert "tta=True: the probe" in capsys.readouterr().err
    outs = []
    for flag in ([], ["--tta"]):
        assert main(["predict", str(tmp_path / "finetune"), str(tmp_path / "imgs"), *flag]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] != outs[1] and len(outs[1].strip().splitlines()) == 19
