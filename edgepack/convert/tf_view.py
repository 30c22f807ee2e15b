"""The TensorFlow model a TF-based backend converts, whatever the source format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.frontends.base import SourceModel

if TYPE_CHECKING:  # the backends package imports this module
    from edgepack.backends.base import CalibrationData


@dataclass(frozen=True)
class TFView:
    """The TensorFlow model to convert, and how its tensors map to the source model's.

    For Keras and SavedModel sources it is the source itself; for ONNX sources it is the
    SavedModel onnx2tf made, whose tensor names and layouts may differ.
    """

    model: SourceModel
    input_names: dict[str, str]  # TF name -> source name
    output_names: dict[str, str]
    input_perms: dict[str, tuple[int, ...] | None]  # by source name: source -> TF layout
    output_perms: dict[str, tuple[int, ...] | None]  # by source name: TF -> source layout
    max_relative_error: float = 0.0  # of the converted float model on calibration samples
    # how onnx2tf was run: {"worked": name, "tried": [{"name", "failure"}]} (ONNX sources)
    conversion: dict[str, object] | None = None

    def details(self) -> dict[str, object]:
        """What the manifest records of the conversion (ONNX sources): onnx2tf's attempts and
        the float model's largest relative error against the ONNX model."""
        if self.conversion is None:
            return {}
        return {"onnx2tf": {**self.conversion, "float_max_rel_error": self.max_relative_error}}

    def tf_sample(self, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Source-named, source-layout arrays -> TF-named, TF-layout arrays."""
        result = {}
        for tf_name, source_name in self.input_names.items():
            perm = self.input_perms[source_name]
            value = sample[source_name]
            result[tf_name] = value if perm is None else np.ascontiguousarray(value.transpose(perm))
        return result


def tf_view(
    source: SourceModel,
    calibration: CalibrationData,
    batch_size: int,
    scratch: Path,
    unfused_hardswish: bool = False,
) -> TFView:
    """The source itself for TF-based formats; for ONNX, the SavedModel onnx2tf makes (in
    ``scratch``), checked against the ONNX model; ``unfused_hardswish`` rewrites its HardSwish
    first (:func:`edgepack.convert.onnx_forms.rewrite_hardswish`, for TFLite's 16x8 mode)."""
    if source.format != "onnx":
        same_in = {s.name: s.name for s in source.inputs}
        same_out = {s.name: s.name for s in source.outputs}
        return TFView(
            source,
            same_in,
            same_out,
            dict.fromkeys(same_in.values()),
            dict.fromkeys(same_out.values()),
        )
    from edgepack.convert.onnx_to_tf import onnx_to_tensorflow

    return onnx_to_tensorflow(
        source, calibration.take(8), calibration.layouts, batch_size, scratch, unfused_hardswish
    )
