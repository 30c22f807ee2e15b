"""The contract every backend keeps. It runs once per entry of ``BACKENDS``, so a new target
gets the whole suite by being registered (and shipping a profile of the same name)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack import api
from edgepack.backends import BACKENDS
from edgepack.bundle import (
    FIRMWARE_NOTE,
    file_sha256,
    read_manifest,
    seal_manifest,
    size_bytes,
)
from edgepack.calib.dataset import open_sample_set
from edgepack.drift.metrics import sqnr_db
from edgepack.errors import BundleError, ConfigError, UnsupportedError
from edgepack.frontends import load_source
from edgepack.frontends.base import SourceModel, TensorSpec
from edgepack.options import resolve_build_options
from edgepack.profiles import load_profile
from tests.conftest import assert_valid_manifest
from tests.integration.models import token_classifier_onnx, token_set
from tests.unit.test_channels import validate_drift_report

# What the contract fixture's project says about its model: written into every model file.
PROJECT_CONFIG = """\
[model]
name = "tiny classifier"
version = "2.1.0"
author = "edgepack tests"
license = "MIT"
description = "Three shapes on a 6x6 grey image"
"""


def tflite_metadata(model_file: Path) -> dict:
    """TFLite Metadata read with the published schema (field slots) and the packed zip."""
    import io
    import zipfile

    from tests.unit.test_tflite_metadata import FbTable, tflite_metadata

    data = model_file.read_bytes()
    root = FbTable.root(tflite_metadata(data))
    (subgraph,) = root.tables(3)
    (image,) = subgraph.tables(2)
    (output,) = subgraph.tables(3)
    content = image.table(3).table(1)  # Content.content_properties: ImageProperties
    (unit,) = image.tables(4)
    (labels_file,) = output.tables(6)
    packed = zipfile.ZipFile(io.BytesIO(data))
    return {
        "name": root.string(0),
        "version": root.string(2),
        "author": root.string(4),
        "license": root.string(5),
        "description": root.string(1),
        "contract": json.loads(packed.read("edgepack-contract.json")),
        "labels": packed.read(labels_file.string(0)).decode().splitlines(),
        "image": {
            "color_space": content.uint8(0),
            "size": [content.table(1).uint32(1), content.table(1).uint32(0)],
            "mean": unit.table(1).floats(0),
            "std": unit.table(1).floats(1),
        },
    }


def coreml_metadata(model_file: Path) -> dict:
    """The package's spec, read with coremltools' protobuf classes."""
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((model_file / "Data/com.apple.CoreML/model.mlmodel").read_bytes())
    meta = spec.description.metadata
    return {
        "name": model_file.name.removesuffix(".mlpackage"),
        "version": meta.versionString,
        "author": meta.author,
        "license": meta.license,
        "description": meta.shortDescription,
        "contract": json.loads(meta.userDefined["edgepack.contract"]),
        "labels": meta.userDefined["edgepack.labels"].split("\n"),
        "preview": meta.userDefined.get("com.apple.coreml.model.preview.type"),
    }


def onnx_metadata(model_file: Path) -> dict:
    """What onnxruntime (an app's runtime) reports of the model's metadata."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(model_file)).get_modelmeta()
    props = meta.custom_metadata_map
    return {
        "name": props["name"],
        "version": props["version"],
        "author": props["author"],
        "license": props["license"],
        "description": meta.description,
        "contract": json.loads(props["edgepack.contract"]),
        "labels": props["labels"].split("\n"),
    }


# One reader per target, each the platform's own (a new target adds its reader here).
METADATA_READERS = {"tflite": tflite_metadata, "coreml": coreml_metadata, "onnx": onnx_metadata}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def built(
    request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """One bundle of the tiny model per backend, built through the public API."""
    name = request.param
    out = tmp_path_factory.mktemp(f"contract-{name}")
    (out / "edgepack.toml").write_text(PROJECT_CONFIG)
    results = api.build(
        tiny_model_dir / "tiny.keras",
        [name],
        tiny_model_dir / "calib",
        out=out,
        num_calib=30,
        cwd=out,
        environ={},
    )
    return {"name": name, "result": results[0], "out": out, "dir": tiny_model_dir}


def manifest_of(result: object) -> dict:
    return json.loads((result.bundle / "manifest.json").read_text())  # type: ignore[attr-defined]


class TestBackendContract:
    def test_bundle_has_model_manifest_and_drift(self, built: dict) -> None:
        result = built["result"]
        backend = BACKENDS[built["name"]]
        files = sorted(p.name for p in result.bundle.iterdir())
        model_file = manifest_of(result)["model"]["file"]
        assert files == sorted(
            [model_file, "manifest.json", "drift.json", "labels.txt", FIRMWARE_NOTE]
        )
        manifest = read_manifest(result.bundle)
        assert_valid_manifest(manifest)
        drift = json.loads((result.bundle / "drift.json").read_text())
        validate_drift_report(drift)
        assert drift["verdict"] == manifest["drift"]["verdict"]
        model = result.bundle / manifest_of(result)["model"]["file"]
        assert manifest["model"]["size_bytes"] == size_bytes(model) > 0
        assert manifest["model"]["sha256"] == file_sha256(model)
        assert manifest["target"]["backend"] == backend.name

    def test_the_model_file_carries_the_app_contract(self, built: dict) -> None:
        """Name, version, author, licence, the preprocessing contract and the labels, read
        back from the model file alone by the target's own reader."""
        assert built["name"] in METADATA_READERS, f"no metadata reader for {built['name']}"
        manifest = built["result"].manifest
        model_file = built["result"].bundle / manifest["model"]["file"]
        meta = METADATA_READERS[built["name"]](model_file)
        assert manifest["app"]["name"] == "TinyClassifier"
        assert (meta["name"], meta["version"], meta["author"], meta["license"]) == (
            "TinyClassifier",
            "2.1.0",
            "edgepack tests",
            "MIT",
        )
        assert meta["description"] == "Three shapes on a 6x6 grey image"
        assert meta["contract"]["preprocessing"] == manifest["preprocessing"]
        assert meta["labels"] == manifest["labels"] == ["0", "1", "2"]
        assert [o["name"] for o in meta["contract"]["outputs"]] == [
            o["name"] for o in manifest["outputs"]
        ]
        if "image" in meta:  # TFLite: normalisation in pixel units, x = (pixel - mean) / std
            pre = manifest["preprocessing"]
            assert meta["image"]["size"] == pre["size"]
            assert meta["image"]["color_space"] == 2  # GRAYSCALE
            assert meta["image"]["mean"] == pytest.approx([m / pre["scale"] for m in pre["mean"]])
            assert meta["image"]["std"] == pytest.approx([d / pre["scale"] for d in pre["std"]])

    def test_outputs_say_what_they_hold_and_tensors_where_they_are(self, built: dict) -> None:
        manifest = built["result"].manifest
        (output,) = manifest["outputs"]
        # the tiny model ends in a softmax: inferred, and the labels index its class axis
        assert output["semantics"] == "probabilities"
        assert output["semantics_from"].startswith("inferred")
        assert output["labels"] == {"file": "labels.txt", "axis": 1}
        assert manifest["app"]["labels_output"] == output["name"]
        assert [t["index"] for t in manifest["inputs"]] == list(range(len(manifest["inputs"])))
        assert output["index"] is not None and output["index"] >= 0
        quantization = manifest["conventions"]["quantization"]
        assert "real = (q - zero_point) * scale" in quantization

    def test_every_source_tensor_is_mapped(self, built: dict) -> None:
        manifest = built["result"].manifest
        assert [t["source_name"] for t in manifest["inputs"]] == ["image"]
        assert [t["source_name"] for t in manifest["outputs"]] == ["scores"]
        assert manifest["inputs"][0]["layout"] == "NHWC"

    def test_emulator_matches_float_reference(self, built: dict) -> None:
        backend = BACKENDS[built["name"]]
        result = built["result"]
        source = load_source(built["dir"] / "tiny.keras")
        samples = open_sample_set(built["dir"] / "calib")
        feeds = samples.bind(source.inputs).load(samples.samples[:7])  # not a batch multiple
        from edgepack.backends.base import TensorInfo

        emulator = backend.emulate(
            result.bundle / manifest_of(result)["model"]["file"],
            [TensorInfo.from_dict(t) for t in result.manifest["inputs"]],
            [TensorInfo.from_dict(t) for t in result.manifest["outputs"]],
        )
        quantized = emulator.run(feeds)["scores"]
        reference = source.run(feeds)["scores"]
        assert quantized.shape == reference.shape == (7, 3)
        assert sqnr_db(reference, quantized) > 25.0
        assert emulator.runtime

    def test_every_execution_path_runs_and_is_reported(self, built: dict) -> None:
        """Each host path gives float outputs of the source's shape close to the float model;
        the drift report lists every path with its figures, the verdict is the worst path's,
        and the manifest says which paths were checked."""
        backend = BACKENDS[built["name"]]
        result = built["result"]
        paths = backend.paths()
        names = [p.name for p in paths]
        assert names and len(set(names)) == len(names)
        assert all(p.description for p in paths)
        source = load_source(built["dir"] / "tiny.keras")
        samples = open_sample_set(built["dir"] / "calib")
        feeds = samples.bind(source.inputs).load(samples.samples[:5])
        reference = source.run(feeds)["scores"]
        from edgepack.backends.base import TensorInfo

        args = (
            result.bundle / manifest_of(result)["model"]["file"],
            [TensorInfo.from_dict(t) for t in result.manifest["inputs"]],
            [TensorInfo.from_dict(t) for t in result.manifest["outputs"]],
        )
        for name in names:
            emulator = backend.emulate(*args, path=name)
            assert emulator.path == name
            assert sqnr_db(reference, emulator.run(feeds)["scores"]) > 25.0, name
        with pytest.raises(ConfigError, match="no execution path 'nonesuch'"):
            backend.emulate(*args, path="nonesuch")
        report = result.report
        checked = [p.name for p in paths if not p.on_request]  # the others when asked by name
        assert [p.name for p in report.paths] == checked
        assert report.path in names
        assert report.min_sqnr_db == pytest.approx(
            next(p for p in report.paths if p.name == report.path).min_sqnr_db
        )
        assert [p["name"] for p in result.manifest["drift"]["paths"]] == checked
        assert len(report.spread) == (1 if len(names) > 1 else 0)

    def test_drift_paths_narrow_the_check(self, built: dict, tmp_path: Path) -> None:
        backend = BACKENDS[built["name"]]
        last = backend.paths()[-1].name
        result = api.check(
            built["result"].bundle,
            built["dir"] / "calib",
            model=built["dir"] / "tiny.keras",
            paths=[last],
            cwd=tmp_path,
            environ={},
        )
        assert [p.name for p in result.report.paths] == [last] and result.report.path == last
        assert result.report.spread == []
        env = {"EDGEPACK_PATHS": "nonesuch"}
        with pytest.raises(ConfigError, match="has no execution path nonesuch"):
            api.check(
                built["result"].bundle,
                built["dir"] / "calib",
                model=built["dir"] / "tiny.keras",
                cwd=tmp_path,
                environ=env,
            )

    def test_the_model_file_declares_what_the_manifest_says(self, built: dict) -> None:
        backend = BACKENDS[built["name"]]
        result = built["result"]
        inputs, outputs = backend.model_io(result.bundle / manifest_of(result)["model"]["file"])
        assert [i.name for i in inputs] == [t["name"] for t in result.manifest["inputs"]]
        listed = {o.name for o in outputs}
        assert {t["name"] for t in result.manifest["outputs"]} <= listed

    @pytest.mark.parametrize(
        ("kind", "field", "value"),
        [("inputs", "shape", [2, 9, 9, 9]), ("outputs", "dtype", "int16"), ("inputs", "name", "x")],
    )
    def test_a_manifest_describing_another_model_is_damaged(
        self, built: dict, tmp_path: Path, kind: str, field: str, value: object
    ) -> None:
        bundle = tmp_path / "bundle"
        shutil.copytree(built["result"].bundle, bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest[kind][0][field] = value
        # resealed: a manifest rewritten as a whole, not edited (that alone is damage)
        (bundle / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
        with pytest.raises(BundleError, match="manifest") as caught:
            api.check(
                bundle,
                built["dir"] / "calib",
                model=built["dir"] / "tiny.keras",
                cwd=tmp_path,
                environ={},
            )
        assert caught.value.exit_code == 6

    def test_drift_report_measures_held_out_samples(self, built: dict) -> None:
        report = built["result"].report
        assert report.samples == 10  # 40 samples, 30 for calibration
        assert report.top1_agreement is not None and report.top1_agreement >= 0.8
        assert report.min_sqnr_db > 20.0
        assert built["result"].manifest["calibration"]["held_out"] == 10

    def test_layer_drift_names_the_source_layers(self, built: dict, tmp_path: Path) -> None:
        """``check --layers``: the bundle's tensors paired with a float twin's, named after
        the Keras layers, and the Keras model's own output reproduced by the twin."""
        result = api.check(
            built["result"].bundle,
            built["dir"] / "calib",
            model=built["dir"] / "tiny.keras",
            layers=True,
            cwd=tmp_path,
            environ={},
        )
        layers = result.layers
        assert layers is not None and layers.samples == 40  # the tiny calib set has 40 images
        table = {d.layer: d for d in layers.layers}
        assert {"conv", "scores"} <= set(table), sorted(table)
        assert layers.unmatched == [
            name for name in ("conv", "flatten", "scores") if name not in table
        ]
        assert all(d.sqnr_db > 20 for d in layers.layers), [
            (d.layer, d.sqnr_db) for d in layers.layers
        ]
        assert table["conv"].order < table["scores"].order
        assert layers.matching

    def test_build_is_deterministic(self, built: dict, tmp_path: Path) -> None:
        """The same model, calibration set and options give the same model file, byte for
        byte, in another process (with another hash seed)."""
        script = (
            "from edgepack import api\n"
            f"api.build({str(built['dir'] / 'tiny.keras')!r}, [{built['name']!r}], "
            f"{str(built['dir'] / 'calib')!r}, out={str(tmp_path)!r}, num_calib=30, "
            f"cwd={str(built['out'])!r}, environ={{}})\n"
        )
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
        again = json.loads((tmp_path / built["result"].bundle.name / "manifest.json").read_text())
        first = built["result"].manifest
        assert again["model"]["sha256"] == first["model"]["sha256"]
        assert again["calibration"]["fingerprint"] == first["calibration"]["fingerprint"]

    def test_calibration_candidates_start_with_the_profile_and_are_valid_settings(
        self, built: dict, tmp_path: Path
    ) -> None:
        backend = BACKENDS[built["name"]]
        settings = resolve_build_options(
            load_profile(backend.name), backend.settings_type, {}, tmp_path, {}
        ).settings
        candidates = backend.calibration_candidates(settings)
        assert candidates[0].overrides == {}
        assert len({c.name for c in candidates}) == len(candidates) >= 2
        changed = [dataclasses.replace(settings, **c.overrides) for c in candidates]
        assert len(set(changed)) == len(candidates)  # every candidate is another choice

    def test_a_tuned_build_keeps_the_best_candidate_and_records_every_one(
        self, built: dict, tmp_path: Path
    ) -> None:
        backend = BACKENDS[built["name"]]
        (tmp_path / "edgepack.toml").write_text("[tune]\nfolds = 2\n")  # the suite's time
        result = api.build(
            built["dir"] / "tiny.keras", [built["name"]], built["dir"] / "calib",
            out=tmp_path, num_calib=32, tune=True, cwd=tmp_path, environ={},
        )[0]  # fmt: skip
        manifest = result.manifest
        assert_valid_manifest(manifest)
        tuning = manifest["tuning"]
        # two folds of 16 samples: every one of the 32 validated once
        assert (tuning["folds"], tuning["validation_samples"]) == (2, 32)
        assert tuning["calibration_samples"] == 16  # the first fold's
        assert manifest["calibration"]["samples"] == 32  # the bundle calibrates on all
        settings = resolve_build_options(
            load_profile(backend.name), backend.settings_type, {}, tmp_path, {}
        ).settings
        names = [c.name for c in backend.calibration_candidates(settings)]
        assert [t["name"] for t in tuning["candidates"]] == names[: tuning["max_candidates"]]
        own, *others = tuning["candidates"]
        assert own["may_replace"] is None and own["resampled_wins"] is None
        for trial in others:  # judged against the profile's own choice, or failed
            assert (trial["may_replace"] is None) == (trial["error"] is not None)
            if trial["may_replace"] and trial["failures"] == own["failures"]:
                assert trial["resampled_wins"] >= 0.9
        eligible = [own, *(t for t in others if t["may_replace"])]
        best = max(eligible, key=lambda t: (-t["failures"], round(t["min_sqnr_db"] or 1e9, 2)))
        assert tuning["chosen"] == best["name"]
        chosen = next(t for t in tuning["candidates"] if t["name"] == tuning["chosen"])
        for key, value in chosen["settings"].items():
            assert manifest["target"]["settings"][key] == value

    def test_mixed_precision_widens_only_to_precisions_the_target_declares(
        self, built: dict, tmp_path: Path
    ) -> None:
        """A budget no bundle can hold (200 dB) makes the search widen up to its limit."""
        backend = BACKENDS[built["name"]]
        (tmp_path / "edgepack.toml").write_text("[tune]\nfolds = 2\n")  # the suite's time
        result = api.build(
            built["dir"] / "tiny.keras", [built["name"]], built["dir"] / "calib",
            out=tmp_path, num_calib=32, tune=True, min_sqnr=200, cwd=tmp_path, environ={},
        )[0]  # fmt: skip
        assert_valid_manifest(result.manifest)
        assert not result.passed
        settings = resolve_build_options(
            load_profile(backend.name), backend.settings_type, {}, tmp_path, {}
        ).settings
        wider = backend.precisions(settings)
        precision = result.manifest["tuning"]["precision"]
        if not wider:
            assert precision is None
            return
        assert not precision["holds"]
        assert all(r["own_share_db"] >= 0.1 for r in precision["ranked"])
        # the ladder climbs the target's precisions narrowest first, each within its limit
        assert [r["precision"] for r in precision["ladder"]] == list(wider)
        for rung in precision["ladder"]:
            at = [t for t in precision["trials"] if rung["precision"] in t["layers"].values()]
            assert len(at) <= min(rung["max_layers"], len(precision["ranked"]))
            assert all(len(t["layers"]) <= rung["max_layers"] for t in at)
        planned = [p for trial in precision["trials"] for p in trial["layers"].values()]
        assert set(planned) <= set(wider)
        assert planned == sorted(planned, key=list(wider).index)  # int16 tried before float
        if precision["layers"]:
            assert result.manifest["model"]["precision"] == precision["layers"]
        else:
            assert "precision" not in result.manifest["model"]
        # what tuning changed, measured beside the default bundle on the verdict's samples
        effect = result.manifest["tuning"]["effect"]
        tuned = effect["tuned"]
        assert tuned["size_bytes"] == result.manifest["model"]["size_bytes"]
        assert tuned["min_sqnr_db"] == round(result.report.min_sqnr_db, 2)
        assert tuned["precision_counts"] == result.manifest["model"]["precision_counts"]
        assert effect["default"]["latency_ms"] > 0 and tuned["latency_ms"] > 0
        if precision["layers"]:
            widened = sum(tuned["precision_counts"][p] for p in ("int16", "float"))
            assert widened > sum(
                effect["default"]["precision_counts"][p] for p in ("int16", "float")
            )

    def test_a_plan_the_target_cannot_express_is_refused(self, built: dict, tmp_path: Path) -> None:
        from edgepack.tune import WIDER, PrecisionPlan

        backend = BACKENDS[built["name"]]
        settings = resolve_build_options(
            load_profile(backend.name), backend.settings_type, {}, tmp_path, {}
        ).settings
        missing = [p for p in WIDER if p not in backend.precisions(settings)]
        if not missing:
            pytest.skip(f"{backend.name} expresses every precision")
        source = load_source(built["dir"] / "tiny.keras")
        plan = PrecisionPlan({"conv": missing[0]}, {"conv": ("conv",)})
        with pytest.raises(UnsupportedError, match=f"cannot give single layers {missing[0]}"):
            backend.build(source, None, settings, tmp_path, plan)  # type: ignore[arg-type]

    def test_default_profile_settings_are_valid(self, built: dict, tmp_path: Path) -> None:
        backend = BACKENDS[built["name"]]
        options = resolve_build_options(
            load_profile(backend.name), backend.settings_type, {}, tmp_path, {}
        )
        assert isinstance(options.settings, backend.settings_type)

    def test_rejects_string_inputs_before_building(self, built: dict) -> None:
        backend = BACKENDS[built["name"]]
        source = SourceModel(
            Path("text.onnx"),
            "onnx",
            [TensorSpec("ids", (None, 4), "int64"), TensorSpec("words", (None,), "object")],
            [TensorSpec("y", (None, 2), "float32")],
            runner=lambda f: {},
        )
        with pytest.raises(UnsupportedError, match=r"not these: words \(object\)"):
            backend.check_support(source, backend.settings_type())

    def test_integer_inputs_pass_through(self, built: dict, tmp_path: Path) -> None:
        """Token ids and an attention mask (int64) are fed as they are and never quantized;
        the bundle agrees with the float model."""
        model = token_classifier_onnx(tmp_path / "tokens.onnx")
        token_set(tmp_path / "calib", 100)
        (result,) = api.build(
            model, [built["name"]], tmp_path / "calib", out=tmp_path / "out", cwd=tmp_path,
            environ={}, min_agreement="off", max_drop="off",
        )  # fmt: skip
        manifest = result.manifest
        assert_valid_manifest(manifest)
        dtypes = {t["source_name"]: t["dtype"] for t in manifest["inputs"]}
        assert set(dtypes) == {"input_ids", "attention_mask"}
        assert set(dtypes.values()) <= {"int64", "int32"}
        assert all(t["quantization"] is None for t in manifest["inputs"])
        assert manifest["preprocessing"] is None
        assert manifest["drift"]["min_sqnr_db"] > 20.0

    def test_failed_build_leaves_no_bundle(
        self, built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        backend = BACKENDS[built["name"]]

        def broken(*args: object, **kwargs: object) -> None:
            raise UnsupportedError("simulated converter failure")

        monkeypatch.setattr(backend, "build", broken)
        with pytest.raises(UnsupportedError):
            api.build(
                built["dir"] / "tiny.keras",
                [built["name"]],
                built["dir"] / "calib",
                out=tmp_path / "out",
                cwd=tmp_path,
                environ={},
            )
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    def test_source_file_is_not_modified(self, built: dict, tmp_path: Path) -> None:
        model = tmp_path / "tiny.keras"
        shutil.copy(built["dir"] / "tiny.keras", model)
        before = hashlib.sha256(model.read_bytes()).hexdigest()
        api.build(
            model,
            [built["name"]],
            built["dir"] / "calib",
            out=tmp_path / "o",
            num_calib=30,
            cwd=tmp_path,
            environ={},
        )
        assert hashlib.sha256(model.read_bytes()).hexdigest() == before


def test_registry_backends_have_profiles() -> None:
    for name, backend in BACKENDS.items():
        assert backend.name == name
        assert load_profile(name).backend == name
        assert backend.model_file_name and backend.settings_type
