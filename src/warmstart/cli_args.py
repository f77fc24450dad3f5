"""The arguments of every `warmstart` command: one builder per command, so each command's options read in one
place. ``cli.py`` runs the command the parser names; nothing here imports torch or the library."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  warmstart fit --data reviews.csv --shots 16 --output runs/reviews
  warmstart fit --data 20newsgroups --backbone paraphrase-MiniLM-L3-v2 --shots 8 --output runs/ng
  warmstart fit --data photos/ --backbone efficientnet-lite0 --output runs/photos
  warmstart fit --data trec --technique lora --shots 64 --param epochs=4 --output runs/trec-lora
  warmstart predict runs/reviews new_reviews.csv --output predictions.csv
  warmstart rank --data trec --backbones all-MiniLM-L6-v2,paraphrase-MiniLM-L3-v2
  warmstart fit --data trec --shots 64 --technique auto --budget 2m --output runs/trec-auto
  warmstart fit --data trec --backbone all-mpnet-base-v2 --device cuda --precision bf16 --output runs/mpnet
  warmstart backbones

Errors are one line; add --debug anywhere to see the traceback instead.
"""


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("columns and decoding")
    g.add_argument(
        "--text-col",
        help="column holding the text, or the images of a Hugging Face data set (default: text, sentence, "
        "content, ...; image, img, ...)",
    )
    g.add_argument("--label-col", help="column holding the label (default: label, category, class, ...)")
    g.add_argument(
        "--label-sep",
        help="multi-label data: the label cell holds several labels separated by this, e.g. '|' "
        "(predictions are written joined by it; default '|')",
    )
    g.add_argument("--encoding", default="utf-8", help="text file encoding (default: utf-8)")
    g.add_argument("--drop-empty", action="store_true", help="skip rows with an empty text or label")
    g.add_argument(
        "--split",
        help="Hugging Face data set (a save_to_disk folder or hf:NAME): the split to train on (default: train; "
        "its test split, when there is one, is the test data)",
    )


def _runtime_options(p: argparse.ArgumentParser, precision: bool = True) -> None:
    g = p.add_argument_group("device and precision (docs/scaling.md)")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU if there is one, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps",
    )
    if not precision:
        return
    g.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=None,
        help="auto (default: bf16 where the GPU or CPU computes it natively, else fp32), fp32, bf16, or fp16 "
        "(training with a gradient scaler); feature extraction and training alike",
    )
    g.add_argument("--bf16", action="store_true", help="the same as --precision bf16")
    g.add_argument("--fp32", action="store_true", help="the same as --precision fp32")


def _budget_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits for --technique auto / recommend")
    g.add_argument("--budget", help="CPU time the training may take, e.g. 90s, 5m, 1h (default: none)")
    g.add_argument("--max-params", help="most trainable parameters, e.g. 500k or 2M (default: none)")
    g.add_argument("--max-memory", type=float, help="most peak resident memory in MB (default: none)")
    g.add_argument(
        "--no-race",
        action="store_true",
        help="take the first technique that fits, in the order of expected accuracy, instead of racing the "
        "ones that fit on held-out folds of the labelled rows",
    )


def _parser_fit(sub: Any) -> None:

    p = sub.add_parser(
        "fit",
        help="train a classifier and save it as an artifact folder",
        description="Train on labelled data, test it, and save one artifact folder.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="CSV/TSV/JSONL/Parquet file, image folder (one sub-folder per class), Hugging Face data set "
        "(save_to_disk folder or hf:NAME) or packaged data set name",
    )
    p.add_argument(
        "--test", help="separate test data (default: the packaged test split, or a held-out split)"
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2", help="registered name, local folder or hub id")
    p.add_argument(
        "--technique",
        default="probe",
        help="probe, finetune, lora, ia3, bitfit, lp_ft, l2sp, contrastive, scratch, or auto: the best "
        "expected accuracy that fits --budget, measured by short calibration fits (default: probe); "
        "self_train:BASE self-trains BASE on --unlabeled rows; `warmstart techniques` describes them",
    )
    p.add_argument(
        "--unlabeled",
        help="unlabelled rows for --technique self_train:BASE: a text file (CSV/TSV/JSONL/JSON/Parquet/TXT), an image "
        "folder, a Hugging Face data set or a packaged data set (its labels are not used)",
    )
    p.add_argument("--shots", type=int, help="train on K examples per class (few-shot)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=float, default=0.1, help="validation fraction (ignored with --shots)")
    p.add_argument("--test-size", type=float, default=0.2, help="test fraction when there is no --test")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="technique hyperparameter, e.g. --param C=0.1 (repeatable)",
    )
    _runtime_options(p)
    p.add_argument(
        "--embed-backbone", action="store_true", help="copy the backbone weights into the artifact"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output even when it is not a warmstart artifact (its files are deleted)",
    )
    p.add_argument("--cache-dir", help="feature cache folder (default: $WARMSTART_HOME/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--output", "-o", required=True, help="artifact folder to write")
    _budget_options(p)
    _data_options(p)


def _parser_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a saved artifact",
        description="Predict labels and class probabilities for new inputs.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("inputs", help="text file (CSV/TSV/JSONL/Parquet/TXT), image file or image folder")
    p.add_argument("--output", "-o", help="write predictions here (.csv or .json); default: stdout as CSV")
    p.add_argument("--format", choices=["csv", "json"], help="output format (default: from --output suffix)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="images, trained techniques: average over the image, a zoomed crop and their mirror images "
        "(mirrors only if trained with hflip)",
    )
    _data_options(p)
    _runtime_options(p, precision=False)


def _parser_suggest(sub: Any) -> None:
    p = sub.add_parser(
        "suggest",
        help="which rows to label next: unlabelled rows ranked by what labelling them is expected to buy",
        description="Rank unlabelled rows for labelling: by default the rows that, with the labelled ones, best "
        "cover the pool (strategy coverage); from cached features; duplicates and labelled rows are left out. "
        "Writes a CSV with an empty label column to fill in.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("inputs", help="unlabelled rows: text file (CSV/TSV/JSONL/Parquet/TXT) or image folder")
    p.add_argument("--n", type=int, default=100, help="rows to suggest (100)")
    p.add_argument("--output", "-o", required=True, help="CSV to write, best row first")
    p.add_argument(
        "--strategy",
        default="auto",
        choices=["auto", "mixed", "margin", "entropy", "kcenter", "typical", "coverage", "random"],
        help="auto (default): coverage; mixed: the most uncertain rows, clustered, one "
        "per cluster; margin/entropy: uncertainty "
        "only; kcenter: diversity only, away from the labelled rows; typical: the densest row of each region "
        "without labels (for the first labels); coverage: the rows that, with the labelled ones, best cover "
        "the pool (densest first, then the least covered regions); random",
    )
    p.add_argument(
        "--labeled",
        help="rows already labelled (a data file), never suggested again; default: the artifact's training rows "
        "when its data is still where the fit read it; 'none' to use none",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="for --strategy random, typical's k-means and coverage's samples"
    )
    _data_options(p)
    _runtime_options(p, precision=False)


def _parser_distill(sub: Any) -> None:
    p = sub.add_parser(
        "distill",
        help="train a cheaper student on a fitted model's predictions, saved as an ordinary artifact",
        description="Distil the artifact TEACHER into a student: a static-embedding model distilled from the "
        "teacher's own encoder (--student static, text only; needs model2vec), the teacher's encoder cut to its "
        "first layers, or a smaller backbone. The student trains on the teacher's class probabilities over its "
        "training rows and any --unlabeled rows, and is compared with the teacher on the same test rows: "
        "accuracy with intervals, agreement, size, rows/s and energy per 1,000 predictions.",
    )
    p.add_argument("teacher", help="artifact folder written by `warmstart fit`")
    p.add_argument(
        "--student",
        default="static",
        help="static (default; text): static embeddings from the teacher's encoder; teacher:num_layers=N (text): "
        "the teacher's fine-tuned encoder cut to N layers; or a backbone name, e.g. paraphrase-MiniLM-L3-v2, "
        "all-MiniLM-L6-v2:num_layers=2, efficientnet-lite0:image_size=32",
    )
    p.add_argument("--output", "-o", required=True, help="artifact folder to write for the student")
    p.add_argument(
        "--unlabeled",
        help="more rows for the teacher to label: a text file (CSV/TSV/JSONL/JSON/Parquet/TXT, read a chunk at a time), "
        "an image folder, a Hugging Face data set or a packaged data set's training rows",
    )
    p.add_argument("--test", help="test rows (default: the teacher's own held-out rows)")
    p.add_argument(
        "--technique",
        default="auto",
        help="how the student trains. auto (default): a static student is probe+finetune, any other student "
        "fine-tunes. probe+finetune (static students): a probe with TF-IDF of its token ids beside the static "
        "vectors, fitted to the teacher's top class, and a copy of the vectors with a hidden layer (--hidden-dim) "
        "fine-tuned on the teacher's probabilities, joined into one model that averages their logits. finetune: "
        "trained on the teacher's probabilities (a static student then has a hidden layer: --hidden-dim). "
        "probe: a logistic regression on the teacher's top class (--param lexical=pieces, lexical=tfidf for "
        "scikit-learn's words, which cannot be exported to ONNX, or lexical=none)",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="softens (>1) the teacher's probabilities (default: 1)"
    )
    p.add_argument(
        "--hard-weight",
        type=float,
        default=0.5,
        help="weight of the true labels against the teacher's on labelled rows, 0 to 1 (default: 0.5)",
    )
    p.add_argument(
        "--pca-dims", type=int, default=256, help="static student: vector size after PCA (default: 256)"
    )
    p.add_argument(
        "--hidden-dim",
        type=int,
        default=None,
        help="static student, fine-tuned (--technique finetune, or the fine-tuned half of the default): one "
        "hidden layer of this size (ReLU) before the linear head; 0: none (default: 512)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="static student: read at most this many tokens of each text (default: 512)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="a student that trains in epochs (--technique finetune): hold out this share of the unlabelled rows "
        "and keep the epoch that agrees best with the teacher there (default: 0, train every epoch)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="student technique hyperparameter"
    )
    p.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --output even when it is not an artifact"
    )
    p.add_argument("--cache-dir", help="feature cache folder (default: $WARMSTART_HOME/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    _data_options(p)
    _runtime_options(p)


def _parser_adapt(sub: Any) -> None:
    p = sub.add_parser(
        "adapt",
        help="adapt a backbone to unlabelled rows of your domain; use the folder it writes as --backbone",
        description="Domain-adaptive pretraining (docs/unlabelled.md): text encoders by unsupervised SimCSE on "
        "the rows, image CNNs by re-estimating BatchNorm statistics on them (AdaBN). Writes a backbone folder "
        "that fit, study, rank and recommend take as --backbone; rerunning the same command reuses it.",
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2", help="registered name, local folder or hub id")
    p.add_argument(
        "--unlabeled",
        required=True,
        help="the rows: a text file (CSV/TSV/JSONL/JSON/Parquet/TXT), an image folder, a Hugging Face or packaged "
        "data set (labels are not used)",
    )
    p.add_argument("--output", "-o", required=True, help="backbone folder to write")
    p.add_argument("--epochs", type=int, default=1, help="passes over the rows (text; default: 1)")
    p.add_argument("--lr", type=float, default=3e-5, help="learning rate (text; default: 3e-5)")
    p.add_argument(
        "--batch-size", type=int, default=32, help="rows per batch, both copies counted (default: 32)"
    )
    p.add_argument(
        "--max-rows", type=int, default=10_000, help="use at most this many rows (default: 10,000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="redo it even when --output holds the same recipe"
    )
    _runtime_options(p)
    _data_options(p)


def _parser_study(sub: Any) -> None:
    p = sub.add_parser(
        "study",
        help="techniques x examples per class x seeds on identical splits: learning curves, CIs, costs, report",
        description="Run every (technique, shots, seed) cell on the same splits (resumable: finished cells are "
        "kept), then write results.csv/.parquet/.json, summary.json (means, 95% CIs, paired comparisons "
        "against scratch and probe) and report.html.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument(
        "--test", help="separate test data (default: the packaged test split, or a held-out split)"
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    p.add_argument(
        "--techniques",
        default="scratch,probe,lora,finetune",
        help="comma-separated; self_train:BASE is BASE self-trained on --unlabeled rows",
    )
    p.add_argument(
        "--unlabeled",
        help="unlabelled rows for self_train:BASE cells: 'rest' (the pool rows not drawn as a cell's labelled "
        "rows), or a text file, image folder, Hugging Face or packaged data set (rows that are also test rows "
        "are left out)",
    )
    p.add_argument(
        "--shots", default="4,8,16,64,all", help="examples per class, comma-separated; 'all' = every row"
    )
    p.add_argument("--seeds", type=int, default=5)
    _metric_option(p, "what the comparisons and the chosen model use; ")
    p.add_argument("--test-rows", type=int, help="test on a stratified sample of at most this many rows")
    p.add_argument(
        "--test-size", type=float, default=0.2, help="held-out fraction when there is no test split"
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the pool/test split (same for every cell)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="TECHNIQUE.KEY=VALUE",
        help="a technique's hyperparameter, e.g. --param finetune.epochs=3 (repeatable)",
    )
    _runtime_options(p)
    p.add_argument("--output", "-o", required=True, help="study folder (rerun the same command to resume)")
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="run cells here, or as Ray tasks (ray)"
    )
    p.add_argument(
        "--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else a local Ray instance)"
    )
    p.add_argument("--cpus-per-cell", type=int, default=1, help="CPUs (and torch threads) per Ray task (1)")
    _data_options(p)


def _parser_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild the HTML report of a study folder or an artifact from its saved results",
        description="Write report.html from saved results alone (no training).",
    )
    p.add_argument(
        "path",
        nargs="+",
        help="a study folder (warmstart study --output) or an artifact folder; or several students of one "
        "teacher (warmstart distill --output), side by side in one report (needs --output)",
    )
    p.add_argument(
        "--output", "-o", help="HTML file to write (default: STUDY/report.html, ARTIFACT-report.html)"
    )


def _metric_option(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument(
        "--metric",
        default="auto",
        choices=["auto", "accuracy", "macro_f1"],
        help=f"{what}auto (default): macro-F1 when the test rows' largest class is over 3x the smallest, else "
        "accuracy",
    )


def _parser_forecast(sub: Any) -> None:
    p = sub.add_parser(
        "forecast",
        help="how many labels: extend a study's learning curves (score at 2x, 4x, 10x the labels, labels for a target)",
        description="Fit a saturating learning curve (a - b * n^-c) per technique to a study's cells and forecast "
        "the score at 2x, 4x and 10x the most labels per class measured, and the labels per class a target needs, "
        "each with an interval from resampled seeds and the curve's back-test error (with a floor per doubling of "
        "the labels chosen on development studies). Writes STUDY/forecast.json.",
    )
    p.add_argument(
        "study", nargs="?", help="a study folder (warmstart study --output) with three label counts or more"
    )
    p.add_argument(
        "--data",
        help="instead of a study: labelled data (file, folder, Hugging Face or packaged data set) for a quick "
        "probe learning curve on nested subsets (2, 4, 8, ... per class up to all its rows) first",
    )
    p.add_argument("--test", help="with --data: separate test data (default: a held-out 20%%)")
    p.add_argument("--backbone", default="all-MiniLM-L6-v2", help="with --data: the probe's backbone")
    p.add_argument("--seeds", type=int, default=3, help="with --data: seeds per label count (3)")
    p.add_argument("--output", "-o", help="with --data: the quick study's folder (runs/forecast-NAME)")
    p.add_argument("--target", type=float, help="a score to reach, e.g. 0.9: the labels per class it needs")
    _metric_option(p)
    p.add_argument("--technique", action="append", help="only this technique (repeatable; default: all)")
    p.add_argument("--level", type=float, default=0.8, help="interval level (0.8)")
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    _runtime_options(p)
    _data_options(p)


def _parser_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export an artifact to ONNX or a transformers folder, checked on held-out rows",
        description="--onnx: the whole pipeline (backbone with merged adapter, head, probabilities) as ONNX, "
        "with the tokenizer or image preprocessing beside it. --transformers (text models): an AutoModel "
        "folder plus the head as one linear layer, loadable without warmstart. Either export is kept only if "
        "its probabilities match the artifact's on held-out rows (max abs difference <= --atol, same top "
        "class on every row).",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("--onnx", action="store_true", help="export to ONNX")
    p.add_argument(
        "--transformers",
        action="store_true",
        help="export a text model as a transformers folder (AutoModel + linear head; default output "
        "ARTIFACT-transformers)",
    )
    p.add_argument("--int8", action="store_true", help="also write a dynamically int8-quantised model")
    p.add_argument(
        "--test",
        help="held-out rows to check on (file, folder or packaged name; default: the artifact's own test rows)",
    )
    p.add_argument("--output", "-o", help="export folder (default: ARTIFACT-onnx beside the artifact)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed probability difference (1e-4)")
    p.add_argument("--max-rows", type=int, default=2000, help="check on at most this many held-out rows")
    _data_options(p)


def _parser_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an artifact over HTTP (/predict, /health, /info)",
        description="FastAPI + uvicorn server for one artifact, with request batching and input limits.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, default=2_000_000, help="largest request body (2000000)")
    p.add_argument("--max-inputs", type=int, default=64, help="most texts or images in one request (64)")
    p.add_argument("--max-text-chars", type=int, default=10_000, help="longest text in characters (10000)")
    p.add_argument(
        "--max-image-pixels",
        type=int,
        help="most pixels in one image (default 4096*4096, or WARMSTART_MAX_IMAGE_PIXELS if lower)",
    )
    p.add_argument("--max-batch-rows", type=int, default=64, help="most rows run through the model at once")
    p.add_argument(
        "--batch-wait-ms", type=float, default=2.0, help="how long a batch waits for more requests (2 ms)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for the model (default: all cores; 1 can be faster when the host is shared)",
    )
    _runtime_options(p, precision=False)


def _parser_rank(sub: Any) -> None:
    p = sub.add_parser(
        "rank",
        help="rank candidate backbones for a data set by transferability scores (no training)",
        description="Score each backbone's (cached) features on the labelled data and rank them.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument(
        "--backbones",
        required=True,
        help="comma-separated backbones; variants like all-MiniLM-L6-v2:num_layers=2 or NAME:init=random",
    )
    p.add_argument(
        "--scores",
        help="comma-separated subset of logme,knn,hscore,leep,nleep,ridge_loo,probe_cv,sfda,sfda_lw (default: all)",
    )
    p.add_argument(
        "--primary",
        help="the score that orders the table (default: ridge_loo if computed, else the first score)",
    )
    p.add_argument(
        "--shots", type=int, help="score on K examples per class, as a few-shot run would train on"
    )
    p.add_argument("--max-rows", type=int, default=3000, help="stratified sample of at most this many rows")
    p.add_argument(
        "--max-per-class",
        type=int,
        default=16,
        help="then at most this many rows of each class (default: 16, chosen on the development collection "
        "in docs/selection.md; 0: every row)",
    )
    p.add_argument(
        "--resamples", type=int, default=20, help="row subsamples for the stability of the top pick"
    )
    p.add_argument(
        "--metric",
        default="auto",
        choices=["auto", "accuracy", "macro_f1"],
        help="what knn, ridge_loo and probe_cv estimate; auto (default): macro-F1 when the data's largest "
        "class has over 3x the rows of the smallest, else accuracy",
    )
    p.add_argument("--seed", type=int, default=0)
    _runtime_options(p)
    p.add_argument("--cache-dir", help="feature cache folder (default: $WARMSTART_HOME/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", help="also write the ranking to this JSON file")
    _data_options(p)


def _parser_recommend(sub: Any) -> None:
    p = sub.add_parser(
        "recommend",
        help="measure each technique's cost on the data and recommend the best one that fits a budget",
        description="Short calibration fits per candidate technique, best expected accuracy first; those whose "
        "predicted CPU time, trainable parameters and memory fit the limits race on held-out folds of the "
        "labelled rows, and the best is recommended (--no-race: the first that fits).",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    p.add_argument("--shots", type=int, help="the fit will use K examples per class")
    p.add_argument(
        "--candidates", help="comma-separated techniques to consider, in order (default: by data size)"
    )
    p.add_argument("--seed", type=int, default=0)
    _runtime_options(p)
    _budget_options(p)
    _data_options(p)


def _parser_push(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="upload an artifact to a Hugging Face hub model repository (its README.md is the model card)",
        description="Upload every file of an artifact, hash-checked first, to a hub model repository in one "
        "commit (the repository is created when missing). The token comes from HF_TOKEN or `hf auth login`; "
        "HF_ENDPOINT points at another hub.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("repo_id", help="NAME or ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", help="commit message (default: Upload warmstart artifact NAME)")


def _parser_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="20 Newsgroups few-shot: MiniLM-L6 probe, probe + words, TF-IDF + LR",
        description="Few-shot 20 Newsgroups on packaged data: the probe, the probe with word features, and a "
        "TF-IDF baseline on the same rows.",
    )
    p.add_argument("--shots", default="8,64", help="comma-separated examples per class (default: 8,64)")
    p.add_argument(
        "--test-rows",
        type=int,
        default=1000,
        help="a stratified sample of this many test documents (default: 1000; 0: all 7,528)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--backbone",
        default="all-MiniLM-L6-v2:max_length=128",
        help="default: all-MiniLM-L6-v2 reading 128 tokens of each document (docs/getting-started.md)",
    )
    _runtime_options(p)
    p.add_argument("--output", default="runs/demo", help="where the demo's artifacts go (default: runs/demo)")


def _parser_listings(sub: Any) -> None:
    """The commands that list or tidy what is installed: clean, backbones, techniques, datasets."""
    p = sub.add_parser(
        "clean", help="list (or remove) checkpoints of interrupted runs that were never resumed"
    )
    p.add_argument("--older-than", type=float, default=24.0, help="hours since last written (default: 24)")
    p.add_argument("--remove", action="store_true", help="delete them")
    p.add_argument("--checkpoint-dir", help="default: $WARMSTART_HOME/checkpoints")
    p = sub.add_parser("backbones", help="list registered backbones")
    p = sub.add_parser("techniques", help="list techniques (and their parameters with -v)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every parameter and its default")
    p = sub.add_parser("datasets", help="list packaged real data sets")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart",
        description="Transfer learning for text and images.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"warmstart {__import__('warmstart').__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _parser_fit(sub)
    _parser_predict(sub)
    _parser_study(sub)
    _parser_report(sub)
    _parser_forecast(sub)
    _parser_suggest(sub)
    _parser_distill(sub)
    _parser_adapt(sub)
    _parser_export(sub)
    _parser_serve(sub)
    _parser_rank(sub)
    _parser_recommend(sub)
    _parser_push(sub)
    _parser_listings(sub)
    _parser_demo(sub)
    return parser
