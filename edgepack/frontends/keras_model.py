"""Keras frontend: ``.keras`` (Keras 3) and legacy HDF5 ``.h5`` files."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from edgepack._native import captured_output, import_tensorflow
from edgepack.errors import ModelLoadError
from edgepack.frontends.base import Feeds, Outputs, SourceModel, TensorSpec
from edgepack.frontends.tf_call import keras_arguments


def load_keras(path: Path) -> SourceModel:
    """Load a Keras model without compiling it; run it in inference mode."""
    import_tensorflow()
    import keras

    try:
        with captured_output():
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable Keras model ({_short(exc)})") from None
    inputs = [_spec(t) for t in model.inputs]
    outputs = [_spec(t, _output_name(t, i)) for i, t in enumerate(model.outputs)]

    def run(feeds: Feeds) -> Outputs:
        args = [spec.cast(feeds[spec.name]) for spec in inputs]
        result = model(keras_arguments(model, args), training=False)
        values = result if isinstance(result, list | tuple) else [result]
        return {spec.name: np.asarray(v) for spec, v in zip(outputs, values, strict=True)}

    return SourceModel(
        path=path,
        format="keras",
        inputs=inputs,
        outputs=outputs,
        runner=run,
        native=model,
        versions={"keras": metadata.version("keras"), "tensorflow": _tf_version()},
        layers=tuple(_layer_names(model)),
    )


def _layer_names(model: object) -> list[str]:
    """Every layer's name, nested models' layers included, inputs left out."""
    names = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        names.append(str(layer.name))
        names += _layer_names(layer)
    return names


def _spec(tensor: object, name: str | None = None) -> TensorSpec:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)  # type: ignore[attr-defined]
    dtype = str(getattr(tensor, "dtype", "float32"))
    return TensorSpec(name=name or tensor.name, shape=shape, dtype=dtype.replace("tf.", ""))  # type: ignore[attr-defined]


def _output_name(tensor: object, position: int) -> str:
    """The name of the layer that produces an output (Keras tensor names are generated)."""
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None)
    return str(getattr(operation, "name", None) or f"output_{position}")


def _tf_version() -> str:
    return str(import_tensorflow().__version__)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
