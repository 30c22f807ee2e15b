"""ONNX -> TensorFlow SavedModel with onnx2tf, made safe for builds.

onnx2tf is the one maintained converter from ONNX to TensorFlow, but it has habits a build tool
cannot keep (each measured here):

- it simplifies the ``.onnx`` file it is given *in place*: we convert a copy, in a scratch folder;
- for fixed-size 4-D image inputs it downloads a sample-image file from the internet for an
  internal check, looked up first in the working directory: we write that file there from the
  calibration set and run onnx2tf from that folder, so a build never touches the network;
- it assumes 4-D inputs are NCHW and makes them NHWC: an input whose calibration contract says
  NHWC is kept as it is (``keep_nwc_or_nhwc_or_ndhwc_input_names``); an NCHW input becomes NHWC,
  the layout TFLite and its delegates expect, and the bundle says so (see ``TFView``);
- it runs ``onnxsim`` as a command: the folder of the running interpreter goes first on PATH so
  that a virtual environment's ``onnxsim`` is found even when the environment is not activated;
- it prints a lot and calls ``sys.exit`` on failure: its output is captured and a failure
  becomes one :class:`ConversionError` naming the op it could not convert.

The converted float model is checked against the ONNX model on calibration samples before any
quantization.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgepack._native import captured_output, import_tensorflow, last_native_lines
from edgepack.convert.compare import check_float_match
from edgepack.convert.mask_constants import bound_mask_constants
from edgepack.convert.onnx_forms import rewrite_gelu, rewrite_hard_sigmoid, rewrite_hardswish
from edgepack.convert.recent import RecentResults
from edgepack.convert.tf_view import TFView
from edgepack.errors import ConversionError
from edgepack.frontends.base import Feeds, Outputs, SourceModel, TensorSpec

# The file onnx2tf would download (utils/common_functions.py: download_test_image_data).
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
FLOAT_TOLERANCE = 1e-3

log = logging.getLogger("edgepack")
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def onnx_to_tensorflow(
    source: SourceModel,
    calibration_batch: Mapping[str, np.ndarray],
    layouts: Mapping[str, str | None],
    batch_size: int,
    scratch: Path,
    unfused_hardswish: bool = False,
) -> TFView:
    """Convert ``source`` (an ONNX SourceModel) into a SavedModel in ``scratch`` and check it;
    with ``unfused_hardswish``, HardSwish written so the TFLite converter does not fuse it."""
    tf = import_tensorflow()
    work = scratch / "onnx2tf"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "model.onnx"
    shutil.copyfile(source.path, copy)  # onnx2tf rewrites its input file
    _valid_node_names(copy)
    bounded = bound_mask_constants(copy, {s.name: calibration_batch[s.name] for s in source.inputs})
    if bounded:
        log.debug("attention-mask constants bounded to %s: %s", bounded["bound"], bounded)
    if rewrite_gelu(copy):
        log.debug("exact GELU written in the erf form the TFLite converter fuses")
    if unfused_hardswish and rewrite_hardswish(copy):
        log.debug("HardSwish written as (x / 6) * relu6(x + 3) (no 16x8 HARD_SWISH)")
    if rewrite_hard_sigmoid(copy):
        log.debug("HardSigmoid written as ReLU6 (the TFLite int8 builtins have no RELU_0_TO_1)")
    prepared = work / "prepared.onnx"
    shutil.copyfile(copy, prepared)
    _write_offline_sample(work, calibration_batch)
    shapes = [
        f"{s.name}:{','.join(str(d) for d in (batch_size, *calibration_batch[s.name].shape[1:]))}"
        for s in source.inputs
    ]
    key = (hashlib.sha256(prepared.read_bytes()).hexdigest(), tuple(shapes), tuple(layouts.items()))
    reused = _reused(tf, source, key, calibration_batch, batch_size)
    if reused is not None:
        return reused
    tried: list[dict[str, str]] = []
    started = time.monotonic()
    for name, options in _attempts(source, layouts):
        if tried and time.monotonic() - started > RECOVERY_SECONDS:
            break
        output = work / f"saved_model_{len(tried)}"
        shutil.copyfile(prepared, copy)  # onnx2tf rewrites its input file: each gets a copy
        try:
            _run_onnx2tf(copy, output, {"overwrite_input_shape": shapes, **options})
            with captured_output():
                loaded = tf.saved_model.load(str(output))
            view = _match(
                source, _savedmodel_source(tf, loaded, source.path), calibration_batch, batch_size
            )
        except ConversionError as exc:
            tried.append({"name": name, "failure": str(exc)})
            if UNSUPPORTED_OP.search(str(exc)):
                break  # an op onnx2tf has no conversion for: no layout option changes that
            continue
        except Exception as exc:  # the converted model fails to run: another attempt may not
            text = " ".join(str(exc).split())[:200]
            tried.append({"name": name, "failure": f"the converted model does not run: {text}"})
            continue
        if tried:
            log.info("onnx2tf converted the model with %s (after: %s)", name, _named(tried))
        CONVERTED.put(key, (loaded, name, tried))
        return dataclasses.replace(view, conversion={"worked": name, "tried": tried})
    first = tried[0]["failure"]
    others = f"; also tried: {_named(tried[1:])}" if len(tried) > 1 else ""
    raise ConversionError(f"{first}{others}")


# SavedModels onnx2tf made in this process, by the prepared ONNX file's digest, the input
# shapes and layouts: (the loaded model, the attempt that worked, the attempts that failed)
CONVERTED = RecentResults()


def _reused(
    tf: Any,
    source: SourceModel,
    key: tuple[Any, ...],
    calibration_batch: Mapping[str, np.ndarray],
    batch_size: int,
) -> TFView | None:
    """The view of a SavedModel converted before from the same prepared file, checked
    against the ONNX model on this call's samples; None when there is none or it fails."""
    cached = CONVERTED.get(key)
    if cached is None:
        return None
    loaded, name, tried = cached
    try:
        model = _savedmodel_source(tf, loaded, source.path)
        view = _match(source, model, calibration_batch, batch_size)
    except Exception:  # the full conversion below says what is wrong, with its attempts
        return None
    return dataclasses.replace(view, conversion={"worked": name, "tried": tried})


# onnx2tf's documented alternatives for the failures seen on real exports, in this order; the
# first that converts and matches the ONNX model on calibration samples is kept.
RECOVERY_SECONDS = 900.0
UNSUPPORTED_OP = re.compile(r"op \S+ (\(\S+\) )?is not (convertible|supported by onnx2tf)")


def _attempts(
    source: SourceModel, layouts: Mapping[str, str | None]
) -> list[tuple[str, dict[str, Any]]]:
    names = [s.name for s in source.inputs]
    keep_nhwc = [s.name for s in source.inputs if layouts.get(s.name) == "NHWC"]
    return [
        ("the contract's layouts", {"keep_nwc_or_nhwc_or_ndhwc_input_names": keep_nhwc or None}),
        ("input shapes kept as they are (-kat)", {"keep_shape_absolutely_input_names": names}),
        ("inputs kept channels-last (-kt)", {"keep_nwc_or_nhwc_or_ndhwc_input_names": names}),
        ("strict mode off (-dsm)", {"disable_strict_mode": True}),
    ]


def _named(tried: list[dict[str, str]]) -> str:
    return ", ".join(f"{t['name']} ({t['failure'][:120]})" for t in tried)


def _valid_node_names(path: Path) -> None:
    """TF scope names allow ``[A-Za-z0-9_.\\/>-]`` only; Paddle exports name nodes like
    ``Softmax@0``, which onnx2tf passes on and TensorFlow rejects. Rename such nodes in our copy
    (node names only: tensor names, which the bundle's I/O use, stay)."""
    import onnx

    model = onnx.load(str(path))
    invalid = re.compile(r"[^A-Za-z0-9_.\\/>-]")
    changed = False
    for node in model.graph.node:
        if invalid.search(node.name):
            node.name = invalid.sub("_", node.name)
            changed = True
    if changed:
        onnx.save(model, str(path))


def _write_offline_sample(folder: Path, batch: Mapping[str, np.ndarray]) -> None:
    """The 20x128x128x3 float32 file onnx2tf looks for in the working directory.

    onnx2tf uses it only for its own sanity run; we make it from calibration samples so
    that the content is real data, not a download.
    """
    images = [a for a in batch.values() if a.ndim == 4]
    if images:
        first = images[0]
        nhwc = first if first.shape[-1] in (1, 3) else first.transpose(NCHW_TO_NHWC)
        rgb = np.repeat(nhwc, 3, axis=-1) if nhwc.shape[-1] == 1 else nhwc[..., :3]
        rows = np.linspace(0, rgb.shape[1] - 1, 128).astype(int)
        cols = np.linspace(0, rgb.shape[2] - 1, 128).astype(int)
        resized = rgb[:, rows][:, :, cols]
        sample = np.resize(resized, (20, 128, 128, 3)).astype(np.float32)
    else:
        sample = np.zeros((20, 128, 128, 3), np.float32)
    np.save(folder / SAMPLE_FILE, sample)


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Run from ``folder`` with this interpreter's scripts first on PATH."""
    previous_cwd = Path.cwd()
    previous_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), previous_path])
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        os.environ["PATH"] = previous_path


def _run_onnx2tf(model: Path, output: Path, options: Mapping[str, Any]) -> None:
    import onnx2tf
    import tf_keras

    # onnx2tf builds a tf_keras model whose layer names number on from the process's earlier
    # conversions (model_2/tf.math.add_16 the first time, model_5/tf.math.add_118 the next):
    # a fresh session makes every conversion of a model name its tensors the same, which is
    # what matching a bundle's tensors with its float twin's, and a precision plan, rely on
    tf_keras.backend.clear_session()
    failure: BaseException | None = None
    try:
        with _inside(model.parent), captured_output():
            onnx2tf.convert(
                input_onnx_file_path=str(model),
                output_folder_path=str(output),
                output_signaturedefs=True,
                non_verbose=True,
                verbosity="error",
                **options,
            )
    except (Exception, SystemExit) as exc:  # onnx2tf exits the process on errors
        failure = exc
    if failure is not None or not (output / "saved_model.pb").is_file():
        raise ConversionError(f"onnx2tf could not convert the model: {_failed_op(failure)}")


def _failed_op(failure: BaseException | None) -> str:
    log = last_native_lines(400)
    found = re.findall(r"onnx_op_type:\s*([\w.]+)\s*\|?\s*onnx_op_name:\s*([^\s|]+)", log)
    if found:
        op_type, op_name = found[-1]
        return f"op {op_type} ({op_name}) is not convertible"
    found = re.findall(r"(\w+) OP is not yet implemented", log)
    if found:
        return f"op {found[-1]} is not supported by onnx2tf"
    text = " ".join(str(failure).split()) if failure is not None else ""
    return text[:200] if text and text not in {"1", "None"} else last_native_lines(2)[:300]


def _savedmodel_source(tf: Any, loaded: Any, path: Path) -> SourceModel:
    function = loaded.signatures["serving_default"]
    _, input_specs = function.structured_input_signature
    inputs = [TensorSpec(n, tuple(s.shape), s.dtype.name) for n, s in input_specs.items()]
    outputs = [
        TensorSpec(n, tuple(s.shape), s.dtype.name) for n, s in function.structured_outputs.items()
    ]

    def run(feeds: Feeds) -> Outputs:
        result = function(**{s.name: tf.constant(feeds[s.name], dtype=s.dtype) for s in inputs})
        return {s.name: np.asarray(result[s.name]) for s in outputs}

    return SourceModel(
        path=path, format="savedmodel", inputs=inputs, outputs=outputs, runner=run, native=loaded
    )


def _key_for(name: str, keys: list[str], position: int) -> str:
    """onnx2tf turns ONNX names into signature keys by replacing characters TF refuses."""
    simple = re.sub(r"[^A-Za-z0-9_]", "_", name)
    for key in keys:
        if key in (name, simple) or key.strip("_") == simple.strip("_"):
            return key
    if position < len(keys):
        return keys[position]
    raise ConversionError(f"onnx2tf output has no tensor for ONNX {name!r} (has {keys})")


def _match(
    source: SourceModel, model: SourceModel, batch: Mapping[str, np.ndarray], batch_size: int
) -> TFView:
    in_keys = [s.name for s in model.inputs]
    out_keys = [s.name for s in model.outputs]
    input_names = {_key_for(s.name, in_keys, i): s.name for i, s in enumerate(source.inputs)}
    specs = {s.name: s for s in model.inputs}
    input_perms = {
        onnx_name: _perm_between(batch[onnx_name].shape[1:], tuple(specs[key].shape[1:]))
        for key, onnx_name in input_names.items()
    }
    output_names = {_key_for(s.name, out_keys, i): s.name for i, s in enumerate(source.outputs)}
    sample = {k: v[:batch_size] for k, v in batch.items()}
    reference = source.run(sample)
    partial = TFView(model, input_names, output_names, input_perms, {})
    tf_out = model.run(partial.tf_sample(sample))
    output_perms = {
        onnx_name: _perm_between(tf_out[key].shape, reference[onnx_name].shape, to_source=True)
        for key, onnx_name in output_names.items()
    }
    converted = {
        onnx_name: _permute(tf_out[key], output_perms[onnx_name])
        for key, onnx_name in output_names.items()
    }
    errors = check_float_match(reference, converted, FLOAT_TOLERANCE, "onnx2tf")
    return TFView(model, input_names, output_names, input_perms, output_perms, max(errors.values()))


def _perm_between(
    from_shape: tuple[int | None, ...], to_shape: tuple[int | None, ...], to_source: bool = False
) -> tuple[int, ...] | None:
    """The NCHW->NHWC (or, ``to_source``, NHWC->NCHW) permutation that turns ``from_shape``
    into ``to_shape``; None when they are equal."""
    if len(from_shape) == 3:  # per-sample shapes: add the batch axis
        from_shape, to_shape = (1, *from_shape), (1, *to_shape)
    if tuple(from_shape) == tuple(to_shape) or len(from_shape) != 4:
        return None
    perm = NHWC_TO_NCHW if to_source else NCHW_TO_NHWC
    if tuple(from_shape[i] for i in perm) == tuple(to_shape):
        return perm
    raise ConversionError(f"onnx2tf changed a tensor's shape from {from_shape} to {to_shape}")


def _permute(value: np.ndarray, perm: tuple[int, ...] | None) -> np.ndarray:
    return value if perm is None else np.ascontiguousarray(np.asarray(value).transpose(perm))
