"""Calibration and evaluation sets: discovery, labels, deterministic selection, loading.

A set is a folder with a ``calibration.toml`` (see :mod:`edgepack.calib.contract`) and either
image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``) or arrays (``.npy``, ``.npz``).

Labels (optional): image files in class sub-folders (``cat/001.png``), or a ``labels.csv``
with a header ``file,label``; for ``.npz`` files, an integer array named ``labels``.

Every ``.npy`` file holds samples along its first axis (one sample is a batch of one). An
``.npz`` file holds one such array per model input (named like the input; a single array
feeds a single-input model) and optionally ``labels``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.calib.contract import CONTRACT_FILE, Contract, Preprocessing, read_contract
from edgepack.calib.images import load_image
from edgepack.errors import CalibrationError
from edgepack.frontends.base import TensorSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
ARRAY_SUFFIXES = {".npy", ".npz"}
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class SampleRef:
    """One sample: a file, and for array files the index along the first axis."""

    path: Path
    index: int | None = None
    label: int | None = None

    def describe(self, root: Path) -> str:
        name = self.path.relative_to(root).as_posix()
        return name if self.index is None else f"{name}[{self.index}]"


@dataclass(frozen=True)
class Split:
    """Disjoint calibration and held-out samples, drawn deterministically."""

    calibration: tuple[SampleRef, ...]
    held_out: tuple[SampleRef, ...]


class SampleSet:
    """A validated folder of samples and the contract that preprocesses them."""

    def __init__(
        self,
        root: Path,
        contract: Contract,
        kind: str,
        samples: Sequence[SampleRef],
        label_names: tuple[str, ...] | None,
        files: Sequence[Path],
    ) -> None:
        self.root = root
        self.contract = contract
        self.kind = kind
        self.samples = tuple(samples)
        self.label_names = label_names
        self._files = tuple(files)
        self._fingerprint: str | None = None

    @property
    def preprocessing(self) -> Preprocessing:
        return self.contract.preprocessing

    @property
    def has_labels(self) -> bool:
        return self.label_names is not None

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        """sha256 over the sorted (file name, file sha256) pairs, labels and preprocessing."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for path in sorted(self._files):
                file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
                digest.update(f"{path.relative_to(self.root).as_posix()}\0{file_hash}\n".encode())
            digest.update(json.dumps(self.preprocessing.to_dict(), sort_keys=True).encode())
            digest.update(json.dumps(list(self.label_names or [])).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def split(self, num_calibration: int, max_held_out: int, seed: int) -> Split:
        """Shuffle with ``seed``, take calibration samples first, hold out the rest.

        When the set is too small for ``num_calibration`` plus a held-out part, a fifth of it
        (at least one sample) is held out, so the drift check never sees calibration samples.
        ``max_held_out = 0`` holds nothing out (the drift check has an evaluation set).
        """
        order = np.random.default_rng(seed).permutation(len(self.samples))
        shuffled = [self.samples[i] for i in order]
        if max_held_out == 0:
            return Split(calibration=tuple(shuffled[:num_calibration]), held_out=())
        n_calib = num_calibration
        if n_calib >= len(shuffled):
            n_calib = max(1, len(shuffled) - max(1, len(shuffled) // 5))
        held = shuffled[n_calib:][:max_held_out]
        return Split(calibration=tuple(shuffled[:n_calib]), held_out=tuple(held))

    def take(self, count: int, seed: int) -> tuple[SampleRef, ...]:
        """``count`` samples (or all), in a seed-determined order: for evaluation sets."""
        order = np.random.default_rng(seed).permutation(len(self.samples))
        return tuple(self.samples[i] for i in order[:count])

    # ------------------------------------------------------------------ loading

    def bind(self, inputs: Sequence[TensorSpec]) -> BoundSet:
        """Check the set against a model's inputs and return a loader for that model."""
        if self.kind in {"images", "npy"}:
            target = self._single_input(inputs)
            if self.kind == "images" and self.preprocessing.size is None:
                self._take_size_from(target)
            return BoundSet(self, {target.name: None}, inputs)
        return BoundSet(self, self._npz_keys(inputs), inputs)

    def _take_size_from(self, spec: TensorSpec) -> None:
        """An image set without ``size`` is resized to the model's fixed input size."""
        shape = spec.shape
        axes = (1, 2) if self.preprocessing.layout == "NHWC" else (2, 3)
        sizes = [shape[a] if len(shape) == 4 else None for a in axes]
        if any(s is None for s in sizes):
            shown = tuple("?" if d is None else d for d in shape)
            raise CalibrationError(
                f"{self.root / CONTRACT_FILE}: model input {spec.name!r} has dynamic spatial "
                f"dimensions {shown}; declare size = [height, width] under [preprocessing]"
            )
        resolved = dataclasses.replace(self.preprocessing, size=(int(sizes[0]), int(sizes[1])))  # type: ignore[arg-type]
        self.contract = dataclasses.replace(self.contract, preprocessing=resolved)
        self._fingerprint = None

    def _single_input(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        wanted = self.contract.input_name
        if wanted is None:
            if len(inputs) != 1:
                names = ", ".join(i.name for i in inputs)
                raise CalibrationError(
                    f"{self.root / CONTRACT_FILE}: the model has several inputs ({names}); "
                    'say which one this set feeds with input = "..."'
                )
            return inputs[0]
        for spec in inputs:
            if spec.name == wanted:
                return spec
        names = ", ".join(i.name for i in inputs)
        raise CalibrationError(
            f"{self.root / CONTRACT_FILE}: input {wanted!r} is not an input of the model "
            f"(model inputs: {names})"
        )

    def _npz_keys(self, inputs: Sequence[TensorSpec]) -> dict[str, str | None]:
        with np.load(self.samples[0].path) as archive:
            keys = [k for k in archive.files if k != "labels"]
        names = [i.name for i in inputs]
        if set(names) <= set(keys):
            return {name: name for name in names}
        if len(keys) == 1:
            return {self._single_input(inputs).name: keys[0]}
        raise CalibrationError(
            f"{self.samples[0].describe(self.root)}: arrays {keys} do not name the model "
            f"inputs {names}"
        )


class BoundSet:
    """A sample set checked against one model's inputs; loads feeds as batches of the inputs'
    dtypes (float32 for float inputs; integer inputs keep integer values)."""

    def __init__(
        self, sample_set: SampleSet, keys: dict[str, str | None], inputs: Sequence[TensorSpec]
    ) -> None:
        self.set = sample_set
        self.keys = keys
        self.specs = {spec.name: spec for spec in inputs if spec.name in keys}
        expected = sample_set.preprocessing.sample_shape()
        if expected is not None:
            for spec in self.specs.values():
                _check_shape(expected, spec, f"{sample_set.root / CONTRACT_FILE}")

    def load(self, refs: Sequence[SampleRef]) -> dict[str, np.ndarray]:
        """Preprocessed samples stacked into one batch per input."""
        columns: dict[str, list[np.ndarray]] = {name: [] for name in self.keys}
        for ref in refs:
            for name, array in self._load_one(ref).items():
                _check_finite(array, ref.describe(self.set.root))
                _check_shape(array.shape, self.specs[name], ref.describe(self.set.root))
                _check_integer(array, self.specs[name], ref.describe(self.set.root))
                columns[name].append(array)
        return {name: self.specs[name].cast(np.stack(arrays)) for name, arrays in columns.items()}

    def batches(self, refs: Sequence[SampleRef], size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(refs), size):
            yield self.load(refs[start : start + size])

    def labels(self, refs: Sequence[SampleRef]) -> np.ndarray | None:
        if not self.set.has_labels:
            return None
        return np.array([ref.label for ref in refs], dtype=np.int64)

    def _load_one(self, ref: SampleRef) -> dict[str, np.ndarray]:
        kind = self.set.kind
        if kind == "images":
            (name,) = self.keys
            return {name: load_image(ref.path, self.set.preprocessing, self.set.root)}
        if kind == "npy":
            (name,) = self.keys
            return {name: np.asarray(np.load(ref.path, mmap_mode="r")[ref.index])}
        with np.load(ref.path) as archive:
            return {name: np.asarray(archive[key][ref.index]) for name, key in self.keys.items()}


def _check_shape(shape: Sequence[int], spec: TensorSpec, origin: str) -> None:
    model_shape = tuple(spec.shape[1:])
    matches = len(shape) == len(model_shape) and all(
        m is None or m == s for s, m in zip(shape, model_shape, strict=True)
    )
    if not matches:
        shown = tuple("?" if m is None else m for m in spec.shape)
        raise CalibrationError(
            f"{origin}: preprocessed sample shape {tuple(shape)} does not match model input "
            f"{spec.name!r} of shape {shown} (batch axis first); check size, color and layout"
        )


def _check_integer(array: np.ndarray, spec: TensorSpec, origin: str) -> None:
    """An integer or bool input takes whole numbers that fit its dtype."""
    if spec.is_float:
        return
    if spec.dtype == "bool":
        if not np.isin(array, (0, 1)).all():
            raise CalibrationError(f"{origin}: input {spec.name!r} is bool; values must be 0 or 1")
        return
    limits = np.iinfo(np.dtype(spec.dtype))
    whole = np.array_equal(array, np.round(array))
    if not whole or array.min() < limits.min or array.max() > limits.max:
        raise CalibrationError(
            f"{origin}: input {spec.name!r} is {spec.dtype}; its arrays must hold whole numbers "
            f"in [{limits.min}, {limits.max}]"
        )


def _check_finite(array: np.ndarray, origin: str) -> None:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise CalibrationError(f"{origin}: arrays must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise CalibrationError(f"{origin}: contains NaN or infinite values")


# ---------------------------------------------------------------------------- opening


def open_sample_set(root: str | Path, fallback: Contract | None = None) -> SampleSet:
    """Open a calibration or evaluation folder.

    ``fallback`` is used when the folder has no ``calibration.toml`` (``check`` passes the
    bundle's own contract, so an evaluation folder needs no contract of its own).
    """
    root = Path(root)
    if not root.exists():
        raise CalibrationError(f"{root}: no such calibration or evaluation folder")
    if not root.is_dir():
        raise CalibrationError(f"{root}: expected a folder with a {CONTRACT_FILE}, got a file")
    contract = read_contract(root) or fallback
    if contract is None:
        raise CalibrationError(f"{root}: no {CONTRACT_FILE} (it declares the preprocessing)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [p for p in files if p.suffix.lower() in ARRAY_SUFFIXES]
    if images and arrays:
        raise CalibrationError(f"{root}: mixes image files and array files; use one kind")
    if not images and not arrays:
        raise CalibrationError(
            f"{root}: empty set: no image (.png .jpg .jpeg .bmp) or array (.npy .npz) files"
        )
    if images:
        return _image_set(root, contract, images)
    return _array_set(root, contract, arrays)


def _image_set(root: Path, contract: Contract, images: list[Path]) -> SampleSet:
    labels_csv = root / LABELS_FILE
    extra: list[Path] = []
    if labels_csv.is_file():
        per_file = _read_labels_csv(root, labels_csv, images)
        extra.append(labels_csv)
    elif all(p.parent != root for p in images) and all(p.parent.parent == root for p in images):
        per_file = {p: p.parent.name for p in images}
    else:
        per_file = {}
    names = _label_names(contract, set(per_file.values()), root) if per_file else None
    index = {name: i for i, name in enumerate(names or ())}
    samples = [SampleRef(p, None, index[per_file[p]] if per_file else None) for p in images]
    return SampleSet(root, contract, "images", samples, names, [*images, *extra])


def _check_label(name: str, root: Path) -> None:
    """A label becomes one line of the bundle's labels.txt and a key in the app's code: it
    must be non-empty, without control characters (newlines) or surrounding blanks."""
    if not name or name != name.strip() or any(unicodedata.category(c) == "Cc" for c in name):
        raise CalibrationError(
            f"{root}: label {name!r} is empty, has surrounding blanks or a control character "
            "(a newline, a tab); rename the class folder or the [labels] name"
        )


def _read_labels_csv(root: Path, path: Path, images: list[Path]) -> dict[Path, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise CalibrationError(f"{path}: needs a header with columns file,label")
        rows = {(root / row["file"]).resolve(): row["label"] for row in reader}
    labels = {}
    for image in images:
        label = rows.get(image.resolve())
        if label is None:
            raise CalibrationError(f"{path}: no label for {image.relative_to(root).as_posix()}")
        labels[image] = label
    return labels


def _label_names(contract: Contract, found: set[str], root: Path) -> tuple[str, ...]:
    for name in sorted(found | set(contract.label_names or ())):
        _check_label(name, root)
    if contract.label_names is not None:
        missing = found - set(contract.label_names)
        if missing:
            raise CalibrationError(
                f"{root}: labels {sorted(missing)} are not in [labels] names of {CONTRACT_FILE}"
            )
        return contract.label_names
    if all(name.isdigit() for name in found):
        return tuple(sorted(found, key=int))
    return tuple(sorted(found))


def _array_set(root: Path, contract: Contract, arrays: list[Path]) -> SampleSet:
    kinds = {p.suffix.lower() for p in arrays}
    if len(kinds) > 1:
        raise CalibrationError(f"{root}: mixes .npy and .npz files; use one kind")
    samples: list[SampleRef] = []
    has_labels: set[bool] = set()
    max_label = -1
    for path in arrays:
        count, labels = _array_file_count(path, root)
        has_labels.add(labels is not None)
        if labels is not None and len(labels):
            max_label = max(max_label, int(labels.max()))
        samples += [
            SampleRef(path, i, int(labels[i]) if labels is not None else None) for i in range(count)
        ]
    if has_labels == {True, False}:
        raise CalibrationError(f"{root}: some .npz files have 'labels' and some do not")
    names = None
    if has_labels == {True}:
        names = contract.label_names or tuple(str(i) for i in range(max_label + 1))
        if max_label >= len(names):
            raise CalibrationError(f"{root}: label {max_label} is outside [labels] names")
    kind = "npz" if ".npz" in kinds else "npy"
    return SampleSet(root, contract, kind, samples, names, arrays)


def _array_file_count(path: Path, root: Path) -> tuple[int, np.ndarray | None]:
    name = path.relative_to(root).as_posix()
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r")
            if array.ndim == 0:
                raise CalibrationError(f"{name}: a scalar array; samples go along the first axis")
            return int(array.shape[0]), None
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"{name}: unreadable array file ({exc})") from None
    labels = arrays.pop("labels", None)
    if not arrays:
        raise CalibrationError(f"{name}: holds no input arrays")
    counts = {key: a.shape[0] if a.ndim else 0 for key, a in arrays.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise CalibrationError(f"{name}: arrays must share a non-empty first axis, got {counts}")
    count = next(iter(counts.values()))
    if labels is not None:
        if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
            raise CalibrationError(f"{name}: 'labels' must be {count} integers")
        if labels.min() < 0:
            raise CalibrationError(f"{name}: 'labels' must not be negative")
    return count, labels
