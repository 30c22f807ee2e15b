"""Per-layer drift (``check --layers``) on the digits example for every target, and on
deliberately damaged bundles: one layer's int8 weights perturbed in the bundle's own model
file, after which that layer must be the worst, named as in the Keras model, on every target;
and a model built fragile on purpose, whose culprit only the layers' own shares name."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import edgepack
from edgepack.bundle import file_sha256, seal_manifest
from tests.conftest import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL
from tests.integration.test_digits import invoke
from tests.unit.test_channels import validate_drift_report

TARGETS = ("tflite", "onnx", "coreml")
KERAS_LAYERS = {"conv1", "conv2", "pool", "flatten", "dense", "probabilities"}
OFF = {"min_agreement": "off", "max_drop": "off", "min_sqnr": "off"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("layers") / "bundles"
    edgepack.build(DIGITS_MODEL, list(TARGETS), DIGITS_CALIB, out=out, cwd=out, environ={})
    return out


def layer_table(report: dict) -> dict[str, float]:
    return {entry["layer"]: entry["sqnr_db"] for entry in report["layers"]["layers"]}


@pytest.mark.parametrize("target", TARGETS)
def test_layers_of_a_healthy_bundle(bundles: Path, tmp_path: Path, target: str) -> None:
    code, stdout, stderr = invoke(
        "check", bundles / f"digits-{target}", "--data", DIGITS_EVAL, "--model", DIGITS_MODEL,
        "--layers", "--json", tmp_path / "report.json", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, stderr
    report = json.loads((tmp_path / "report.json").read_text())
    validate_drift_report(report)
    table = layer_table(report)
    assert set(table) >= KERAS_LAYERS  # named after the Keras layers
    assert report["layers"]["unmatched_layers"] == ["dropout"]  # no tensor in inference
    assert report["layers"]["samples"] == 64
    floor = 40.0 if target == "coreml" else 35.0  # w8 weights vs int8 activations
    assert min(table[name] for name in KERAS_LAYERS) > floor, table
    sqnrs = [entry["sqnr_db"] for entry in report["layers"]["layers"]]
    assert sqnrs == sorted(sqnrs)  # worst first
    assert "per-layer drift, worst first" in stdout and "conv2" in stdout


def _rehash(bundle: Path) -> None:
    """Make the manifest accept the edited model file (the test damages it on purpose)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    name = manifest["model"]["file"]
    manifest["model"]["sha256"] = file_sha256(bundle / name)
    if name in manifest.get("files", {}):
        manifest["files"][name] = manifest["model"]["sha256"]
    (bundle / "manifest.json").write_text(json.dumps(seal_manifest(manifest), indent=2))


def _perturbed(weights: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).integers(-60, 61, weights.shape)
    return np.clip(weights.astype(np.int32) + noise, -127, 127).astype(weights.dtype)


def _replace_once(path: Path, weights: np.ndarray) -> None:
    data = path.read_bytes()
    raw = weights.tobytes()
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0, "the weights are not stored exactly once"
    path.write_bytes(data[:at] + _perturbed(weights).tobytes() + data[at + len(raw) :])


def _damage_tflite(bundle: Path, layer: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(bundle / "model.tflite"))
    for detail in interpreter.get_tensor_details():
        name = detail["name"]
        is_weight = len(detail["shape"]) == 4 and detail["dtype"] == np.int8 and ";" not in name
        if f"/{layer}_1/convolution" in name and is_weight:
            _replace_once(bundle / "model.tflite", interpreter.get_tensor(detail["index"]))
            return
    raise AssertionError(f"no int8 weight of {layer}")


def _damage_onnx(bundle: Path, layer: str) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    for init in model.graph.initializer:
        if f"/{layer}_1/" in init.name and init.data_type == onnx.TensorProto.INT8:
            weights = _perturbed(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
            onnx.save(model, str(bundle / "model.onnx"))
            return
    raise AssertionError(f"no int8 weight of {layer}")


def _damage_coreml(bundle: Path, layer: str) -> None:
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    package = bundle / json.loads((bundle / "manifest.json").read_text())["model"]["file"]
    mlmodel = ct.models.MLModel(str(package), skip_model_load=True)
    spec = mlmodel.get_spec()
    program = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    for op in program.functions["main"].operations:
        consumers = [child.name for child in op.outputs[0].child_ops]
        if op.op_type.startswith("constexpr") and any(f"_{layer}_1_" in c for c in consumers):
            weights = op.inputs["quantized_data"].val
            _replace_once(next(package.rglob("weight.bin")), weights)
            return
    raise AssertionError(f"no compressed weight of {layer}")


DAMAGE: dict[str, Callable[[Path, str], None]] = {
    "tflite": _damage_tflite,
    "onnx": _damage_onnx,
    "coreml": _damage_coreml,
}


@pytest.mark.parametrize("target", TARGETS)
def test_the_damaged_layer_is_the_worst(bundles: Path, tmp_path: Path, target: str) -> None:
    damaged = tmp_path / f"digits-{target}"
    shutil.copytree(bundles / f"digits-{target}", damaged)
    DAMAGE[target](damaged, "conv2")
    _rehash(damaged)
    result = edgepack.check(
        damaged, DIGITS_EVAL, model=DIGITS_MODEL, layers=True, cwd=tmp_path, environ={}, **OFF
    )
    report = result.layers
    assert report is not None and report.worst is not None
    assert report.worst.layer == "conv2", [(d.layer, round(d.sqnr_db, 1)) for d in report.layers]
    table = {d.layer: d.sqnr_db for d in report.layers}
    assert table["conv2"] < 15.0  # from above 35 dB when healthy
    assert table["conv1"] > 35.0  # the layer before it is untouched
    assert result.report.min_sqnr_db < 30.0  # and the output shows it


class _Page(HTMLParser):
    """The parts of the HTML report a test looks at."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "img":
            self.images.append(values)
        self.links += [values[key] for key in ("src", "href") if key in values]
        self._in_heading = tag in ("h1", "h2")

    def handle_data(self, data: str) -> None:
        if self._in_heading and data.strip():
            self.headings.append(data.strip())
            self._in_heading = False


def test_html_report_of_a_damaged_bundle(bundles: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "digits-onnx"
    shutil.copytree(bundles / "digits-onnx", damaged)
    _damage_onnx(damaged, "conv2")
    _rehash(damaged)
    code, _, stderr = invoke(
        "check", damaged, "--data", DIGITS_EVAL, "--model", DIGITS_MODEL, "--layers",
        "--html", tmp_path / "r.html", cwd=tmp_path,
    )  # fmt: skip
    assert code == 1, stderr  # the damage breaks the agreement budget
    page = _Page()
    text = (tmp_path / "r.html").read_text()
    page.feed(text)
    alts = [image["alt"] for image in page.images]
    assert alts == [
        "per-layer SQNR bars",
        "float-vs-quantized scatter",
        "top-1 disagreement confusion",
    ]
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(image["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert not [link for link in page.links if not link.startswith("data:")]  # self-contained
    assert "Verdict:" in page.headings[1] and "Bundle" in page.headings
    assert any(h.startswith("Top-1 disagreements (") for h in page.headings)
    assert "the float model was right on" in text
    assert "<td>conv2</td>" in text


def test_build_measures_layers_when_the_config_asks(tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text("[targets.tflite.drift]\nlayers = true\n")
    code, stdout, stderr = invoke(
        "build", DIGITS_MODEL, "-t", "tflite", "-c", DIGITS_CALIB, "-o", tmp_path / "b",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, stderr
    drift = json.loads((tmp_path / "b" / "digits-tflite" / "drift.json").read_text())
    validate_drift_report(drift)
    assert drift["layers"]["samples"] == 64  # of the 200 held-out samples
    assert set(layer_table(drift)) >= KERAS_LAYERS
    assert "tflite: worst layer conv2" in stdout


@pytest.mark.parametrize(("target", "path"), [("onnx", "unoptimized"), ("coreml", "emulator")])
def test_the_damaged_layer_contributes_most(
    bundles: Path, tmp_path: Path, target: str, path: str
) -> None:
    """Each layer kept in float alone: keeping the damaged one recovers more output SQNR than
    keeping any other, so the ranking by contribution names it first (accumulated drift also
    hits every layer after it). Core ML: the emulator runs the program with the layer's ops
    given the fp32 twin's weights."""
    damaged = tmp_path / f"digits-{target}"
    shutil.copytree(bundles / f"digits-{target}", damaged)
    DAMAGE[target](damaged, "conv2")
    _rehash(damaged)
    result = edgepack.check(
        damaged, DIGITS_EVAL, model=DIGITS_MODEL, layers=True, cwd=tmp_path, environ={}, **OFF
    )
    report = result.layers
    assert report is not None and report.path == path
    assert "kept in float" in report.contributions
    ranked = report.by_contribution()
    assert ranked[0].layer == "conv2", [(d.layer, d.contribution_db) for d in ranked]
    shares = {d.layer: d.contribution_db for d in ranked}
    others = [v for k, v in shares.items() if k != "conv2" and v is not None]
    # measured: onnx conv2 63.7 dB, coreml conv2 33.0 dB; every other layer < 0.1 dB
    assert shares["conv2"] is not None and shares["conv2"] > 15.0
    assert shares["conv2"] > max(others) + 5.0, shares
    document = report.to_dict()
    assert document["by_contribution"][0] == "conv2"


def test_contributions_stop_at_their_time_limit(
    bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the time limit no further chunk of layers is measured; the first always is."""
    from edgepack import api

    monkeypatch.setattr(api, "CONTRIBUTION_SECONDS", 0.0)
    result = edgepack.check(
        bundles / "digits-onnx", DIGITS_EVAL, model=DIGITS_MODEL, layers=True, cwd=tmp_path,
        environ={}, **OFF,
    )  # fmt: skip
    report = result.layers
    assert report is not None and len(report.layers) > api.CONTRIBUTION_CHUNK
    assert len(report.by_contribution()) == api.CONTRIBUTION_CHUNK
    assert report.contributions.endswith(
        f"{api.CONTRIBUTION_CHUNK} of {len(report.layers)} layers (the worst by SQNR); "
        "stopped after 0 s"
    )


def test_tflite_contributions_say_when_not_measured(bundles: Path, tmp_path: Path) -> None:
    target = "tflite"
    result = edgepack.check(
        bundles / f"digits-{target}",
        DIGITS_EVAL,
        model=DIGITS_MODEL,
        layers=True,
        cwd=tmp_path,
        environ={},
        **OFF,
    )
    report = result.layers
    assert report is not None and report.contributions.startswith("not measured")
    assert all(d.contribution_db is None for d in report.layers) and report.by_contribution() == []


def fragile_keras_model(path: Path) -> Path:
    """A conv net whose layer ``fragile`` has one output channel 300 times larger than the
    others, a channel the next layer ignores (its weights there are zero). Per-tensor int8
    activations give that layer's output a step too coarse for the channels that matter,
    although the layer's own SQNR stays high (the outlier dominates its signal power)."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="fragile"),
            keras.layers.Conv2D(8, 1, activation="relu", name="mix"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(3, name="scores"),
        ]
    )
    fragile, mix = model.get_layer("fragile"), model.get_layer("mix")
    kernel, bias = fragile.get_weights()
    kernel[..., 0] *= 300.0
    bias[0] = abs(bias[0]) + 1.0
    fragile.set_weights([kernel, bias])
    kernel, bias = mix.get_weights()
    kernel[:, :, 0, :] = 0.0
    mix.set_weights([kernel, bias])
    model.save(path)
    return path


def test_a_fragile_layer_is_ranked_first_by_its_own_share(tmp_path: Path) -> None:
    """Accumulated drift blames the layers after the fragile one; its own share names it."""
    from tests.conftest import write_gray_images

    model = fragile_keras_model(tmp_path / "fragile.keras")
    images = write_gray_images(tmp_path / "images", 96, (8, 8), classes=3)
    out = tmp_path / "out"
    edgepack.build(model, ["onnx"], images, out=out, cwd=tmp_path, environ={}, **OFF)
    result = edgepack.check(
        out / "fragile-onnx", images, layers=True, cwd=tmp_path, environ={}, **OFF
    )
    report = result.layers
    assert report is not None
    sqnr = {d.layer: d.sqnr_db for d in report.layers}
    shares = {d.layer: d.contribution_db for d in report.by_contribution()}
    assert next(iter(shares)) == "fragile", shares
    assert sqnr["fragile"] > sqnr["mix"] + 10.0, sqnr  # accumulated drift points past it
    others = [v for k, v in shares.items() if k != "fragile" and v is not None]
    # measured: own share fragile 40.0 dB, every other layer < 0.01 dB; accumulated SQNR
    # fragile 44.0 dB, mix 0.4 dB
    assert shares["fragile"] > 20.0 and shares["fragile"] > max(others) + 5.0, shares
