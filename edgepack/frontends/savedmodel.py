"""TensorFlow SavedModel frontend: the ``serving_default`` signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack._native import captured_output, import_tensorflow
from edgepack.errors import ModelLoadError
from edgepack.frontends.base import Feeds, Outputs, SourceModel, TensorSpec

SIGNATURE = "serving_default"


def load_savedmodel(path: Path) -> SourceModel:
    """Load a SavedModel and expose its serving signature as the float reference."""
    tf = import_tensorflow()
    try:
        with captured_output():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable SavedModel ({_short(exc)})") from None
    if SIGNATURE not in loaded.signatures:
        found = ", ".join(loaded.signatures) or "none"
        raise ModelLoadError(f"{path}: no {SIGNATURE!r} signature (found: {found})")
    function = loaded.signatures[SIGNATURE]
    _, input_specs = function.structured_input_signature
    inputs = [
        TensorSpec(name, _shape(spec.shape), spec.dtype.name)
        for name, spec in sorted(input_specs.items())
    ]
    outputs = [
        TensorSpec(name, _shape(spec.shape), spec.dtype.name)
        for name, spec in sorted(function.structured_outputs.items())
    ]

    def run(feeds: Feeds) -> Outputs:
        result = function(**{s.name: tf.constant(feeds[s.name], dtype=s.dtype) for s in inputs})
        return {spec.name: np.asarray(result[spec.name]) for spec in outputs}

    return SourceModel(
        path=path,
        format="savedmodel",
        inputs=inputs,
        outputs=outputs,
        runner=run,
        native=loaded,
        versions={"tensorflow": str(tf.__version__)},
    )


def _shape(shape: object) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)  # type: ignore[attr-defined]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
