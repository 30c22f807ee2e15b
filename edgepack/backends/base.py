"""The protocol every backend implements, and the small types it exchanges with the core."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgepack.frontends.base import Feeds, Outputs, SourceModel


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor affine quantization: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorInfo:
    """A bundle model's input or output, as the app sees it."""

    name: str
    source_name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: QuantParams | None = None
    layout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        quant = self.quantization
        return {
            "name": self.name,
            "source_name": self.source_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": None
            if quant is None
            else {"scale": quant.scale, "zero_point": quant.zero_point},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorInfo:
        quant = data.get("quantization")
        return cls(
            name=data["name"],
            source_name=data["source_name"],
            shape=tuple(data["shape"]),
            dtype=data["dtype"],
            layout=data.get("layout"),
            quantization=None
            if quant is None
            else QuantParams(float(quant["scale"]), int(quant["zero_point"])),
        )


@dataclass(frozen=True)
class BuiltModel:
    """What a backend's ``build`` leaves in the work folder."""

    model_file: Path
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    versions: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Emulator:
    """Runs a bundle's model on the host: float feeds in, float outputs out (source names)."""

    runtime: str
    run: Callable[[Feeds], Outputs]


# Calibration samples, one dict of float32 arrays (batch axis of 1) per sample.
CalibrationSamples = Callable[[], Iterable[dict[str, np.ndarray]]]


class Backend(Protocol):
    """What the core calls; only a backend knows its target format."""

    name: str
    model_file_name: str
    settings_type: type

    def check_support(self, source: SourceModel, settings: Any) -> None:
        """Raise :class:`~edgepack.errors.UnsupportedError` before any work is done."""

    def build(
        self,
        source: SourceModel,
        calibration: CalibrationSamples,
        input_shapes: dict[str, tuple[int, ...]],
        settings: Any,
        workdir: Path,
    ) -> BuiltModel:
        """Convert and quantize ``source`` into ``workdir``."""
        ...

    def emulate(
        self, model_file: Path, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]
    ) -> Emulator:
        """A host runner for a built model (in a work folder or a bundle)."""
        ...
