"""The one small representation every frontend produces: :class:`SourceModel`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgepack.errors import EdgepackError, InputError

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (``None`` for dynamic axes) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def is_float(self) -> bool:
        """A float input is quantized and needs the calibration contract; integer and bool
        inputs (token ids, masks, indices) pass through as they are."""
        return not self.dtype.startswith(("int", "uint", "bool"))

    def cast(self, array: Any) -> np.ndarray:
        """``array`` as this tensor's dtype (float32 for float inputs)."""
        return np.asarray(array, dtype=np.float32 if self.is_float else self.dtype)


@dataclass
class SourceModel:
    """A loaded float model: its signature, a float reference runner, and the native handle.

    ``run`` takes a batch per input (float32, or the input's integer dtype; batch axis
    first) and returns a batch per output, keyed by the names in ``inputs`` and ``outputs``.
    ``native`` is what the frontend loaded (a Keras model, a SavedModel, an ONNX path); only
    backends that understand ``format`` look at it. ``layers`` names the model's layers as
    its author sees them (Keras layer names, ONNX node names; empty for SavedModels), in
    order; ``tensor_layers`` maps a tensor name to the layer that produces it where the
    format says so (ONNX node outputs). ``refusals`` says, one sentence each, what the model
    holds that no target can package yet.
    """

    path: Path
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    runner: Callable[[Feeds], Outputs]
    native: Any = None
    versions: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    tensor_layers: dict[str, str] = field(default_factory=dict)
    refusals: tuple[str, ...] = ()
    _sha256: str | None = None

    def run(self, feeds: Feeds) -> Outputs:
        """Outputs for a batch of any size, fed in slices of the model's batch size where
        its batch axis is fixed. A model that cannot run on the samples (an input size its
        graph does not take, say) raises :class:`~edgepack.errors.InputError`."""
        try:
            return run_in_batches(self.runner, feeds, fixed_batch(self.inputs))
        except EdgepackError:
            raise
        except Exception as exc:
            shapes = ", ".join(f"{name} {list(np.shape(v))}" for name, v in feeds.items())
            text = " ".join(str(exc).split())[:200]
            raise InputError(
                f"{self.path.name} does not run on the samples ({shapes}): {text} (check the "
                "set's size and layout against the model's inputs)"
            ) from None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_of_path(self.path)
        return self._sha256


class _Shaped(Protocol):
    @property
    def shape(self) -> tuple[int | None, ...]: ...


def fixed_batch(inputs: Sequence[_Shaped]) -> int | None:
    """The batch size every input fixes (its leading axis), or None when it is free (a source
    model's ``None`` or a bundle manifest's ``-1``)."""
    sizes = {spec.shape[0] for spec in inputs if spec.shape}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return size if isinstance(size, int) and size > 0 else None


def run_in_batches(run: Callable[[Feeds], Outputs], feeds: Feeds, batch: int | None) -> Outputs:
    """``run`` on ``feeds`` in slices of ``batch`` samples (None: all at once). A short last
    slice is filled up with copies of its last sample, whose outputs are dropped again."""
    total = len(next(iter(feeds.values()))) if feeds else 0
    if batch is None or total == batch:
        return run(feeds)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, batch):
        count = min(batch, total - start)
        chunk = {name: _filled(rows[start : start + count], batch) for name, rows in feeds.items()}
        for name, value in run(chunk).items():
            result = np.asarray(value)
            parts.setdefault(name, []).append(result[:count] if len(result) == batch else result)
    return {name: np.concatenate(values) for name, values in parts.items()}


def _filled(rows: np.ndarray, size: int) -> np.ndarray:
    rows = np.asarray(rows)
    if len(rows) == size:
        return rows
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])


def sha256_of_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    if path.is_file():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        digest.update(_file_sha256(item).encode() + b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
