"""ONNX export of a whole trained pipeline, checked against PyTorch before it is kept.

``export_onnx(artifact)`` writes one folder::

    model.onnx            backbone (adapter merged) + head + softmax (sigmoid for multi-label): inputs -> probabilities
    model.int8.onnx       the same, weights dynamically quantised to int8 (with ``int8=True``)
    tokenizer/            text: the tokenizer (tokenizer.json and its config), run before the graph
    preprocess.json       how to turn raw inputs into the graph's inputs (see below)
    labels.json           class names in output order
    export.json           parity, accuracy and throughput figures measured at export time
    manifest.json         sha256 of every file above; checked by ``OnnxModel``

Graph inputs. Text: ``input_ids`` and ``attention_mask``, int64 ``(batch, tokens)``, from the saved tokenizer
with truncation to ``max_length`` tokens and right padding with ``pad_id`` (both in preprocess.json). Images:
``pixels``, float32 ``(batch, 3, size, size)``, RGB values 0-255 after a bilinear resize to ``size``; the
normalisation ``(x - mean) / std`` is inside the graph. ``OnnxModel`` does this preprocessing with
``tokenizers`` and Pillow only, so a deployment needs neither torch nor warmstart's training code.

The parity check runs the artifact in PyTorch (fp32) and the exported folder through ``OnnxModel`` (its own
tokenizer or image preprocessing) on the same held-out rows, and refuses the export unless the largest
absolute difference of any probability is at most ``atol`` and every row's most probable class is the same. A
model that fails it may be one whose fp32 result is that sensitive to rounding; it still passes if, against the
same model computed in fp64, the ONNX model is within ten times PyTorch fp32's own distance, with fp64's top
class on every row but near ties (``_check_parity``).
The int8 model is lossy by design: its agreement and the accuracy change it causes on the labelled rows are
measured and reported, not required.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import atomic_write_json, sha256_file, staged_folder
from .errors import ArtifactError, ExportError

EXPORT_FORMAT = 1
OPSET = 17
INT8_OPS = {
    "image": ("MatMul", "Gemm")
}  # modalities not listed: every op onnxruntime can quantise dynamically


class _Pipeline(nn.Module):
    """Positional graph inputs -> class probabilities, for ``torch.onnx.export``; ``pieces``: the logits of a
    probe's TF-IDF of token ids (``PieceLogits``), added to the head's."""

    def __init__(
        self, backbone: Any, head: nn.Module, multilabel: bool, pieces: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.body = backbone.module
        self.head = head
        self.backbone = backbone
        self.multilabel = multilabel
        self.pieces = pieces

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feats = self.backbone.graph_features(*inputs)  # the backbone says what its graph's inputs are
        logits = self.head(feats).float()
        if self.pieces is not None:
            logits = logits + self.pieces(*inputs)
        return logits.sigmoid() if self.multilabel else logits.softmax(-1)


class PieceLogits(nn.Module):
    """A probe's word part (``lexical="pieces"``) in graph form: ``(input_ids, attention_mask)`` -> the logits of
    TF-IDF of the ids, the numbers ``lexical.PieceTfidf`` and ``lexical_coef_`` give in Python, computed per
    position: each row's count of every id by one scatter-add (a ``(batch, V + 1)`` tensor whose last column takes
    padding and ids outside the vocabulary, with idf and weights 0), read back at each position (``c``); a
    position then holds ``t = (1 + log c) * idf`` of its id, a row's TF-IDF norm is ``sqrt(sum(t**2 / c))`` (each
    distinct id is counted ``c`` times) and its logits are ``sum(t / c * weight[id]) / norm``. Only the scatter
    touches all V columns; the rest is per position."""

    def __init__(self, ids: np.ndarray, idf: np.ndarray, coef: torch.Tensor) -> None:
        super().__init__()
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        V = len(ids)
        # column of each token id up to the largest in the vocabulary, then one entry for every larger id
        column = torch.full((int(ids.max()) + 2,), V, dtype=torch.long)
        column[ids] = torch.arange(V)
        idf = torch.cat([torch.as_tensor(np.asarray(idf), dtype=torch.float32), torch.zeros(1)])
        weight = torch.cat([coef.detach().float().t(), torch.zeros(1, coef.shape[0])])  # (V + 1, classes)
        self.register_buffer("column", column)
        self.register_buffer("idf", idf)
        self.register_buffer("weight", weight.contiguous())

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: torch.Tensor
    ) -> torch.Tensor:
        V = self.idf.shape[0] - 1
        cols = self.column[input_ids.clamp(0, self.column.shape[0] - 1)]
        cols = torch.where(attention_mask > 0, cols, torch.full_like(cols, V))
        ones = torch.ones_like(cols, dtype=torch.float32)
        counts = torch.zeros(input_ids.shape[0], V + 1, dtype=torch.float32, device=input_ids.device)
        c = counts.scatter_add(1, cols, ones).gather(1, cols)  # (batch, tokens): each position's id's count
        t = (1.0 + torch.log(c)) * self.idf[cols]
        norm = (t * t / c).sum(1, keepdim=True).sqrt().clamp(min=1e-12)
        return ((t / c).unsqueeze(-1) * self.weight[cols]).sum(1) / norm


def _pipeline(est: Any) -> _Pipeline:
    """A standalone fp32 copy of the fitted model: merged adapter, head, output activation."""
    pieces = None
    if getattr(est, "lexical_coef_", None) is not None:
        if getattr(est, "lexical", "tfidf") != "pieces":
            raise ExportError(
                "this probe also reads TF-IDF of the words (lexical='tfidf'), which the exported graph cannot "
                "compute from token ids; serve the artifact itself (warmstart serve / predict), or refit with "
                "lexical='pieces' (TF-IDF of the token ids, which the graph computes) or lexical='none'."
            )
        inputs = est.backbone_.export_example()[1]
        if inputs[:2] != ["input_ids", "attention_mask"]:
            raise ExportError(
                f"this probe reads TF-IDF of token ids (lexical='pieces'), but its backbone's graph starts from "
                f"{inputs}, not token ids; serve the artifact itself (warmstart serve / predict), or refit with "
                f"lexical='none'."
            )
        pieces = PieceLogits(est.words_.ids, est.words_.idf, est.lexical_coef_)
    model = getattr(est, "model_", None)
    multilabel = bool(getattr(est, "multilabel_", False))
    if model is None:  # the probe: cached-feature head on the frozen backbone
        backbone, head = copy.deepcopy(est.backbone_), copy.deepcopy(est.head_)
    else:
        model = copy.deepcopy(model)
        backbone, head = model.backbone, model.head
        if hasattr(backbone.module, "merge_and_unload"):  # an unmerged peft adapter: fold it in for export
            backbone.module = backbone.module.merge_and_unload()
    pipe = _Pipeline(backbone, head, multilabel, pieces).float().eval()
    for p in pipe.parameters():
        p.requires_grad_(False)
    return pipe


@dataclass
class ExportReport:
    """What ``export_onnx`` measured; also written to export.json."""

    folder: str
    rows: int
    parity: dict[str, dict[str, float]]
    accuracy: dict[str, float] | None
    rows_per_second: dict[str, float]
    atol: float
    onnx_bytes: dict[str, int]
    versions: dict[str, str] = field(default_factory=dict)
    # how the artifact itself predicts on this machine where that is not fp32 (``as_it_predicts``), else None
    artifact: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"exported to {self.folder} (checked on {self.rows} held-out rows)"]
        for name, p in self.parity.items():
            lines.append(
                f"  {name:5s} vs PyTorch: max |dp| {p['max_abs_diff']:.2e}, same top class on "
                f"{p['argmax_agreement']:.2%} of rows, {self.rows_per_second[name]:.0f} rows/s "
                f"({self.onnx_bytes[name] / 1e6:.1f} MB)"
            )
            if p.get("reference") == "torch fp64":
                lines.append(
                    f"        vs the model in fp64: max |dp| {p['fp64_max_abs_diff']:.2e} (allowed "
                    f"{p['allowed']:.2e}, {NOISE_FACTOR:g} times PyTorch fp32's own {p['torch_fp32_vs_fp64']:.2e}), "
                    f"its top class on every row but {p['fp64_near_ties_flipped']} near tie(s)"
                )
        lines.append(f"  torch fp32: {self.rows_per_second['torch']:.0f} rows/s")
        if self.accuracy:
            acc = "   ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
            lines.append(f"  accuracy on the labelled rows: {acc}")
        if self.artifact:
            lines.extend(self._artifact_lines())
        return "\n".join(lines)

    def _artifact_lines(self) -> list[str]:
        a = self.artifact or {}
        acc = f" (accuracy {a['accuracy']:.4f})" if a.get("accuracy") is not None else ""
        lines = [
            f"  the artifact itself predicts in {a['precision']} here: the export's top class on "
            f"{a['argmax_agreement']:.2%} of rows{acc}"
        ]
        if a["argmax_agreement"] < AGREEMENT_NOTE:
            lines.append(
                f"  note: the export computes in fp32 and matches the model there; the {a['precision']} rounding "
                f"of the artifact's own predictions\n  moves this model's top class on "
                f"{1 - a['argmax_agreement']:.1%} of rows. Where the export must predict what warmstart itself "
                f"predicted, refit with --precision fp32."
            )
        return lines


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Drop onnxruntime's generic "consider pre-processing before quantization" warning, and only it.

    The quantizer logs it with the module-level ``logging.warning``, which goes to the root logger and, when the
    root has no handler, installs one with ``basicConfig``. A filter drops that one record and a placeholder
    handler stops ``basicConfig``, both for this block only: the root logger's level, handlers and every other
    record stay as the user set them.
    """
    import logging

    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    if guard is not None:
        root.addHandler(guard)
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if guard is not None:
            root.removeHandler(guard)


def held_out_rows(src: Path, data: Any, modality: str, max_rows: int) -> Any:
    """The rows an export is checked on: ``data`` as a ``Dataset``, evenly thinned to at most ``max_rows``."""
    from .data.inputs import as_dataset

    if data is None:
        raise ExportError(
            f"{src}: the parity check needs held-out inputs; pass the test data (--test FILE or a packaged name)."
        )
    rows = as_dataset(data, modality=modality)
    if len(rows) == 0:
        raise ExportError("the parity check needs at least one held-out row; the data given is empty.")
    if len(rows) > max_rows:
        rows = rows.subset(np.unique(np.linspace(0, len(rows) - 1, max_rows).round().astype(np.int64)))
    return rows


@contextlib.contextmanager
def staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``out`` to build an export in: renamed into place (replacing ``out``) when the
    block ends normally, removed when it raises, so a failed check never leaves half an export."""
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists; choose another --output.")
    with staged_folder(out) as tmp:
        yield tmp


def export_onnx(
    artifact: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    data: Any = None,
    int8: bool = False,
    atol: float = 1e-4,
    max_rows: int = 2000,
    batch_size: int = 32,
    rounds: int = 3,
    overwrite: bool = True,
) -> ExportReport:
    """Export ``artifact`` to ONNX in ``output`` (default: ``<artifact>-onnx`` beside it), check parity on the
    held-out rows ``data`` (a Dataset or a list of inputs; at most ``max_rows`` of them, evenly spaced), and
    raise ``ExportError`` without writing anything if parity fails. Throughput (rows/s) of PyTorch fp32 and of
    each ONNX model is the median of ``rounds`` interleaved passes over those rows.

    Its steps live in helpers; what stays here is their order, inside the one staged folder that is removed on
    any failure (hence one function of about 70 lines).

    Example:
        >>> import tempfile
        >>> from warmstart import get_technique, save_artifact
        >>> texts = ["free cash prize", "win money now", "see you at lunch", "call me later"]
        >>> est = get_technique("probe", backbone="paraphrase-MiniLM-L3-v2", progress=False)
        >>> folder = save_artifact(est.fit(texts, ["spam", "spam", "ham", "ham"]), tempfile.mkdtemp() + "/sms")
        >>> report = export_onnx(folder, data=texts + ["free entry", "lunch?"], rounds=1)
        >>> report.rows, sorted(report.parity)
        (6, ['fp32'])
    """
    import onnxruntime

    from .artifact import load_artifact, verify_artifact

    src = Path(artifact)
    manifest = verify_artifact(src)
    # traced and checked on the CPU in fp32 whatever device trained it: the graph is device-neutral, and the
    # reference must be the exact model, not a mixed-precision run of it
    est = load_artifact(src, verify=False, device="cpu")
    bb = est.backbone_
    rows = held_out_rows(src, data, bb.modality, max_rows)
    out = Path(output) if output is not None else src.with_name(src.name + "-onnx")
    with staged(out, overwrite) as tmp:
        pipe = _pipeline(est)
        pre = _write_preprocessing(bb, tmp)
        atomic_write_json(tmp / "labels.json", [str(c) for c in est.classes_])
        _torch_export(pipe, bb, tmp / "model.onnx")
        files = {"fp32": tmp / "model.onnx"}
        if int8:
            files["int8"] = _quantize(tmp / "model.onnx", tmp / "model.int8.onnx", bb.modality)
        ref, probas, speed = _run_both(pipe, bb, rows, tmp, files, batch_size, rounds)
        parity = {
            name: {
                "max_abs_diff": float(np.abs(p - ref).max()),
                "argmax_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
            }
            for name, p in probas.items()
        }
        _check_parity(
            src,
            parity["fp32"],
            probas["fp32"],
            ref,
            lambda: _torch_proba(pipe, bb, rows, batch_size, torch.float64),
            atol,
        )
        report = ExportReport(
            artifact=as_it_predicts(est, rows, probas["fp32"]),
            folder=str(out),
            rows=len(rows),
            parity=parity,
            accuracy=_accuracy(rows, est.classes_, {"torch": ref, **probas}),
            rows_per_second={k: round(v, 1) for k, v in speed.items()},
            atol=atol,
            onnx_bytes={k: v.stat().st_size for k, v in files.items()},
            versions={
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "opset": str(OPSET),
                "threads": str(torch.get_num_threads()),
            },
        )
        record = {
            "format": EXPORT_FORMAT,
            "source_artifact": str(src.resolve()),
            "source_manifest_sha256": _digest(manifest),
            "technique": est.name,
            "backbone": bb.reference(),
            "multilabel": bool(getattr(est, "multilabel_", False)),
            "threshold": getattr(est, "threshold", 0.5),
            "int8_ops": list(INT8_OPS.get(bb.modality, ["all"])) if int8 else None,
            "preprocess": pre,
        }
        _write_records(tmp, {**record, **report.to_dict()})
    return report


# how many times PyTorch fp32's own rounding error (against fp64) the ONNX model's may be, where the direct check
# fails: the graph computes the same function in fp32 in another order, with BatchNorm folded into the convolution
# weights by the exporter (3.8 times PyTorch's error, measured on an EfficientNet-Lite0 whose BatchNorm statistics came from
# MNIST digits); a wrong head or preprocessing is off by far more than ten times rounding error
NOISE_FACTOR = 10.0


def _check_parity(src: Path, fp: dict, onnx: np.ndarray, ref: np.ndarray, exact: Any, atol: float) -> None:
    """Refuse the export (``ExportError``) unless the ONNX probabilities ``onnx`` match PyTorch fp32's ``ref``:
    every difference at most ``atol`` and the same top class on every row. Where that fails, the model may be
    one whose fp32 result is that sensitive to rounding (a deep network whose head reads features of tiny
    spread): then both are compared with the same model in fp64 (``exact()``), and the export passes when the
    ONNX model is within ``allowed`` = max(``atol``, ``NOISE_FACTOR`` times PyTorch fp32's own distance from
    fp64) and has fp64's top class on every row but near ties (rows where fp64's probability of ONNX's top
    class is within ``allowed`` of its own top class's). ``fp`` (the fp32 parity record) gains what that
    comparison measured."""
    if fp["max_abs_diff"] <= atol and fp["argmax_agreement"] == 1.0:
        return
    p64 = np.asarray(exact(), dtype=np.float64)
    noise = float(np.abs(ref - p64).max())
    rows = np.arange(len(p64))
    flipped = onnx.argmax(1) != p64.argmax(1)
    gap = p64[rows, p64.argmax(1)] - p64[rows, onnx.argmax(1)]
    fp.update(
        reference="torch fp64",
        fp64_max_abs_diff=float(np.abs(onnx - p64).max()),
        fp64_argmax_agreement=float(1.0 - flipped.mean()),
        torch_fp32_vs_fp64=noise,
        allowed=max(atol, NOISE_FACTOR * noise),
    )
    fp["fp64_near_ties_flipped"] = int((flipped & (gap <= fp["allowed"])).sum())
    far = int((flipped & (gap > fp["allowed"])).sum())
    if fp["fp64_max_abs_diff"] <= fp["allowed"] and far == 0:
        return
    raise ExportError(
        f"{src}: the ONNX model does not reproduce PyTorch on {len(ref)} held-out rows: max |dp| "
        f"{fp['max_abs_diff']:.3g} (allowed {atol:g}), same top class on {fp['argmax_agreement']:.2%} of rows "
        f"(required 100%); against the model in fp64 max |dp| {fp['fp64_max_abs_diff']:.3g} (allowed "
        f"{fp['allowed']:.3g}: {NOISE_FACTOR:g} times PyTorch fp32's own {noise:.3g}), another top class on "
        f"{far} row(s) that are not near ties. Nothing was written. Report this with the backbone and technique."
    )


def _write_records(folder: Path, export: dict) -> None:
    """export.json, then the manifest: the sha256 of every file of the export."""
    atomic_write_json(folder / "export.json", export)
    listed = sorted(p for p in folder.rglob("*") if p.is_file())
    atomic_write_json(folder / "manifest.json", {str(p.relative_to(folder)): sha256_file(p) for p in listed})


def _quantize(fp32: Path, int8: Path, modality: str) -> Path:
    """The dynamically int8-quantised copy of ``fp32``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        # per-channel weight scales: on TREC (MiniLM-L6, LP-FT) per-tensor int8 lost 1.8 points of
        # accuracy and per-channel 0.05, at the same speed. Convolutions stay fp32: onnxruntime's
        # dynamic ConvInteger lost 14 to 19 points on EfficientNet-Lite0 and ran 3 to 6 times slower
        # (docs/deploy.md), so image models get int8 matrix products only
        quantize_dynamic(
            str(fp32),
            str(int8),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(INT8_OPS[modality]) if modality in INT8_OPS else None,
        )
    return int8


def _run_both(
    pipe: _Pipeline, bb: Any, rows: Any, folder: Path, files: dict[str, Path], batch_size: int, rounds: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """The reference probabilities (the artifact's own PyTorch pipeline in fp32, batched the way OnnxModel
    batches), each ONNX model's, and rows/s of each: the median of ``rounds`` passes, the passes interleaved."""
    runners = {"torch": lambda: _torch_proba(pipe, bb, rows, batch_size)}
    for name, path in files.items():
        model = OnnxModel(folder, model_file=path.name, verify=False, batch_size=batch_size, device="cpu")
        model.predict_proba(rows.inputs[: min(len(rows), batch_size)])  # session warm-up, untimed
        runners[name] = lambda m=model: m.predict_proba(rows.inputs)
    seconds: dict[str, list[float]] = {k: [] for k in runners}
    probas: dict[str, np.ndarray] = {}
    for _ in range(max(1, rounds)):
        for name, run in runners.items():
            start = time.perf_counter()
            probas[name] = run()
            seconds[name].append(time.perf_counter() - start)
    speed = {k: len(rows) / float(np.median(v)) for k, v in seconds.items()}
    ref = probas.pop("torch")
    return ref, probas, speed


# below this share of rows with the export's top class, the report explains the artifact's own precision
AGREEMENT_NOTE = 0.99


def as_it_predicts(est: Any, rows: Any, exported: np.ndarray) -> dict[str, Any] | None:
    """How the artifact itself predicts ``rows`` on this machine, where that is not in fp32 (precision ``auto`` is
    bf16 on CPUs and GPUs that compute it natively): the share of rows where its top class (multi-label: its
    label set) is the fp32 export's (``exported``), and its accuracy where the rows carry single labels. None
    where it predicts in fp32, as the export's reference does.

    The parity check compares the export with the same model in fp32; a model trained and tested in bf16 is
    what the artifact's own metrics describe, and some models move with that rounding (a small fine-tuned CNN
    whose BatchNorm statistics come from a few hundred images moved its top class on 2 to 15% of rows)."""
    from .runtime import resolve

    params = est.get_params()
    rt = resolve(params.get("device", "cpu"), params.get("precision", "fp32"))
    if rt.precision == "fp32":
        return None
    own = est.predict_proba(rows)
    if getattr(est, "multilabel_", False):
        t = getattr(est, "threshold", 0.5)
        agree = ((own >= t) == (exported >= t)).all(1)
    else:
        agree = own.argmax(1) == exported.argmax(1)
    acc = _accuracy(rows, est.classes_, {"own": own})
    return {
        "precision": rt.precision,
        "argmax_agreement": float(agree.mean()),
        "accuracy": acc["own"] if acc else None,
    }


def _accuracy(rows: Any, classes: Any, probas: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Each model's accuracy on the held-out rows, where they carry single labels."""
    if rows.labels is None or rows.multilabel:
        return None
    truth = np.asarray([str(v) for v in rows.labels])
    names = np.asarray([str(c) for c in classes])
    return {k: float((names[p.argmax(1)] == truth).mean()) for k, p in probas.items()}


def _digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _write_preprocessing(bb: Any, folder: Path) -> dict:
    pre = bb.export_preprocessing(folder)
    atomic_write_json(folder / "preprocess.json", pre)
    return pre


def _torch_export(pipe: _Pipeline, bb: Any, path: Path) -> None:
    import warnings

    args, names, axes = bb.export_example()
    axes["probabilities"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pipe,
            args,
            str(path),
            input_names=names,
            output_names=["probabilities"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _torch_proba(
    pipe: _Pipeline, bb: Any, rows: Any, batch_size: int, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """PyTorch fp32 probabilities with the artifact's own preprocessing (batch_source), length-sorted; with
    ``dtype=torch.float64`` those of a float64 copy of ``pipe``, on float64 inputs (the exact model), kept in
    float64."""
    if dtype != torch.float32:
        pipe = copy.deepcopy(pipe).to(dtype)
    source = bb.batch_source(rows)
    n = len(source)
    order = np.argsort(-source.lengths, kind="stable") if source.lengths is not None else np.arange(n)
    width = pipe.head(torch.zeros(1, bb.num_features, dtype=dtype)).shape[1]
    out = np.empty((n, width), dtype=np.float64 if dtype == torch.float64 else np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            args = [a.to(dtype) if a.is_floating_point() else a for a in bb.graph_args(source.collate(idx))]
            out[idx] = pipe(*args).numpy()
    return out


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``device``: CUDA's where that onnxruntime build has it and the
    device is ``auto`` or a CUDA one, then the CPU's."""
    import onnxruntime as ort

    wants_gpu = device == "auto" or str(device).startswith("cuda")
    if wants_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        from .errors import ParameterError

        raise ParameterError(
            f"device {device!r}: this onnxruntime has no CUDA provider (it has {ort.get_available_providers()}); "
            f"install onnxruntime-gpu, or use device='cpu'."
        )
    return ["CPUExecutionProvider"]


class OnnxModel:
    """An exported folder, run with onnxruntime; preprocessing with ``tokenizers`` or Pillow only.

    Example:
        >>> import tempfile
        >>> from warmstart import get_technique, save_artifact
        >>> texts = ["how far is it", "who is he", "how far away", "who are they"]
        >>> est = get_technique("probe", backbone="paraphrase-MiniLM-L3-v2", progress=False)
        >>> folder = save_artifact(est.fit(texts, ["NUM", "HUM", "NUM", "HUM"]), tempfile.mkdtemp() + "/q")
        >>> report = export_onnx(folder, data=texts, rounds=1)
        >>> m = OnnxModel(report.folder)
        >>> m.predict(["How far is the moon?"]).tolist() == est.predict(["How far is the moon?"]).tolist()
        True
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        model_file: str = "model.onnx",
        verify: bool = True,
        batch_size: int = 32,
        threads: int | None = None,
        device: str = "auto",
    ) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        if verify:
            from .artifact import verify_artifact

            verify_artifact(self.folder)
        path = self.folder / model_file
        if not path.is_file():
            raise ArtifactError(f"{path}: no such model in the export folder (export with --int8 for int8).")
        self.pre = json.loads((self.folder / "preprocess.json").read_text())
        self.classes = np.asarray(json.loads((self.folder / "labels.json").read_text()))
        meta_path = self.folder / "export.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.multilabel = bool(meta.get("multilabel", False))
        self.threshold = float(meta.get("threshold", 0.5))
        self.batch_size = batch_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=onnx_providers(device))
        self.modality = self.pre["modality"]
        if self.modality == "text":
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(self.folder / self.pre["tokenizer"]))
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(int(self.pre["max_length"]))

    def _text_batches(self, texts: list[str]):
        ids = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        order = np.argsort(-np.fromiter((len(x) for x in ids), np.int64, len(ids)), kind="stable")
        pad = int(self.pre["pad_id"])
        for start in range(0, len(ids), self.batch_size):
            idx = order[start : start + self.batch_size]
            longest = max(len(ids[i]) for i in idx)
            input_ids = np.full((len(idx), longest), pad, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            for r, i in enumerate(idx):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            yield idx, {"input_ids": input_ids, "attention_mask": mask}

    def pixels(self, image: Any) -> np.ndarray:
        """One image (path, PIL image or (H, W, 3) uint8 array) as the graph's (3, S, S) float32 input."""
        from PIL import Image

        from .data.image import read_image, to_rgb8

        if isinstance(image, (str, os.PathLike)):
            arr = read_image(image)  # the same decoding, scaling and pixel limit as training
        elif isinstance(image, Image.Image):
            arr = to_rgb8(image)
        else:
            arr = np.asarray(image)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
                raise ValueError(
                    f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}."
                )
            arr = np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr[..., :3]
        if "geometry" in self.pre:
            from .backbones.image import ImagePreprocess

            arr = ImagePreprocess.from_dict(self.pre["geometry"]).geometry(arr.astype(np.uint8))
        else:  # exports before the geometry was recorded: a square bilinear resize
            s = int(self.pre["size"])
            if arr.shape[0] != s or arr.shape[1] != s:
                arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((s, s), Image.BILINEAR))
        return np.ascontiguousarray(arr.astype(np.float32).transpose(2, 0, 1))

    def _image_batches(self, images: Any):
        n = len(images)
        for start in range(0, n, self.batch_size):
            idx = np.arange(start, min(start + self.batch_size, n))
            yield idx, {"pixels": np.stack([self.pixels(images[i]) for i in idx])}

    def predict_proba(self, inputs: Any) -> np.ndarray:
        inputs = list(inputs) if not isinstance(inputs, np.ndarray) else inputs
        out = np.empty((len(inputs), len(self.classes)), dtype=np.float32)
        if len(inputs) == 0:
            return out
        batches = self._text_batches(inputs) if self.modality == "text" else self._image_batches(inputs)
        for idx, feed in batches:
            out[idx] = self.session.run(["probabilities"], feed)[0]
        return out

    def predict(self, inputs: Any) -> np.ndarray:
        proba = self.predict_proba(inputs)
        if not self.multilabel:
            return self.classes[proba.argmax(1)]
        res = np.empty(len(proba), dtype=object)
        res[:] = [tuple(self.classes[row >= self.threshold]) for row in proba]
        return res
