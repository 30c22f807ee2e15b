"""The Core ML emulator on whole models: the digits example and a real third-party model
converted with coremltools, image inputs, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgepack.calib.dataset import open_sample_set
from edgepack.convert.tf_to_coreml import tensorflow_to_coreml
from edgepack.emulators.coreml import CoreMLEmulator
from edgepack.errors import ModelLoadError, UnsupportedError
from edgepack.frontends import load_source
from tests.conftest import DIGITS_EVAL, DIGITS_MODEL

# fp16 keeps 11 significant bits: each op's output is rounded with relative error up to
# u = 2**-11 = 4.9e-4. The digits logits come out of 4 rounded layers (plus their fp16
# weights), and each dense layer sums 128 to 1024 products, so errors of a few u times the
# largest logit are expected; 1e-2 of the largest logit leaves margin and still catches any
# real defect (a wrong kernel is off by O(1)).
FP16_LOGIT_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def digits() -> dict:
    source = load_source(DIGITS_MODEL)
    samples = open_sample_set(DIGITS_EVAL)
    feeds = samples.bind(source.inputs).load(samples.samples)
    return {"source": source, "images": feeds["image"], "labels": samples}


def keras_logits(source, images: np.ndarray) -> np.ndarray:
    import keras

    model = source.native
    features = keras.Model(model.inputs, model.get_layer("dropout").output)([images])
    dense = model.get_layer("probabilities")
    return np.asarray(features) @ dense.kernel.numpy() + dense.bias.numpy()


def logits_name(emulator: CoreMLEmulator) -> str:
    steps = emulator._function.steps
    softmax = next(step for step in steps if step.op_type == "softmax")
    return softmax.args["x"].name


def emulate(emulator: CoreMLEmulator, images: np.ndarray, name: str) -> np.ndarray:
    return np.concatenate(
        [emulator.capture({"image": image[None]}, [name])[name] for image in images]
    )


def test_digits_fp32_matches_keras_logits_within_1e_4(digits: dict) -> None:
    emulator = CoreMLEmulator(tensorflow_to_coreml(digits["source"], {"image": (8, 8, 1)}, "fp32"))
    assert emulator.opset == 17
    images = digits["images"]
    reference = keras_logits(digits["source"], images)
    logits = emulate(emulator, images, logits_name(emulator))
    relative = np.abs(logits - reference).max() / np.abs(reference).max()
    assert relative < 1e-4, relative
    probabilities = np.concatenate(
        [emulator.predict({"image": image[None]})["probabilities"] for image in images]
    )
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(
        probabilities, digits["source"].run({"image": images})["probabilities"], atol=1e-5
    )


def test_digits_fp16_stays_fp16_and_within_tolerance(digits: dict) -> None:
    emulator = CoreMLEmulator(tensorflow_to_coreml(digits["source"], {"image": (8, 8, 1)}, "fp16"))
    images = digits["images"]
    name = logits_name(emulator)
    captured = emulator.capture({"image": images[:1]})
    assert captured[name].dtype == np.float16  # activations stay fp16 between ops
    reference = keras_logits(digits["source"], images)
    logits = emulate(emulator, images, name).astype(np.float32)
    relative = np.abs(logits - reference).max() / np.abs(reference).max()
    assert relative < FP16_LOGIT_TOLERANCE, relative
    assert np.mean(logits.argmax(1) == reference.argmax(1)) == 1.0


def test_stands_in_for_mlmodel_predict(digits: dict) -> None:
    """Code written for macOS's MLModel.predict runs unchanged with the emulator."""

    def predicted_digit(model, image: np.ndarray) -> int:  # as an app's test would do
        return int(np.argmax(model.predict({"image": image})["probabilities"]))

    mlmodel = tensorflow_to_coreml(digits["source"], {"image": (8, 8, 1)}, "fp32")
    emulator = CoreMLEmulator(mlmodel)
    images = digits["images"][:20]
    expected = digits["source"].run({"image": images})["probabilities"].argmax(1)
    assert [predicted_digit(emulator, image[None]) for image in images] == expected.tolist()


def test_loads_a_saved_mlpackage(digits: dict, tmp_path: Path) -> None:
    path = tmp_path / "Digits.mlpackage"
    tensorflow_to_coreml(digits["source"], {"image": (8, 8, 1)}, "fp32").save(str(path))
    emulator = CoreMLEmulator(path)
    image = digits["images"][:1]
    np.testing.assert_allclose(
        emulator.predict({"image": image})["probabilities"],
        digits["source"].run({"image": image})["probabilities"],
        atol=1e-5,
    )


def test_image_input_with_scale_bias_and_bgr(tmp_path: Path) -> None:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 5))], opset_version=ct.target.iOS17)
    def program(image):  # type: ignore[no-untyped-def]
        return mb.reduce_mean(x=image, axes=[2, 3], keep_dims=False, name="means")

    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        inputs=[
            ct.ImageType(
                name="image",
                shape=(1, 3, 4, 5),
                scale=1 / 255,
                bias=[-0.5, -0.25, 0.0],
                color_layout=ct.colorlayout.BGR,
            )
        ],
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS17,
    )
    pixels = np.zeros((4, 5, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 51, 102  # R, G, B
    means = CoreMLEmulator(mlmodel).predict({"image": Image.fromarray(pixels, "RGB")})["means"]
    # BGR order, then x * scale + bias per channel
    expected = np.array([102 / 255 - 0.5, 51 / 255 - 0.25, 255 / 255 + 0.0])
    np.testing.assert_allclose(means[0], expected, atol=1e-6)


def test_unsupported_ops_are_all_named_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ops without a kernel (taken out of the kernel table, so the test does not depend on
    which ops still lack one) are named together, before anything runs."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    from edgepack.emulators.coreml import ops

    for op_type in ("random_uniform", "resample"):
        monkeypatch.delitem(ops.KERNELS, op_type)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 6, 6))], opset_version=ct.target.iOS17)
    def program(x):  # type: ignore[no-untyped-def]
        noise = mb.random_uniform(shape=np.array([1, 4, 6, 6], np.int32))
        grid = np.zeros((1, 6, 6, 2), np.float32)
        return mb.resample(
            x=mb.add(x=x, y=noise),
            coordinates=grid,
            sampling_mode="bilinear",
            padding_mode="zeros",
            padding_value=0.0,
            coordinates_mode="normalized_minus_one_to_one",
            align_corners=True,
        )

    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS17,
    )
    with pytest.raises(UnsupportedError, match="random_uniform, resample"):
        CoreMLEmulator(mlmodel)


def test_neural_network_models_are_refused(tmp_path: Path) -> None:
    from coremltools.models import MLModel, datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(3))])
    builder.add_activation("relu", "RELU", "x", "y")
    path = tmp_path / "old.mlmodel"
    MLModel(builder.spec, skip_model_load=True).save(str(path))
    with pytest.raises(UnsupportedError, match="only ML programs"):
        CoreMLEmulator(path)


def _conv_program(tmp_path: Path) -> tuple[object, Path, np.ndarray, np.ndarray]:
    """An iOS16 conv program whose weights live in a blob file; the saved .mlpackage, an
    input and the expected output (computed by NumPy)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    weight = np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS16)
    def program(x):  # type: ignore[no-untyped-def]
        return mb.conv(x=x, weight=weight)

    mlmodel = ct.convert(
        program,
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS16,
        skip_model_load=True,
    )
    package = tmp_path / "conv.mlpackage"
    mlmodel.save(str(package))
    expected = np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x)
    return mlmodel, package, x, expected


def test_every_way_of_handing_over_a_model_runs_or_says_why(tmp_path: Path) -> None:
    """A package, a bare .mlmodel with its weights/ folder beside it or given, an MLModel in
    memory, a spec with its weights: all run. Without their weight file, a compiled .mlmodelc,
    or an object that is no model: one ModelLoadError line each."""
    import shutil

    mlmodel, package, x, expected = _conv_program(tmp_path)
    weights = package / "Data" / "com.apple.CoreML" / "weights"
    bare = tmp_path / "bare" / "conv.mlmodel"
    bare.parent.mkdir()
    bare.write_bytes(mlmodel.get_spec().SerializeToString())
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(weights, elsewhere)
    runs = {
        "package": CoreMLEmulator(package),
        "in memory": CoreMLEmulator(mlmodel),
        "spec and weights_dir": CoreMLEmulator(mlmodel.get_spec(), weights_dir=weights),
        "bare, weights_dir": CoreMLEmulator(bare, weights_dir=elsewhere),
    }
    shutil.copytree(weights, bare.parent / "weights")
    runs["bare, weights beside"] = CoreMLEmulator(bare)
    for how, emulator in runs.items():
        (out,) = emulator.predict({"x": x}).values()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=how)

    shutil.rmtree(bare.parent / "weights")
    compiled = tmp_path / "conv.mlmodelc"
    compiled.mkdir()
    refusals = {
        "weight file weight.bin is missing": lambda: CoreMLEmulator(bare),
        "no weights folder was given": lambda: CoreMLEmulator(mlmodel.get_spec()),
        "not in": lambda: CoreMLEmulator(bare, weights_dir=tmp_path),
        "compiled Core ML model cannot be read": lambda: CoreMLEmulator(compiled),
        "not a loadable Core ML model": lambda: CoreMLEmulator(tmp_path),
        "expected an .mlpackage or .mlmodel path": lambda: CoreMLEmulator(42),
    }
    for message, make in refusals.items():
        with pytest.raises(ModelLoadError, match=message) as caught:
            make()
        assert "\n" not in str(caught.value)


def test_a_bare_mlmodel_without_blob_weights_needs_no_folder(tmp_path: Path) -> None:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def program(x):  # type: ignore[no-untyped-def]
        return mb.relu(x=mb.add(x=x, y=np.float32(1.0)))

    mlmodel = ct.convert(
        program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT32, skip_model_load=True,
    )  # fmt: skip
    bare = tmp_path / "small.mlmodel"
    bare.write_bytes(mlmodel.get_spec().SerializeToString())
    x = np.array([[-3, 0, 2], [1, -1, 5]], np.float32)
    (out,) = CoreMLEmulator(bare).predict({"x": x}).values()
    np.testing.assert_array_equal(out, np.maximum(x + 1, 0))


def test_missing_model_and_capture_name(digits: dict, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such Core ML model"):
        CoreMLEmulator(tmp_path / "nope.mlpackage")
    emulator = CoreMLEmulator(tensorflow_to_coreml(digits["source"], {"image": (8, 8, 1)}, "fp32"))
    with pytest.raises(KeyError, match="no_such_op"):
        emulator.capture({"image": digits["images"][:1]}, ["no_such_op"])
    with pytest.raises(ValueError, match="missing input"):
        emulator.predict({})


@pytest.mark.slow
def test_real_model_fp32_matches_its_source_within_1e_3() -> None:
    from benchmarks.real_models import FETCH, face_set, fetch_models

    if not FETCH.is_file():
        pytest.skip(f"{FETCH} is not there")
    path = fetch_models()["fer"]
    source = load_source(path)
    spec = source.inputs[0]
    emulator = CoreMLEmulator(tensorflow_to_coreml(source, {spec.name: (64, 64, 1)}, "fp32"))
    faces = face_set(path.parent.parent / "calibration" / "faces")
    samples = open_sample_set(faces)
    batch = samples.bind(source.inputs).load(samples.samples[:20])[spec.name]
    reference = source.run({spec.name: batch})[source.outputs[0].name]
    (output,) = emulator.output_names
    emulated = np.concatenate(
        [emulator.predict({emulator.input_names[0]: image[None]})[output] for image in batch]
    )
    assert np.abs(emulated - reference).max() < 1e-3


def test_a_check_process_runs_programs_without_coremltools_converters(tmp_path: Path) -> None:
    """``edgepack check`` imports coremltools without TensorFlow and PyTorch (5-6 s of start-up
    a check does not need) and still runs the program (``--layers``, which converts, does not
    ask for this)."""
    import subprocess
    import sys

    _, package, x, expected = _conv_program(tmp_path)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys, numpy as np
from edgepack._native import use_coremltools_without_converters
use_coremltools_without_converters()
from edgepack.emulators.coreml import CoreMLEmulator
emulator = CoreMLEmulator({str(package)!r})
(out,) = emulator.predict({{"x": np.load({str(tmp_path / "x.npy")!r})}}).values()
np.save({str(tmp_path / "out.npy")!r}, out)
print(sorted(m for m in ("tensorflow", "torch", "sklearn") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-5, atol=1e-5)
