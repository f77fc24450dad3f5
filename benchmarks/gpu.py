"""On a CUDA GPU: fine-tuning throughput and model FLOPs utilisation, and feature extraction against
sentence-transformers' ``encode`` on the same GPU, in the same process.

Models are randomly initialised encoders of real shapes, since throughput does not depend on the weights (and a
GPU machine may have no packaged weights): all-MiniLM-L6-v2's (BERT, 6 layers, 384 wide, 12 heads, FF 1536,
vocab 30,522) and all-mpnet-base-v2's (MPNet, 12 layers, 768 wide, 12 heads, FF 3072, vocab 30,527), each saved
to a temporary folder with a WordPiece tokenizer whose vocabulary is synthetic words, so every word is one token.
Texts are random words, 32 to 256 per text (uniform), cut at 256 tokens.

- **Extraction**: warmstart ``encode`` (bf16 copy of the encoder, length-sorted dynamic batches) against
  sentence-transformers ``encode`` on the same model folder with mean pooling, also in bf16 (the model cast with
  ``.to(torch.bfloat16)``), batch 128, max_seq_length 256. One untimed warm-up pass each, then the median of
  ``--repeats`` timed passes; embeddings compared by cosine (>= 0.99 required).
- **Fine-tuning**: ``finetune`` in bf16 autocast, batch 32 and 128, one epoch over ``--rows`` rows; rows/s and
  tokens/s over the loop's training time, achieved FLOP/s (the loop's FlopCounterMode count) and MFU against the
  device's dense bf16 peak where ``warmstart.runtime`` knows it. A small fit first warms up CUDA.

Targets (docs/scaling.md): extraction >= 1.3x sentence-transformers; bf16 fine-tuning MFU >= 35%.

    python benchmarks/gpu.py            # about 2 minutes on an H100-class GPU
    python benchmarks/gpu.py --quick    # fewer rows, MiniLM and MPNet, about 1 minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {
    "minilm-l6": dict(kind="bert", vocab=30522, hidden=384, layers=6, heads=12, ff=1536),
    "mpnet-base": dict(kind="mpnet", vocab=30527, hidden=768, layers=12, heads=12, ff=3072),
}


def build_model(name: str, folder: Path) -> Path:
    """A random encoder of ``name``'s shape and a WordPiece tokenizer over synthetic words."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel, PreTrainedTokenizerFast

    s = SHAPES[name]
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = special + [f"w{i}" for i in range(s["vocab"] - len(special))]
    tok = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    common = dict(
        vocab_size=s["vocab"],
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        intermediate_size=s["ff"],
        max_position_embeddings=514,
    )
    torch.manual_seed(0)
    if s["kind"] == "bert":
        model = BertModel(BertConfig(**common), add_pooling_layer=False)
    else:
        model = MPNetModel(MPNetConfig(**common, pad_token_id=0), add_pooling_layer=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def make_texts(n: int, vocab: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(32, 257, n)
    return [" ".join(f"w{i}" for i in rng.integers(0, vocab - 10, k)) for k in lengths]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn, repeats: int):
    out = fn()
    _sync()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def extraction(folder: Path, texts: list[str], repeats: int, device: str) -> dict:
    from sentence_transformers import SentenceTransformer, models

    from warmstart.backbones import get_backbone

    bb = get_backbone(str(folder), max_length=256).to(device)
    ws_s, ws = median_time(lambda: bb.encode(texts, progress=False, precision="bf16"), repeats)
    enc = models.Transformer(str(folder), max_seq_length=256)
    pool = models.Pooling(enc.get_word_embedding_dimension(), "mean")
    st_model = SentenceTransformer(modules=[enc, pool], device=device).to(torch.bfloat16)

    def st_encode():
        emb = st_model.encode(texts, batch_size=128, convert_to_tensor=True, show_progress_bar=False)
        return emb.float().cpu().numpy()

    st_s, st = median_time(st_encode, repeats)
    cos = (ws * st).sum(1) / np.linalg.norm(ws, axis=1) / np.linalg.norm(st, axis=1)
    return {
        "warmstart_texts_per_s": round(len(texts) / ws_s, 1),
        "st_texts_per_s": round(len(texts) / st_s, 1),
        "ratio": round(st_s / ws_s, 3),
        "min_cosine": round(float(cos.min()), 5),
    }


def finetune(folder: Path, texts: list[str], batch_size: int, device: str) -> dict:
    from warmstart.backbones import get_backbone
    from warmstart.data import Dataset
    from warmstart.techniques import get_technique

    labels = [str(i % 3) for i in range(len(texts))]
    data = Dataset(texts, labels, "text", "synthetic")
    bb = get_backbone(str(folder), max_length=256)
    params = dict(
        device=device, precision="bf16", epochs=1, min_steps=0, batch_size=batch_size, progress=False
    )
    params.update(patience=None, use_cache=False, checkpoint_every=0)
    warm = data.subset(np.arange(min(len(texts), 4 * batch_size)))
    get_technique("finetune", backbone=bb, **params).fit(warm)  # CUDA context, cuBLAS handles, kernels
    est = get_technique("finetune", backbone=bb, **params).fit(data)
    tokens = sum(len(x) for x in bb.tokenize(texts))
    secs = est.train_seconds_
    return {
        "batch_size": batch_size,
        "rows_per_s": round(len(texts) / secs, 1),
        "tokens_per_s": round(tokens / secs, 0),
        "tflops_per_s": round(est.train_flops_ / secs / 1e12, 1),
        "mfu": est.mfu_,
        "train_seconds": round(secs, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="minilm-l6,mpnet-base")
    p.add_argument("--rows", type=int, default=8192, help="texts for extraction and fine-tuning")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2,048 rows, 2 repeats")
    p.add_argument("--output", help="also write the results as JSON here")
    p.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script out")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device; nothing to measure.", file=sys.stderr)
        return 2
    if args.quick:
        args.rows, args.repeats = 2048, 2
    from warmstart import runtime

    rt = runtime.resolve(args.device, "bf16")
    peak = runtime.peak_flops(rt)
    where = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else "CPU"
    print(
        f"{where}; torch {torch.__version__}; dense bf16 peak used for MFU: "
        f"{peak / 1e12 if peak else 'unknown'} TFLOP/s; {args.rows} texts of 32-256 words"
    )
    results = {"device": where, "torch": torch.__version__, "rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            folder = build_model(name, Path(tmp) / name)
            texts = make_texts(args.rows, SHAPES[name]["vocab"])
            ex = extraction(folder, texts, args.repeats, args.device)
            print(
                f"{name} extraction bf16: warmstart {ex['warmstart_texts_per_s']} texts/s, "
                f"sentence-transformers {ex['st_texts_per_s']} texts/s, ratio {ex['ratio']}x "
                f"(min cosine {ex['min_cosine']})"
            )
            fts = []
            for bs in (32, 128):
                ft = finetune(folder, texts, bs, args.device)
                fts.append(ft)
                print(
                    f"{name} fine-tuning bf16, batch {bs}: {ft['rows_per_s']} rows/s, "
                    f"{ft['tokens_per_s']:.0f} tokens/s, {ft['tflops_per_s']} TFLOP/s, MFU {ft['mfu']}"
                )
            results[name] = {"extraction": ex, "finetune": fts}
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
