"""Per-channel / per-slice drift, collapse detection, and the JSON and JUnit reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from edgepack.bundle import write_report
from edgepack.drift import compare_outputs
from edgepack.drift.channels import channel_drift, parse_slice
from edgepack.drift.junit import junit_xml
from edgepack.errors import ConfigError
from edgepack.options import Thresholds, resolve_check_options


def detector(samples: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float boxes (hundreds) + scores (0..1), and a quantized copy with one int8 scale for
    the whole tensor: every score rounds to 0."""
    rng = np.random.default_rng(seed)
    boxes = 150 + 100 * rng.standard_normal((samples, 4))
    scores = rng.random((samples, 3))
    reference = np.concatenate([boxes, scores], axis=1).astype(np.float32)
    scale = np.abs(reference).max() / 127
    quantized = (np.round(reference / scale) * scale).astype(np.float32)
    return reference, quantized


def test_whole_tensor_sqnr_hides_the_collapse_that_channels_show() -> None:
    reference, quantized = detector()
    report = compare_outputs({"det": reference}, {"det": quantized}, None, Thresholds(None, None))
    (output,) = report.outputs
    assert output.sqnr_db > 40  # looks fine as a whole
    assert output.channels is not None and len(output.channels) == 7
    assert [c.name for c in output.collapsed] == ["channel 4", "channel 5", "channel 6"]
    assert all("constant" in (c.reason or "") for c in output.collapsed)
    assert all(not c.collapsed and c.sqnr_db > 25 for c in output.channels[:4])
    assert not report.passed
    assert report.failures == [
        f"output 'det' channel {k} collapsed: quantized values constant (0)" for k in (4, 5, 6)
    ]


def test_allowed_collapse_is_reported_but_passes() -> None:
    reference, quantized = detector()
    limits = Thresholds(None, None, None, allow_collapse=True)
    report = compare_outputs({"det": reference}, {"det": quantized}, None, limits)
    assert report.passed and len(report.outputs[0].collapsed) == 3


def test_negative_sqnr_is_a_collapse() -> None:
    reference, _ = detector()
    noisy = reference.copy()
    noisy[:, 5] = 1.0 - reference[:, 5] + 0.7  # varies, but mostly error
    (channel,) = [c for c in channel_drift(reference, noisy) or [] if c.collapsed]
    assert channel.name == "channel 5" and channel.sqnr_db < 0
    assert "dB < 0 dB" in (channel.reason or "")


def test_similar_ranges_and_probabilities_are_not_split() -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((20, 5)).astype(np.float32)
    assert channel_drift(logits, logits + 0.01) is None  # ranges within 10x
    probs = np.exp(logits * 4) / np.exp(logits * 4).sum(axis=1, keepdims=True)
    probs[:, 0] *= 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    assert channel_drift(probs, np.round(probs * 255) / 255) is None  # left to agreement
    assert channel_drift(np.arange(5.0), np.arange(5.0)) is None  # no channel axis
    image = np.concatenate([rng.random((4, 1, 6, 3)), 100 * rng.random((4, 1, 6, 3))], axis=-1)
    split = channel_drift(image, np.round(image))  # NHWC: channels differ 100x on the last axis
    assert split is not None and {c.axis for c in split} == {3} and len(split) == 6
    segmentation = rng.random((2, 4, 5, 5))
    segmentation[:, 0] *= 1e-3
    segmentation /= segmentation.sum(axis=1, keepdims=True)  # per-pixel softmax over axis 1
    assert channel_drift(segmentation, np.round(segmentation * 255) / 255) is None
    assert channel_drift(image, np.round(image), {"left": "0:3"}) is not None  # unless declared
    text_map = rng.random((2, 1, 64, 64))  # a DBNet probability map, empty near one border
    text_map[..., :4] *= 1e-4
    assert channel_drift(text_map, np.round(text_map * 255) / 255) is None  # columns, not channels


def test_declared_slices_are_measured_apart() -> None:
    reference, quantized = detector()
    channels = channel_drift(reference, quantized, {"boxes": "0:4", "scores": "4:"})
    assert channels is not None
    assert [(c.name, c.start, c.stop, c.collapsed) for c in channels] == [
        ("boxes", 0, 4, False),
        ("scores", 4, 7, True),
    ]


@pytest.mark.parametrize(
    ("text", "expected"), [("0:4", (0, 4)), ("4:", (4, None)), (":2", (0, 2)), ("3", (3, 4))]
)
def test_parse_slice(text: str, expected: tuple) -> None:
    assert parse_slice(text) == expected


@pytest.mark.parametrize("text", ["a:b", "4:2", "-1:", "1:2:3", "0:9"])
def test_parse_slice_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a slice"):
        parse_slice(text, width=7)


def test_slices_of_an_unknown_output_or_past_the_axis_are_config_errors() -> None:
    reference, quantized = detector()
    with pytest.raises(ConfigError, match="outputs are"):
        compare_outputs(
            {"det": reference}, {"det": quantized}, None, Thresholds(), slices={"x": {"a": "0:1"}}
        )
    with pytest.raises(ConfigError, match="last axis has 7"):
        compare_outputs(
            {"det": reference}, {"det": quantized}, None, Thresholds(), slices={"det": {"a": "5:9"}}
        )


def test_slices_and_allow_collapse_come_from_config_and_environment(tmp_path: Path) -> None:
    (tmp_path / "edgepack.toml").write_text(
        '[drift.slices]\ndetections = { boxes = "0:4", scores = "4:" }\n'
    )
    options = resolve_check_options({}, "tflite", {}, tmp_path, {"EDGEPACK_ALLOW_COLLAPSE": "1"})
    assert options.slices == {"detections": {"boxes": "0:4", "scores": "4:"}}
    assert options.thresholds.allow_collapse is True
    (tmp_path / "edgepack.toml").write_text('[drift.slices]\ndetections = { boxes = "4:2" }\n')
    with pytest.raises(ConfigError, match=r"drift.slices: .*expected a slice"):
        resolve_check_options({}, "tflite", {}, tmp_path, {})


def validate_drift_report(data: dict) -> None:
    import jsonschema

    from edgepack.bundle import DRIFT_SCHEMA_FILE

    jsonschema.validate(data, json.loads(DRIFT_SCHEMA_FILE.read_text()))


def test_json_report_validates_with_and_without_channels() -> None:
    import jsonschema

    reference, quantized = detector()
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((50, 3)).astype(np.float32)
    report = compare_outputs(
        {"logits": logits, "det": reference},
        {"logits": logits + 0.01, "det": quantized},
        rng.integers(0, 3, 50),
        Thresholds(min_sqnr=20.0),
        runtime="test",
        data={"path": "x", "fingerprint": "0" * 64},
    )
    data = {"bundle": "b", **report.to_dict()}
    validate_drift_report(data)
    assert data["outputs"][0]["channels"] is None
    assert len(data["outputs"][1]["channels"]) == 7
    data["outputs"][1]["channels"][0]["collapsed"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        validate_drift_report(data)


def test_junit_has_one_case_per_threshold_and_output(tmp_path: Path) -> None:
    reference, quantized = detector()
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((50, 3)).astype(np.float32)
    report = compare_outputs(
        {"logits": logits, "det": reference},
        {"logits": logits + 0.001, "det": quantized},  # logits ~60 dB, det ~45 dB
        None,  # no labels: the accuracy drop is skipped
        Thresholds(min_agreement=0.99, max_drop=0.01, min_sqnr=50.0),
        data={"fingerprint": "f" * 64},
    )
    path = tmp_path / "reports" / "drift.xml"
    write_report(path, junit_xml(report, "bundles/m-tflite"))
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [
        "top-1 agreement",
        "accuracy drop",
        "SQNR of logits",
        "SQNR of det",
        "no collapsed channel in logits",
        "no collapsed channel in det",
    ]
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    skipped = {name for name, case in cases.items() if case.find("skipped") is not None}
    assert failed == {"SQNR of det", "no collapsed channel in det"}
    assert skipped == {"accuracy drop", "no collapsed channel in logits"}
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("6", "2", "2")
    message = cases["no collapsed channel in det"].find("failure").get("message")  # type: ignore[union-attr]
    assert message.startswith("output 'det' channel 4 collapsed: quantized values constant")
    assert message.count("collapsed") == 3  # the verdict's own lines, one per channel
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["bundle"] == "bundles/m-tflite" and properties["data_fingerprint"] == "f" * 64
    passing = compare_outputs({"l": logits}, {"l": logits}, None, Thresholds())
    assert 'failures="0"' in junit_xml(passing, "b")


def test_a_profile_drift_table_with_slices_fits_the_manifest_schema() -> None:
    """The profile's drift table is recorded in the manifest (``target.drift``)."""
    import jsonschema

    from edgepack.bundle import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())["properties"]["target"]["properties"]["drift"]
    table = {"min_sqnr": 20, "allow_collapse": True, "slices": {"det": {"boxes": "0:4"}}}
    jsonschema.validate(table, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**table, "slices": {"det": {"boxes": 4}}}, schema)


def test_mixed_range_outputs_are_detector_tensors_not_probabilities() -> None:
    from edgepack.drift.channels import mixed_range_outputs

    reference, _ = detector()
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((40, 3)) * np.array([8.0, 0.1, 0.1])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # rare classes: tiny ranges
    found = mixed_range_outputs({"detections": reference, "probs": probs})
    assert set(found) == {"detections"}
    axis, ratio = found["detections"]
    assert ratio > 16 and axis == reference.ndim - 1


def test_a_dead_channel_of_an_embedding_is_not_a_collapse() -> None:
    """An embedding dimension that barely moves (range 1e-9 beside others of 0.1) gets a
    hugely negative SQNR from any rounding: it carries nothing, so it cannot collapse."""
    rng = np.random.default_rng(5)
    embedding = rng.normal(size=(40, 16)) * np.linspace(0.01, 0.3, 16)
    embedding[:, 3] = 1e-9 * rng.normal(size=40)
    quantized = embedding + 1e-4 * rng.normal(size=embedding.shape)
    channels = channel_drift(embedding, quantized)
    assert channels is not None
    assert channels[3].sqnr_db < -50 and not channels[3].collapsed
