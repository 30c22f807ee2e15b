"""The preprocessing contract of a calibration or evaluation set (``calibration.toml``).

The contract says exactly how a raw image becomes the model's input tensor, and it is written
into every bundle's manifest so that the app reproduces it::

    x = (pixel * scale - mean[c]) / std[c]

where ``pixel`` is the 0..255 value after decoding, conversion to the colour mode and resizing
to ``size`` (height, width), and ``c`` the channel in the declared colour order. ``layout``
places the channel axis (NHWC or NCHW). Array sets (``.npy``/``.npz``) are already
preprocessed: only ``input``, ``layout`` and ``dtype`` apply to them.

Example::

    input = "image"                 # the model input this set feeds (default: the only one)

    [preprocessing]
    size = [8, 8]                   # height, width
    resize = "bilinear"             # nearest | bilinear | bicubic | lanczos | box | hamming
    color = "GRAY"                  # RGB | BGR | GRAY
    scale = 0.00392156862745098     # 1/255
    mean = [0.0]
    std = [1.0]
    layout = "NHWC"                 # NHWC | NCHW
    dtype = "float32"

    [labels]                        # optional: class order (default: sorted folder names)
    names = ["cat", "dog"]
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import CalibrationError

CONTRACT_FILE = "calibration.toml"
RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
COLOR_MODES = {"RGB": 3, "BGR": 3, "GRAY": 1}
LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("float32",)
_TOP_KEYS = {"input", "preprocessing", "labels"}
_PREPROCESSING_KEYS = {"size", "resize", "color", "scale", "mean", "std", "layout", "dtype"}
_LABEL_KEYS = {"names"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become input tensors. ``size`` is ``None`` for array sets."""

    size: tuple[int, int] | None = None
    resize: str = "bilinear"
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NHWC"
    dtype: str = "float32"

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color]

    def sample_shape(self) -> tuple[int, ...] | None:
        """Shape of one preprocessed image (no batch axis), or None for array sets."""
        if self.size is None:
            return None
        height, width = self.size
        if self.layout == "NHWC":
            return (height, width, self.channels)
        return (self.channels, height, width)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size) if self.size else None
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["formula"] = "x = (pixel * scale - mean[c]) / std[c]"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> Preprocessing:
        """Validate a ``[preprocessing]`` table (or a manifest's copy of one)."""
        data = {k: v for k, v in data.items() if k != "formula"}
        unknown = set(data) - _PREPROCESSING_KEYS
        if unknown:
            raise CalibrationError(f"{origin}: unknown preprocessing key(s) {sorted(unknown)}")
        values = dict(data)
        try:
            if values.get("size") is not None:
                size = [int(v) for v in values["size"]]
                if len(size) != 2 or min(size) < 1:
                    raise ValueError("size must be [height, width] with positive integers")
                values["size"] = (size[0], size[1])
            for key in ("mean", "std"):
                if key in values:
                    raw = values[key]
                    values[key] = tuple(float(v) for v in (raw if isinstance(raw, list) else [raw]))
            if "scale" in values:
                values["scale"] = float(values["scale"])
            if "color" in values:
                values["color"] = str(values["color"]).upper()
            if "layout" in values:
                values["layout"] = str(values["layout"]).upper()
            contract = cls(**values)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"{origin}: invalid preprocessing: {exc}") from None
        contract.validate(origin)
        return contract

    def validate(self, origin: str) -> None:
        def fail(problem: str) -> None:
            raise CalibrationError(f"{origin}: invalid preprocessing: {problem}")

        if self.resize not in RESIZE_METHODS:
            fail(f"resize must be one of {', '.join(RESIZE_METHODS)}, got {self.resize!r}")
        if self.color not in COLOR_MODES:
            fail(f"color must be one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if self.layout not in LAYOUTS:
            fail(f"layout must be NHWC or NCHW, got {self.layout!r}")
        if self.dtype not in DTYPES:
            fail(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) not in (1, self.channels):
                fail(f"{key} needs 1 or {self.channels} values for {self.color}, got {len(values)}")
        if any(s == 0 for s in self.std):
            fail("std values must not be 0")


@dataclass(frozen=True)
class Contract:
    """A parsed ``calibration.toml``."""

    preprocessing: Preprocessing
    input_name: str | None = None
    label_names: tuple[str, ...] | None = None


def read_contract(folder: Path) -> Contract | None:
    """Read ``folder/calibration.toml``; None when the folder has none."""
    path = folder / CONTRACT_FILE
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise CalibrationError(
            f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    for table in ("labels", "preprocessing"):
        if not isinstance(data.get(table, {}), dict):
            raise CalibrationError(
                f"{path}: '{table}' must be a table ([{table}]), "
                f"got {type(data[table]).__name__} {data[table]!r}"
            )
    labels = data.get("labels", {})
    if set(labels) - _LABEL_KEYS:
        raise CalibrationError(
            f"{path}: unknown key(s) in [labels]: {sorted(set(labels) - _LABEL_KEYS)}"
        )
    names = labels.get("names")
    if names is not None and (
        not isinstance(names, list) or len(set(map(str, names))) != len(names)
    ):
        raise CalibrationError(f"{path}: [labels] names must be a list of distinct names")
    input_name = data.get("input")
    if input_name is not None and not isinstance(input_name, str):
        raise CalibrationError(f"{path}: 'input' must be a string (a model input name)")
    return Contract(
        preprocessing=Preprocessing.from_dict(dict(data.get("preprocessing", {})), str(path)),
        input_name=input_name,
        label_names=tuple(str(n) for n in names) if names is not None else None,
    )
