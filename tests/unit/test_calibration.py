"""Calibration sets: contract parsing, readers, labels, selection and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgepack.calib.contract import Preprocessing, read_contract
from edgepack.calib.dataset import open_sample_set
from edgepack.errors import CalibrationError
from edgepack.frontends.base import TensorSpec
from tests.conftest import write_gray_images

GRAY_INPUT = [TensorSpec("image", (None, 6, 6, 1), "float32")]


def test_images_in_class_folders_get_labels_in_numeric_order(tmp_path: Path) -> None:
    for name in ("10", "2", "1"):
        (tmp_path / name).mkdir()
        Image.new("L", (6, 6), 7).save(tmp_path / name / "a.png")
    (tmp_path / "calibration.toml").write_text('[preprocessing]\nsize = [6, 6]\ncolor = "GRAY"\n')
    samples = open_sample_set(tmp_path)
    assert samples.label_names == ("1", "2", "10")
    assert sorted(ref.label for ref in samples.samples) == [0, 1, 2]


def test_gray_preprocessing_follows_the_formula(tmp_path: Path) -> None:
    Image.new("L", (6, 6), 51).save(tmp_path / "a.png")
    (tmp_path / "calibration.toml").write_text(
        '[preprocessing]\nsize = [6, 6]\ncolor = "GRAY"\nscale = 0.01\nmean = [0.1]\nstd = [0.5]\n'
    )
    batch = open_sample_set(tmp_path).bind(GRAY_INPUT).load(open_sample_set(tmp_path).samples)
    assert batch["image"].shape == (1, 6, 6, 1)
    np.testing.assert_allclose(batch["image"], (51 * 0.01 - 0.1) / 0.5, rtol=1e-6)


def test_bgr_and_nchw_reorder_channels(tmp_path: Path) -> None:
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # R, G, B
    Image.fromarray(image, mode="RGB").save(tmp_path / "a.png")
    (tmp_path / "calibration.toml").write_text(
        '[preprocessing]\nsize = [4, 5]\ncolor = "BGR"\nscale = 1.0\nlayout = "NCHW"\n'
    )
    samples = open_sample_set(tmp_path)
    batch = samples.bind([TensorSpec("x", (None, 3, 4, 5), "float32")]).load(samples.samples)
    assert batch["x"].shape == (1, 3, 4, 5)
    assert [float(batch["x"][0, c, 0, 0]) for c in range(3)] == [30.0, 20.0, 10.0]


def test_resize_to_declared_size(tmp_path: Path) -> None:
    Image.new("RGB", (32, 16), (255, 0, 0)).save(tmp_path / "a.jpg")
    (tmp_path / "calibration.toml").write_text('[preprocessing]\nsize = [8, 8]\ncolor = "RGB"\n')
    samples = open_sample_set(tmp_path)
    batch = samples.bind([TensorSpec("x", (None, 8, 8, 3), "float32")]).load(samples.samples)
    assert batch["x"].shape == (1, 8, 8, 3)
    assert batch["x"][0, :, :, 0].mean() > 0.95


def test_labels_csv(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("L", (6, 6)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("file,label\na.png,dog\nb.png,cat\n")
    (tmp_path / "calibration.toml").write_text(
        '[preprocessing]\nsize = [6, 6]\ncolor = "GRAY"\n[labels]\nnames = ["dog", "cat"]\n'
    )
    samples = open_sample_set(tmp_path)
    assert samples.label_names == ("dog", "cat")
    assert [ref.label for ref in samples.samples] == [0, 1]


def test_labels_csv_missing_a_file_is_an_error(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.new("L", (6, 6)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("file,label\na.png,dog\n")
    (tmp_path / "calibration.toml").write_text('[preprocessing]\nsize = [6, 6]\ncolor = "GRAY"\n')
    with pytest.raises(CalibrationError, match=r"no label for b\.png"):
        open_sample_set(tmp_path)


def test_npy_samples_along_first_axis(tmp_path: Path) -> None:
    np.save(tmp_path / "part1.npy", np.full((3, 6, 6, 1), 0.5, np.float32))
    np.save(tmp_path / "part2.npy", np.full((2, 6, 6, 1), 0.25, np.float32))
    (tmp_path / "calibration.toml").write_text('input = "image"\n')
    samples = open_sample_set(tmp_path)
    assert len(samples) == 5 and not samples.has_labels
    batch = samples.bind(GRAY_INPUT).load(samples.samples)
    assert batch["image"].shape == (5, 6, 6, 1)
    assert float(batch["image"].sum()) == pytest.approx(36 * (3 * 0.5 + 2 * 0.25))


def test_npz_with_labels(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "set.npz",
        image=np.zeros((4, 6, 6, 1), np.float32),
        labels=np.array([0, 1, 2, 1]),
    )
    (tmp_path / "calibration.toml").write_text("")
    samples = open_sample_set(tmp_path)
    bound = samples.bind(GRAY_INPUT)
    assert samples.label_names == ("0", "1", "2")
    assert bound.labels(samples.samples).tolist() == [0, 1, 2, 1]


def test_nan_values_are_named(tmp_path: Path) -> None:
    data = np.zeros((3, 6, 6, 1), np.float32)
    data[2, 0, 0, 0] = np.nan
    np.save(tmp_path / "bad.npy", data)
    (tmp_path / "calibration.toml").write_text("")
    samples = open_sample_set(tmp_path)
    with pytest.raises(CalibrationError, match=r"bad\.npy\[2\]: contains NaN or infinite"):
        samples.bind(GRAY_INPUT).load(samples.samples)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    write_gray_images(tmp_path, 2, (6, 6))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    samples = open_sample_set(tmp_path)
    with pytest.raises(CalibrationError, match=r"broken\.png: unreadable image"):
        samples.bind(GRAY_INPUT).load(samples.samples)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "calibration.toml").write_text("")
    with pytest.raises(CalibrationError, match="empty set"):
        open_sample_set(tmp_path)


def test_missing_contract_and_missing_folder(tmp_path: Path) -> None:
    Image.new("L", (6, 6)).save(tmp_path / "a.png")
    with pytest.raises(CalibrationError, match=r"no calibration\.toml"):
        open_sample_set(tmp_path)
    with pytest.raises(CalibrationError, match="no such calibration"):
        open_sample_set(tmp_path / "nope")


def test_shape_mismatch_names_input_and_shapes(tmp_path: Path) -> None:
    write_gray_images(tmp_path, 2, (5, 5))
    samples = open_sample_set(tmp_path)
    with pytest.raises(CalibrationError, match=r"\(5, 5, 1\) does not match model input 'image'"):
        samples.bind(GRAY_INPUT)


def test_unknown_input_name(tmp_path: Path) -> None:
    write_gray_images(tmp_path, 2, (6, 6), input_name="pixels")
    with pytest.raises(CalibrationError, match="'pixels' is not an input of the model"):
        open_sample_set(tmp_path).bind(GRAY_INPUT)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('color = "CMYK"', "color must be one of"),
        ('layout = "HWC"', "layout must be NHWC or NCHW"),
        ('resize = "magic"', "resize must be one of"),
        ("std = [0.0]", "std values must not be 0"),
        ('color = "RGB"\nmean = [0.1, 0.2]', "mean needs 1 or 3 values"),
        ("size = [8]", "size must be"),
        ("brightness = 2", "unknown preprocessing key"),
    ],
)
def test_contract_validation(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "calibration.toml").write_text(f"[preprocessing]\n{table}\n")
    with pytest.raises(CalibrationError, match=message):
        read_contract(tmp_path)


def test_split_is_deterministic_disjoint_and_seed_dependent(tmp_path: Path) -> None:
    samples = open_sample_set(write_gray_images(tmp_path, 30, (6, 6)))
    first, again = samples.split(10, 100, seed=3), samples.split(10, 100, seed=3)
    other = samples.split(10, 100, seed=4)
    assert first == again
    assert first.calibration != other.calibration
    assert len(first.calibration) == 10 and len(first.held_out) == 20
    assert not set(first.calibration) & set(first.held_out)


def test_split_of_a_small_set_still_holds_samples_out(tmp_path: Path) -> None:
    samples = open_sample_set(write_gray_images(tmp_path, 10, (6, 6)))
    split = samples.split(200, 500, seed=0)
    assert (len(split.calibration), len(split.held_out)) == (8, 2)


def test_fingerprint_changes_with_content_and_preprocessing(tmp_path: Path) -> None:
    folder = write_gray_images(tmp_path / "set", 4, (6, 6))
    before = open_sample_set(folder).fingerprint()
    assert open_sample_set(folder).fingerprint() == before
    Image.new("L", (6, 6), 3).save(folder / "000.png")
    changed = open_sample_set(folder).fingerprint()
    assert changed != before
    contract = (folder / "calibration.toml").read_text().replace("nearest", "bilinear")
    (folder / "calibration.toml").write_text(contract)
    assert open_sample_set(folder).fingerprint() != changed


def test_preprocessing_roundtrips_through_a_manifest_dict() -> None:
    contract = Preprocessing(size=(8, 8), color="RGB", mean=(0.5, 0.4, 0.3), std=(0.2,))
    assert Preprocessing.from_dict(contract.to_dict(), "manifest") == contract


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'preprocessing = "gray"\n',
            r"'preprocessing' must be a table \(\[preprocessing\]\), got str",
        ),
        ("labels = 5\n", r"'labels' must be a table \(\[labels\]\), got int 5"),
    ],
)
def test_a_key_where_a_table_belongs_is_a_calibration_error(
    tmp_path: Path, text: str, message: str
) -> None:
    """A string or number where calibration.toml wants a table names the key (exit 3); it
    used to be an internal error."""
    (tmp_path / "calibration.toml").write_text(text)
    with pytest.raises(CalibrationError, match=message) as caught:
        read_contract(tmp_path)
    assert caught.value.exit_code == 3
