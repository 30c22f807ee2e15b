r"""The preprocessing contract of a calibration or evaluation set (``calibration.toml``).

The contract says exactly how a raw image becomes the model's input tensor, and it is written
into every bundle's manifest so that the app reproduces it::

    x = (pixel * scale - mean[c]) / std[c]

where ``pixel`` is the 0..255 value after decoding, conversion to the colour mode and resizing
to ``size`` (height, width), and ``c`` the channel in the declared colour order. ``layout``
places the channel axis (NHWC or NCHW). Array sets (``.npy``/``.npz``) are already
preprocessed: only ``input``, ``layout`` and ``dtype`` apply to them.

Example::

    input = "image"                 # the model input this set feeds (default: the only one)
    group = '^(\d+)_'               # optional: a regular expression on each sample's name
                                    # (its path in the set; array files: "file.npy[3]");
                                    # samples with the same first group (or match) belong
                                    # together, e.g. a page and its rotations: tuning's
                                    # validation folds keep them together and resample them
                                    # as one (a sample it does not match is its own group)

    [preprocessing]
    size = [8, 8]                   # height, width
    resize = "bilinear"             # nearest | bilinear | bicubic | lanczos | box | hamming
    antialias = false               # false: plain half-pixel resize any platform reproduces
                                    # (nearest or bilinear; edgepack.calib.geometry); true:
                                    # Pillow's filters, widened on a downscale (the default)
    fit = "stretch"                 # stretch | center_crop | letterbox
    pad = [0]                       # letterbox fill, 0..255, in the colour order below
    exif_orientation = "ignore"     # ignore | apply (rotate/flip as the EXIF tag says)
    color = "GRAY"                  # RGB | BGR | GRAY
    scale = 0.00392156862745098     # 1/255
    mean = [0.0]
    std = [1.0]
    layout = "NHWC"                 # NHWC | NCHW
    dtype = "float32"

    [labels]                        # optional: class order (default: sorted folder names)
    names = ["cat", "dog"]
    output = "probabilities"        # the output the labels index (default: the one output
                                    # whose last axis has one entry per label)

    [outputs]                       # optional: what each output holds (written into the
    probabilities = "probabilities" # bundle and its model file's metadata): probabilities,
                                    # logits, scores, boxes, embedding, image or other
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import CalibrationError

CONTRACT_FILE = "calibration.toml"
RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
COLOR_MODES = {"RGB": 3, "BGR": 3, "GRAY": 1}
LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("float32",)
_TOP_KEYS = {"input", "group", "preprocessing", "labels", "outputs"}
_PREPROCESSING_KEYS = {
    "size",
    "resize",
    "antialias",
    "fit",
    "pad",
    "exif_orientation",
    "color",
    "scale",
    "mean",
    "std",
    "layout",
    "dtype",
}
FITS = ("stretch", "center_crop", "letterbox")
PLAIN_RESIZE = ("nearest", "bilinear")  # what antialias = false defines
EXIF_ORIENTATION = ("ignore", "apply")
FORMULA = "x = (pixel * scale - mean[c]) / std[c]"
# What each preprocessing field of a manifest means, written into every manifest: the
# contract an app on another platform reproduces.
FIELD_MEANINGS = {
    "order": "decode -> exif_orientation -> colour conversion -> fit and resize to size -> "
    "round to 0..255 integers -> channel order -> formula -> layout, dtype",
    "decode": "8-bit images (16-bit PNGs are reduced to 8 bits by Pillow); alpha is dropped, "
    "not composited over a background; palette images are expanded",
    "exif_orientation": "ignore: pixels as stored (Android BitmapFactory, Pillow); apply: "
    "rotated/flipped as the EXIF Orientation tag says (UIImage, browsers' image-orientation)",
    "color": "RGB or BGR: 3 channels in that order; GRAY: one channel L = (19595 R + 38470 G "
    "+ 7471 B + 32768) >> 16 on 8-bit R, G, B (ITU-R 601-2 luma, Pillow's convert('L'))",
    "size": "[height, width] of the model input",
    "fit": "stretch: the whole image to size; center_crop: the largest centred region with "
    "the input's aspect ratio; letterbox: the whole image scaled to fit, centred, the rest "
    "filled with pad. Integer arithmetic: edgepack.calib.geometry (README: Preprocessing)",
    "resize, antialias": "the filter: with antialias = false, nearest or bilinear with half-pixel "
    "centres and no antialiasing (TensorFlow 2, PyTorch align_corners=False, OpenCV "
    "INTER_LINEAR, ONNX Resize half_pixel, Skia/Android filter without mipmaps, canvas "
    "imageSmoothingQuality 'low' match bilinear within one level), each value rounded half "
    "up to 0..255; with antialias = true, Pillow's Image.resize filter, whose support widens "
    "by the downscale factor (no phone API reproduces it exactly)",
    "pad": "letterbox fill value per channel (0..255), in the colour order of color",
    "scale, mean, std": "x = (pixel * scale - mean[c]) / std[c], c in the colour order of "
    "color (for BGR, mean[0] is the blue channel's), computed in float32",
    "layout": "NHWC: [1, height, width, channels]; NCHW: [1, channels, height, width]",
    "dtype": "the input tensor's type; float16: the formula's float32 result rounded to "
    "nearest float16",
}

_LABEL_KEYS = {"names", "output"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become input tensors. ``size`` is ``None`` for array sets."""

    size: tuple[int, int] | None = None
    resize: str = "bilinear"
    antialias: bool = True
    fit: str = "stretch"
    pad: tuple[int, ...] = (0,)
    exif_orientation: str = "ignore"
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
        data["pad"] = list(self.pad)
        data["formula"] = FORMULA
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
                size = values["size"]
                if not (isinstance(size, list) and len(size) == 2 and all(map(_positive, size))):
                    raise ValueError(
                        f"size must be [height, width] with positive integers, got {size!r}"
                    )
                values["size"] = (size[0], size[1])
            for key in ("mean", "std"):
                if key in values:
                    raw = values[key]
                    values[key] = tuple(float(v) for v in (raw if isinstance(raw, list) else [raw]))
            if "scale" in values:
                values["scale"] = float(values["scale"])
            if "pad" in values:
                raw = values["pad"]
                values["pad"] = tuple(
                    _pad_value(v) for v in (raw if isinstance(raw, list) else [raw])
                )
            if "antialias" in values and not isinstance(values["antialias"], bool):
                raise ValueError(f"antialias must be true or false, got {values['antialias']!r}")
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
        if self.fit not in FITS:
            fail(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if not self.antialias and self.resize not in PLAIN_RESIZE:
            fail(f"antialias = false defines nearest and bilinear only, not {self.resize!r}")
        if self.exif_orientation not in EXIF_ORIENTATION:
            fail(f"exif_orientation must be ignore or apply, got {self.exif_orientation!r}")
        if self.color not in COLOR_MODES:
            fail(f"color must be one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if self.layout not in LAYOUTS:
            fail(f"layout must be NHWC or NCHW, got {self.layout!r}")
        if self.dtype not in DTYPES:
            fail(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for key in ("mean", "std", "pad"):
            values = getattr(self, key)
            if len(values) not in (1, self.channels):
                fail(f"{key} needs 1 or {self.channels} values for {self.color}, got {len(values)}")
        if any(s == 0 for s in self.std):
            fail("std values must not be 0")


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _pad_value(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"pad values must be whole numbers 0..255, got {value!r}")
    if not 0 <= int(value) <= 255:
        raise ValueError(f"pad values must be 0..255, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Contract:
    """A parsed ``calibration.toml``."""

    preprocessing: Preprocessing
    input_name: str | None = None
    label_names: tuple[str, ...] | None = None
    labels_output: str | None = None  # the output the labels index
    output_semantics: dict[str, str] = field(default_factory=dict)
    group: str | None = None  # the regular expression naming each sample's group

    def group_of(self, name: str) -> str:
        """The group a sample named ``name`` belongs to (itself without a ``group``)."""
        found = re.search(self.group, name) if self.group else None
        if found is None:
            return name
        first = found.group(1) if found.groups() else None
        return found.group(0) if first is None else first  # an optional group may not take part


def read_contract(folder: Path) -> Contract | None:
    """Read ``folder/calibration.toml``; None when the folder has none."""
    path = folder / CONTRACT_FILE
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise CalibrationError(
            f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    for table in ("labels", "preprocessing", "outputs"):
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
    labels_output = labels.get("output")
    if labels_output is not None and not isinstance(labels_output, str):
        raise CalibrationError(f"{path}: [labels] output must be a string (a model output name)")
    from edgepack.appmeta import parse_semantics_table

    semantics = parse_semantics_table(
        data.get("outputs", {}), f"{path} [outputs]", CalibrationError
    )
    input_name = data.get("input")
    if input_name is not None and not isinstance(input_name, str):
        raise CalibrationError(f"{path}: 'input' must be a string (a model input name)")
    group = data.get("group")
    if group is not None:
        try:
            re.compile(group)
        except (re.error, TypeError) as exc:
            raise CalibrationError(
                f"{path}: 'group' must be a regular expression over sample names ({exc})"
            ) from None
    return Contract(
        preprocessing=Preprocessing.from_dict(dict(data.get("preprocessing", {})), str(path)),
        input_name=input_name,
        label_names=tuple(str(n) for n in names) if names is not None else None,
        labels_output=labels_output,
        output_semantics=semantics,
        group=group,
    )
