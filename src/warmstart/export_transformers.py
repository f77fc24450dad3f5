"""Export a text model as a folder that plain ``transformers`` loads: the encoder (``AutoModel`` +
``AutoTokenizer``, with the sentence-transformers module files beside them, so ``SentenceTransformer`` loads it
too) and the classifier head as one linear layer (``classifier.safetensors``, the standardisation folded into its
weights) described by ``classifier.json``.

The folder's README.md holds ``predict_proba_transformers`` below, word for word: the recipe a user copies,
written with transformers, torch and safetensors only. The export is kept only when that recipe, run on held-out
rows, gives the artifact's own fp32 probabilities (max abs difference <= ``atol``, same top class everywhere).
The head does not map onto ``AutoModelForSequenceClassification``: those classify from the pooler (the [CLS]
state through a dense layer and tanh), while warmstart's heads read mean- (or max- or CLS-) pooled features.
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from ._io import atomic_write_bytes, atomic_write_json
from .errors import ExportError

HEAD_FILE = "classifier.safetensors"
HEAD_CONFIG = "classifier.json"
PLAIN_POOLING = ("mean", "cls", "max")  # what the recipe below computes


def predict_proba_transformers(folder: str, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Class probabilities of ``texts`` from an exported folder, with transformers, torch and safetensors only."""
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    with open(f"{folder}/classifier.json") as f:
        cfg = json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    head = load_file(f"{folder}/classifier.safetensors")
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=cfg["max_length"],
                return_tensors="pt",
            )
            mask = batch["attention_mask"]
            hidden = model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            if cfg["pooling"] == "cls":
                x = hidden[:, 0]
            elif cfg["pooling"] == "max":
                x = hidden.masked_fill(m == 0, -1e9).max(1).values
            else:  # mean over the real tokens
                x = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            if cfg["normalize"]:
                x = torch.nn.functional.normalize(x, dim=-1)
            logits = x @ head["weight"].T + head["bias"]
            out.append(logits.sigmoid() if cfg["activation"] == "sigmoid" else logits.softmax(-1))
    return torch.cat(out).numpy()


def fold_head(head: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``W((x - mean) / scale) + b`` as one linear layer ``W' x + b'``."""
    w = head.linear.weight.detach().float() / head.scale.float()
    b = head.linear.bias.detach().float() - w @ head.mean.float()
    return w.contiguous(), b.contiguous()


def export_transformers(
    artifact: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    data: Any = None,
    atol: float = 1e-4,
    max_rows: int = 500,
    overwrite: bool = True,
) -> dict:
    """Write the transformers folder for a text artifact (default: ARTIFACT-transformers beside it), checked on
    ``data`` (held-out inputs); returns what the check measured (also written to export.json)."""
    from .artifact import load_artifact
    from .export import _pipeline, _torch_proba, held_out_rows, staged

    src = Path(artifact)
    est = load_artifact(src, device="cpu")
    pipe = _pipeline(est)  # fp32: the reference the folder must reproduce
    enc = pipe.backbone
    _check_exportable(src, enc)
    if pipe.pieces is not None:
        raise ExportError(
            f"{src}: a probe with lexical='pieces' also computes TF-IDF of the token ids, which a transformers "
            f"folder (AutoModel and a linear head) does not hold; use --onnx, whose graph computes it."
        )
    rows = held_out_rows(src, data, "text", max_rows)
    out = Path(output) if output is not None else src.with_name(src.name + "-transformers")
    with staged(out, overwrite) as tmp:
        _write(tmp, est, enc, pipe, src)
        want = _torch_proba(pipe, enc, rows, 32)
        got = predict_proba_transformers(str(tmp), list(rows.inputs))
        report = {
            "folder": str(out),
            "rows": len(rows),
            "max_abs_diff": float(np.abs(want - got).max()),
            "top_class_agreement": float((want.argmax(1) == got.argmax(1)).mean()),
            "atol": atol,
        }
        if report["max_abs_diff"] > atol or report["top_class_agreement"] < 1.0:
            raise ExportError(
                f"{src}: the transformers folder does not reproduce the model on {len(rows)} held-out rows (max "
                f"probability difference {report['max_abs_diff']:.2e} > {atol:g}, or another top class); not written."
            )
        atomic_write_json(tmp / "export.json", report)
    return report


def _check_exportable(src: Path, enc: Any) -> None:
    from transformers import PreTrainedModel

    if enc.modality != "text" or not isinstance(enc.module, PreTrainedModel):
        raise ExportError(
            f"{src}: a {enc.modality} model on {type(enc.module).__name__}; the transformers export is for text "
            f"models on a transformers encoder. Use --onnx."
        )
    if getattr(enc.module, "st_dense", None) is not None:
        raise ExportError(
            f"{src}: the backbone has sentence-transformers Dense layers, which AutoModel does not load; use --onnx."
        )
    if enc.pooling not in PLAIN_POOLING:
        raise ExportError(
            f"{src}: {enc.pooling!r} pooling is not in the exported recipe ({', '.join(PLAIN_POOLING)}); use --onnx."
        )


def _write(folder: Path, est: Any, enc: Any, pipe: Any, src: Path) -> None:
    from safetensors.torch import save_file

    from .techniques.base import plain_classes

    peft_model = getattr(est, "peft_model_", None)
    if peft_model is not None:
        # an adapter kept beside its base (merge=False) is folded into the exported weights
        enc = copy.copy(enc)
        enc.module = copy.deepcopy(peft_model).merge_and_unload().float().eval()
    enc.save(folder)  # config, weights, tokenizer, sentence-transformers modules
    weight, bias = fold_head(pipe.head)
    save_file({"weight": weight, "bias": bias}, str(folder / HEAD_FILE))
    multilabel = bool(getattr(est, "multilabel_", False))
    atomic_write_json(
        folder / HEAD_CONFIG,
        {
            "classes": plain_classes(est.classes_),
            "pooling": enc.pooling,
            "normalize": bool(enc.normalize),
            "max_length": int(enc.max_length),
            "activation": "sigmoid" if multilabel else "softmax",
            "threshold": getattr(est, "threshold", None) if multilabel else None,
            "technique": est.name,
            "warmstart_version": __version__,
        },
    )
    card = (src / "README.md").read_text() if (src / "README.md").is_file() else "# warmstart model\n"
    recipe = inspect.getsource(predict_proba_transformers)
    usage = (
        "\n## Load with transformers\n\nThis folder is an ordinary transformers model (`AutoModel`, "
        "`AutoTokenizer`) plus a linear head in `classifier.safetensors`; `classifier.json` names the classes "
        "(in the head's order), the pooling and the output activation. No warmstart needed:\n\n```python\n"
        f"import json\n\nimport numpy as np\n\n\n{recipe}\n\n"
        'proba = predict_proba_transformers("THIS_FOLDER", ["some text"])\n'
        'classes = json.load(open("THIS_FOLDER/classifier.json"))["classes"]\n```\n'
    )
    atomic_write_bytes(folder / "README.md", (card + usage).encode())
