"""One self-contained folder per trained model: config, labels, safetensors weights, backbone, metrics.

Layout::

    warmstart.json        format version, technique name and hyperparameters, modality
    labels.json           class names in head order (JSON strings; integers or booleans where fit was given those)
    backbone.json         backbone reference (name, source, fingerprint) and preprocessing
    backbone/             the backbone's own weights (with embed_backbone=True, and always when training changed them)
    head.safetensors      trained tensors (no pickle anywhere)
    config.json           the resolved run config (data, split sizes, shots, seed, ...)
    splits.json           the row indices of each split, so the run can be reproduced
    metrics.json          accuracy, macro-F1, per-class report, confusion matrix, timings
    README.md             the model card: Hugging Face metadata, labels, metrics with a 95% interval, cost, limits
    manifest.json         sha256 of every file above; checked on load

The folder is built under a temporary name and renamed into place, so a crash never leaves half an artifact.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from . import model_card
from ._io import atomic_write_bytes, atomic_write_json, sha256_file, staged_folder
from .backbones import get_backbone
from .errors import ArtifactError
from .techniques import Technique, available_techniques
from .techniques.base import plain_classes

FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


def save_artifact(
    est: Technique,
    folder: str | os.PathLike,
    *,
    metrics: dict | None = None,
    config: dict | None = None,
    splits: dict | None = None,
    embed_backbone: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a fitted technique and its run records to ``folder`` atomically. An existing ``folder`` is replaced
    only when it is a warmstart artifact or empty, or when ``overwrite`` is given (``check_output``)."""
    folder = Path(folder)
    check_output(folder, overwrite)
    with staged_folder(folder) as tmp:
        bb = est.backbone_
        params = {k: v for k, v in est.get_params().items() if k != "backbone"}
        meta = {
            "format_version": FORMAT_VERSION,
            "technique": est.name,
            "params": params,
            "fitted": _fitted(est),
            "modality": bb.modality,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(tmp / "warmstart.json", meta)
        # the classes as fit saw them: a model trained on integer labels predicts integers after loading too
        classes = plain_classes(est.classes_)
        atomic_write_json(tmp / "labels.json", classes)
        ref, embed_backbone = est.backbone_record(embed_backbone)
        ref["embedded"] = embed_backbone
        ref["preprocess"] = bb.preprocess_config()
        atomic_write_json(tmp / "backbone.json", ref)
        card = model_card.render(meta, classes, ref, metrics, config)
        atomic_write_bytes(tmp / "README.md", card.encode())
        if embed_backbone:
            bb.save(tmp / "backbone")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in est.tensors().items()},
            str(tmp / "head.safetensors"),
        )
        for name, obj in (("config.json", config), ("splits.json", splits), ("metrics.json", metrics)):
            if obj is not None:
                atomic_write_json(tmp / name, obj)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        atomic_write_json(tmp / "manifest.json", {str(p.relative_to(tmp)): sha256_file(p) for p in files})
    return folder


def _fitted(est: Technique) -> dict:
    """What fit chose (``fitted_config``), and the rounds of self-training when it made this model."""
    fitted = dict(est.fitted_config())
    if getattr(est, "self_training_", None):
        fitted["self_training"] = est.self_training_
    return fitted


def is_artifact(folder: Path) -> bool:
    return (folder / "warmstart.json").is_file() and (folder / "manifest.json").is_file()


def check_output(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an output location that would lose a user's files or cannot be written, before any work is done.

    A folder that exists is only replaced when it is a warmstart artifact or empty; anything else (a folder with
    other files, a file, the current directory) needs ``overwrite``. The parent must be writable.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        if not folder.is_dir():
            raise ArtifactError(
                f"{folder}: is a file, not an artifact folder; choose another --output (or pass --overwrite to "
                f"replace it)."
            )
        if not is_artifact(folder) and any(folder.iterdir()):
            raise ArtifactError(
                f"{folder}: exists and is not a warmstart artifact, so writing there would delete its files; "
                f"choose another --output (or pass --overwrite to replace the folder and everything in it)."
            )
    if folder.resolve() in (Path.cwd().resolve(), Path.home().resolve(), Path("/")):
        raise ArtifactError(
            f"{folder}: the artifact needs a folder of its own; give --output a new folder name."
        )
    check_writable(folder)


def check_writable(target: str | os.PathLike) -> None:
    """Refuse, before any work, an output path whose nearest existing folder cannot take a new file: it is tried
    for real (a read-only mount or a folder without write permission fails here, not after a whole training)."""
    target = Path(target)
    probe = target.resolve().parent
    while not probe.exists():  # the nearest folder that exists must let us create the rest
        probe = probe.parent
    if not probe.is_dir():
        raise ArtifactError(f"{target}: {probe} is a file, not a folder; choose another output path.")
    try:
        fd, name = tempfile.mkstemp(prefix=".warmstart-probe-", dir=probe)
    except OSError as e:
        raise ArtifactError(
            f"{target}: cannot write in {probe} ({e.strerror or e}); choose an output where you can write."
        ) from e
    os.close(fd)
    os.unlink(name)


def verify_artifact(folder: str | os.PathLike) -> dict[str, str]:
    """Check every file against manifest.json; raise ArtifactError naming the first problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(
            f"{folder}: no such artifact folder. Pass the --output folder of `warmstart fit`."
        )
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{folder}: no manifest.json, so this is not a complete warmstart artifact "
            f"(half-written or another tool's folder). Re-run `warmstart fit`."
        )
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        raise ArtifactError(
            f"{manifest_path}: not a manifest (a JSON object of file -> sha256); the artifact is damaged. "
            f"Re-run `warmstart fit`."
        )
    present = list(folder.rglob("*"))  # walked once for both checks below
    for p in present:
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise ArtifactError(
                f"{p}: a pickle-format file ({p.suffix}) inside the artifact. warmstart saves only JSON and "
                f"safetensors, and loading pickle could run code; remove the file or re-run `warmstart fit`."
            )
    unlisted = sorted(
        str(p.relative_to(folder))
        for p in present
        if p.is_file() and p != manifest_path and str(p.relative_to(folder)) not in manifest
    )
    if unlisted:
        raise ArtifactError(
            f"{folder / unlisted[0]}: not part of the artifact as saved ({len(unlisted)} unlisted file(s)); "
            f"something added it. Remove it, or re-run `warmstart fit`."
        )
    for rel, digest in manifest.items():
        p = folder / rel
        if not p.is_file():
            raise ArtifactError(
                f"{p}: listed in the manifest but missing; the artifact is incomplete. "
                f"Re-run `warmstart fit` or restore the file."
            )
        if sha256_file(p) != digest:
            raise ArtifactError(
                f"{p}: contents differ from the hash recorded at save time; the artifact was "
                f"modified or damaged. Re-run `warmstart fit` or restore the original file."
            )
    return manifest


def load_artifact(folder: str | os.PathLike, *, verify: bool = True, device: str = "auto") -> Technique:
    """Load a fitted technique that predicts exactly as it did when saved (in the precision it was trained
    with), on ``device`` (default: a GPU where there is one; where it was trained does not matter).

    Example:
        >>> import tempfile
        >>> from warmstart import get_technique, save_artifact
        >>> texts = ["free cash prize", "win money now", "see you at lunch", "call me later"]
        >>> est = get_technique("probe", backbone="paraphrase-MiniLM-L3-v2", progress=False)
        >>> folder = save_artifact(est.fit(texts, ["spam", "spam", "ham", "ham"]), tempfile.mkdtemp() + "/sms")
        >>> model = load_artifact(folder)
        >>> model.predict(["free entry to win cash"]).tolist() == est.predict(["free entry to win cash"]).tolist()
        True
    """
    folder = Path(folder)
    if verify:
        verify_artifact(folder)
    meta = _read_json(folder / "warmstart.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("technique"), str) or "params" not in meta:
        raise ArtifactError(
            f"{folder / 'warmstart.json'}: lacks the technique or its parameters; the artifact is damaged."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{folder}: artifact format {meta.get('format_version')} is not supported by this "
            f"warmstart (expects {FORMAT_VERSION})."
        )
    techniques = available_techniques()
    if meta["technique"] not in techniques:
        raise ArtifactError(
            f"{folder}: technique {meta['technique']!r} is not available in this installation."
        )
    ref = _read_json(folder / "backbone.json")
    backbone = get_backbone(str(folder / "backbone")) if ref.get("embedded") else _find_backbone(ref)
    if backbone.fingerprint() != ref["fingerprint"]:
        raise ArtifactError(
            f"{folder}: the backbone {ref['source']!r} found now has different weights or preprocessing than the "
            f"one this model was trained on (fingerprint {backbone.fingerprint()} != {ref['fingerprint']}). "
            f"Install the original backbone, or re-fit with --embed-backbone to keep it inside the artifact."
        )
    try:
        tensors = load_file(str(folder / "head.safetensors"))
    except Exception as e:  # safetensors raises its own error type for a damaged header or payload
        raise ArtifactError(f"{folder / 'head.safetensors'}: not a readable safetensors file ({e}).") from e
    params = _upgrade_params(meta["params"])
    if "device" in params:
        params["device"] = device
    est = techniques[meta["technique"]].from_saved(
        params, tensors, _read_json(folder / "labels.json"), backbone, fitted=meta.get("fitted")
    )
    # the temperature is already folded into the saved head; recorded for the model card and the curious
    est.temperature_ = (meta.get("fitted") or {}).get("temperature")
    return est


def artifact_modality(folder: str | os.PathLike) -> str:
    """What the artifact in ``folder`` reads, ``"text"`` or ``"image"``, from its ``warmstart.json`` alone (no
    weights are loaded)."""
    path = Path(folder) / "warmstart.json"
    meta = _read_json(path)
    if not isinstance(meta, dict) or meta.get("modality") not in ("text", "image"):
        raise ArtifactError(f"{path}: names no modality (text or image); the artifact is damaged.")
    return meta["modality"]


def held_out(folder: str | os.PathLike, test: str | None = None, columns: Any = None) -> Any:
    """The rows an export is checked on: ``test`` (a data spec; a packaged name means its test split), else the
    test rows of the data the artifact was fitted on, found again from its ``config.json`` and ``splits.json``."""
    from .data import PACKAGED
    from .data.load import Columns, load

    folder = Path(folder)
    columns = columns or Columns()
    if test:
        data, packaged_test = load(test, columns)
        return packaged_test if test in PACKAGED and packaged_test is not None else data
    config_path = folder / "config.json"
    rec = (json.loads(config_path.read_text()).get("record") if config_path.is_file() else None) or {}
    if rec.get("test"):  # the test rows it was measured on (a distilled student's --test, say)
        return held_out(folder, rec["test"], _recorded_columns(rec, columns))
    if not rec.get("data"):
        raise ArtifactError(
            f"{folder}: the artifact does not say which data it was fitted on; pass the held-out rows "
            f"with --test FILE (or a packaged data set name)."
        )
    saved = _recorded_columns(rec, columns)
    data, packaged_test = load(rec["data"], saved)
    if packaged_test is not None:
        return packaged_test
    splits = json.loads((folder / "splits.json").read_text())
    return data.subset(splits["test"])


def training_rows(folder: str | os.PathLike) -> Any:
    """The rows the artifact was fitted on, found again from its ``config.json`` and ``splits.json`` (the data
    must still be where the fit read it); None when the artifact does not say."""
    from .data.load import Columns, load

    folder = Path(folder)
    config_path, splits_path = folder / "config.json", folder / "splits.json"
    if not (config_path.is_file() and splits_path.is_file()):
        return None
    rec = json.loads(config_path.read_text()).get("record") or {}
    train = json.loads(splits_path.read_text()).get("train")
    if not rec.get("data") or train is None:
        return None
    data, _ = load(rec["data"], _recorded_columns(rec, Columns()))
    return data.subset(train)


def _recorded_columns(rec: dict, columns: Any) -> Any:
    """The data options a fit was run with, from its ``config.json`` record (an older record may lack some:
    ``columns``' values then)."""
    from dataclasses import replace

    return replace(columns, **{k: rec[k] for k in vars(columns) if k in rec})


def _upgrade_params(params: dict) -> dict:
    """Parameters saved by an older warmstart, in today's names: ``bf16`` became ``precision``."""
    params = dict(params)
    if "bf16" in params:
        old = params.pop("bf16")
        params.setdefault("precision", "auto" if old == "auto" else ("bf16" if old else "fp32"))
    return params


def _find_backbone(ref: dict) -> Any:
    try:
        return get_backbone(ref["source"])
    except Exception:
        if ref.get("name") and ref["name"] != ref["source"]:
            return get_backbone(ref["name"])
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing; the artifact is incomplete. Re-run `warmstart fit`.") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); the artifact is damaged.") from e
