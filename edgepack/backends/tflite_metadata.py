"""TFLite Metadata for .tflite models, written without ``tflite-support``.

TFLite Metadata is the flatbuffer that Android Studio's ML Model Binding, the TFLite Task
Library and the TFLite Support library read to learn what a model's tensors mean: the input is
an RGB image of 224x224 normalized as ``(pixel - 127.5) / 127.5``, the output scores go with
the lines of ``labels.txt``. ``tflite-support`` writes it, but cannot be installed beside the
TensorFlow edgepack uses (it downgrades protobuf), so this module writes the same bytes itself,
from the published schema ``tensorflow_lite_support/metadata/metadata_schema.fbs``
(repository tensorflow/tflite-support, file identifier ``M001``) with the ``flatbuffers``
builder.

Placement follows tflite-support's ``MetadataPopulator``:

* the metadata flatbuffer goes into a new ``Buffer`` of the model and a ``Metadata`` entry named
  ``TFLITE_METADATA`` points at it (an existing entry of that name is reused, so embedding
  twice leaves one); the model's other ``metadata`` entries (``min_runtime_version``,
  ``CONVERSION_METADATA``...) are kept as they are;
* the associated files (``labels.txt``) follow the model flatbuffer as a ZIP archive, so the
  model file is also a valid zip. The entries are stored uncompressed (the metadata extractors
  of the TFLite Support library read only stored entries) with fixed dates and permissions, so
  two embeds of the same input give the same bytes.

The model flatbuffer is re-packed with the object API of ``ai_edge_litert.schema_py_generated``
(as ``MetadataPopulator`` does); weight buffers keep the 16-byte alignment the TFLite schema
asks for (``force_align: 16``).
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np

from edgepack.errors import ConversionError

METADATA_NAME = "TFLITE_METADATA"
"""Name of the model's ``Metadata`` entry that holds the metadata flatbuffer."""
METADATA_IDENTIFIER = b"M001"
"""File identifier of the metadata flatbuffer (``metadata_schema.fbs``)."""
TFLITE_IDENTIFIER = b"TFL3"
"""File identifier of a TFLite model flatbuffer."""
MIN_PARSER_VERSION = "1.0.0"
"""Every field written here exists since metadata schema 1.0.0."""
COLOR_SPACES = ("RGB", "GRAYSCALE", "UNKNOWN")

_LABELS_DESCRIPTION = "Labels for the categories the model can recognize."
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o100644  # regular file, rw-r--r--
_BUFFER_ALIGNMENT = 16  # schema.fbs: Buffer.data (force_align: 16)

# metadata_schema.fbs enums
_COLOR_SPACE = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}  # ColorSpaceType
_FILE_DESCRIPTIONS = 1  # AssociatedFileType.DESCRIPTIONS
_FILE_TENSOR_AXIS_LABELS = 2  # AssociatedFileType.TENSOR_AXIS_LABELS
_CONTENT_FEATURE = 1  # ContentProperties.FeatureProperties
_CONTENT_IMAGE = 2  # ContentProperties.ImageProperties
_UNIT_NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions

# Field slots of metadata_schema.fbs: the order of the fields in each table (a union field
# takes two slots, its type first). A field's vtable offset is 4 + 2 * slot.
# table AssociatedFile { name; description; type; locale; }
_FILE_NAME, _FILE_DESCRIPTION, _FILE_TYPE, _FILE_FIELDS = 0, 1, 2, 4
# table ImageSize { width:uint; height:uint; }
_SIZE_WIDTH, _SIZE_HEIGHT, _SIZE_FIELDS = 0, 1, 2
# table ImageProperties { color_space; default_size; }
_IMAGE_COLOR_SPACE, _IMAGE_DEFAULT_SIZE, _IMAGE_FIELDS = 0, 1, 2
# table Content { content_properties (type, value); range; }
_CONTENT_PROPERTIES_TYPE, _CONTENT_PROPERTIES, _CONTENT_FIELDS = 0, 1, 3
# table NormalizationOptions { mean:[float]; std:[float]; }
_NORM_MEAN, _NORM_STD, _NORM_FIELDS = 0, 1, 2
# table ProcessUnit { options (type, value); }
_UNIT_OPTIONS_TYPE, _UNIT_OPTIONS, _UNIT_FIELDS = 0, 1, 2
# table Stats { max:[float]; min:[float]; }
_STATS_MAX, _STATS_MIN, _STATS_FIELDS = 0, 1, 2
# table TensorMetadata { name; description; dimension_names; content; process_units; stats;
#                        associated_files; }
_TENSOR_NAME, _TENSOR_DESCRIPTION, _TENSOR_CONTENT = 0, 1, 3
_TENSOR_PROCESS_UNITS, _TENSOR_STATS, _TENSOR_FILES, _TENSOR_FIELDS = 4, 5, 6, 7
# table SubGraphMetadata { name; description; input_tensor_metadata; output_tensor_metadata;
#                          associated_files; input_process_units; output_process_units; }
_SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_FIELDS = 2, 3, 7
# table ModelMetadata { name; description; version; subgraph_metadata; author; license;
#                       associated_files; min_parser_version; }
_MODEL_NAME, _MODEL_DESCRIPTION, _MODEL_VERSION, _MODEL_SUBGRAPHS = 0, 1, 2, 3
_MODEL_AUTHOR, _MODEL_LICENSE, _MODEL_FILES, _MODEL_MIN_PARSER, _MODEL_FIELDS = 4, 5, 6, 7, 8


@dataclass(frozen=True)
class ImageMeta:
    """An image tensor: its color space and its (default) size in pixels.

    ``color_space`` is ``"RGB"``, ``"GRAYSCALE"`` or ``"UNKNOWN"`` (the schema has no BGR: a
    BGR model says ``"UNKNOWN"``).
    """

    color_space: str
    width: int
    height: int


@dataclass(frozen=True)
class TensorMeta:
    """What an input or output tensor means, for the app developer and the Task Library.

    ``mean``/``std`` are the ``NormalizationOptions`` in raw pixel units: the model takes
    ``(pixel - mean[c]) / std[c]`` (one value applies to every channel). ``labels_file`` names
    one of :attr:`ModelMeta.files`, attached to this tensor as ``TENSOR_AXIS_LABELS``.
    ``min``/``max`` are the optional ``Stats`` of the tensor values.
    """

    name: str
    description: str = ""
    image: ImageMeta | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels_file: str | None = None
    min: tuple[float, ...] | None = None
    max: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ModelMeta:
    """The metadata of a model: one :class:`TensorMeta` per input and output of subgraph 0.

    ``files`` are packed into the model file as ``(name, content)``; ``model_files`` lists those
    of them that describe the whole model (``AssociatedFile`` of type ``DESCRIPTIONS`` in
    ``ModelMetadata.associated_files``) as ``(name, description)``.
    """

    name: str
    description: str
    version: str
    author: str
    license: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    files: tuple[tuple[str, bytes], ...] = ()
    model_files: tuple[tuple[str, str], ...] = ()


def embed_metadata(model: bytes, meta: ModelMeta) -> bytes:
    """The .tflite bytes with the metadata buffer and the associated files.

    ``model`` may already carry metadata and associated files (the output of an earlier embed):
    its ``TFLITE_METADATA`` entry is replaced and its appended archive dropped; the result packs
    exactly ``meta.files``. Raises :class:`ConversionError` if ``model`` is not a TFLite model,
    if ``meta`` does not list one :class:`TensorMeta` per input and output of subgraph 0, or if
    it names a file that is not in ``meta.files``.
    """
    tflite = _load_model(model)
    subgraph = tflite.subgraphs[0]
    _check_meta(meta, _count(subgraph.inputs), _count(subgraph.outputs))
    _set_metadata_buffer(tflite, _metadata_flatbuffer(meta))
    packed = pack_model(tflite)
    return _append_zip(packed, meta.files) if meta.files else packed


def model_part(model_file_bytes: bytes) -> bytes:
    """The model flatbuffer of a .tflite file, without the ZIP archive of associated files that
    may follow it (the bytes unchanged when there is none)."""
    start = _zip_start(model_file_bytes)
    return model_file_bytes if start is None else model_file_bytes[:start]


# --- validation ---------------------------------------------------------------------------


def _count(indices: Any) -> int:
    return 0 if indices is None else len(indices)


def _check_meta(meta: ModelMeta, n_inputs: int, n_outputs: int) -> None:
    if len(meta.inputs) != n_inputs:
        raise ConversionError(
            f"metadata lists {len(meta.inputs)} input tensor(s), the model has {n_inputs}"
        )
    if len(meta.outputs) != n_outputs:
        raise ConversionError(
            f"metadata lists {len(meta.outputs)} output tensor(s), the model has {n_outputs}"
        )
    names = [name for name, _ in meta.files]
    for name in names:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConversionError(f"associated file name {name!r} is not a plain file name")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConversionError(f"associated file {duplicates[0]!r} is listed more than once")
    for tensor in (*meta.inputs, *meta.outputs):
        if tensor.labels_file is not None and tensor.labels_file not in names:
            raise ConversionError(
                f"labels file {tensor.labels_file!r} of tensor {tensor.name!r} is not among "
                f"the associated files ({', '.join(names) or 'none'})"
            )
        _check_tensor(tensor)
    for name, _ in meta.model_files:
        if name not in names:
            raise ConversionError(
                f"model file {name!r} is not among the associated files "
                f"({', '.join(names) or 'none'})"
            )


def _check_tensor(tensor: TensorMeta) -> None:
    if tensor.image is not None:
        image = tensor.image
        if image.color_space not in _COLOR_SPACE:
            raise ConversionError(
                f"color space {image.color_space!r} of tensor {tensor.name!r} is not one of "
                f"{', '.join(COLOR_SPACES)}"
            )
        for side in (image.width, image.height):
            if not 0 < side < 2**32:
                raise ConversionError(
                    f"image size {image.width}x{image.height} of tensor {tensor.name!r} "
                    "is not positive"
                )
    if (tensor.mean is None) != (tensor.std is None):
        raise ConversionError(f"tensor {tensor.name!r} needs both mean and std, or neither")
    if tensor.mean is not None and tensor.std is not None:
        if not tensor.mean or len(tensor.mean) != len(tensor.std):
            raise ConversionError(
                f"tensor {tensor.name!r} has {len(tensor.mean)} mean value(s) and "
                f"{len(tensor.std)} std value(s); they must be as many, at least one"
            )
        if any(value == 0 for value in tensor.std):
            raise ConversionError(f"tensor {tensor.name!r} has a std of 0")


# --- the metadata flatbuffer (metadata_schema.fbs) ----------------------------------------

_Field = tuple[int, str, int | None]  # slot, kind ("offset", "uint8", "uint32"), value


def _table(builder: Any, n_fields: int, fields: Sequence[_Field]) -> int:
    """A table of ``n_fields`` slots; fields whose value is None (or the default 0) are absent.

    Every child (string, vector, table) must be written before: flatbuffers cannot nest.
    """
    builder.StartObject(n_fields)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "uint8":
            builder.PrependUint8Slot(slot, value, 0)
        elif kind == "uint32":
            builder.PrependUint32Slot(slot, value, 0)
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
    return int(builder.EndObject())


def _string(builder: Any, text: str | None) -> int | None:
    return None if not text else int(builder.CreateString(text))


def _tables(builder: Any, offsets: Sequence[int]) -> int | None:
    if not offsets:
        return None
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _floats(builder: Any, values: Sequence[float] | None) -> int | None:
    if values is None:
        return None
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return int(builder.EndVector())


def _associated_file(builder: Any, name: str, description: str, file_type: int) -> int:
    name_offset = _string(builder, name)
    description_offset = _string(builder, description)
    return _table(
        builder,
        _FILE_FIELDS,
        [
            (_FILE_NAME, "offset", name_offset),
            (_FILE_DESCRIPTION, "offset", description_offset),
            (_FILE_TYPE, "uint8", file_type),
        ],
    )


def _content(builder: Any, image: ImageMeta | None) -> int:
    if image is None:
        properties = _table(builder, 0, [])  # FeatureProperties: no fields
        kind = _CONTENT_FEATURE
    else:
        size = _table(
            builder,
            _SIZE_FIELDS,
            [(_SIZE_WIDTH, "uint32", image.width), (_SIZE_HEIGHT, "uint32", image.height)],
        )
        properties = _table(
            builder,
            _IMAGE_FIELDS,
            [
                (_IMAGE_COLOR_SPACE, "uint8", _COLOR_SPACE[image.color_space]),
                (_IMAGE_DEFAULT_SIZE, "offset", size),
            ],
        )
        kind = _CONTENT_IMAGE
    return _table(
        builder,
        _CONTENT_FIELDS,
        [(_CONTENT_PROPERTIES_TYPE, "uint8", kind), (_CONTENT_PROPERTIES, "offset", properties)],
    )


def _tensor(builder: Any, tensor: TensorMeta) -> int:
    name = _string(builder, tensor.name)
    description = _string(builder, tensor.description)
    content = _content(builder, tensor.image)
    units = None
    if tensor.mean is not None and tensor.std is not None:
        mean = _floats(builder, tensor.mean)
        std = _floats(builder, tensor.std)
        normalization = _table(
            builder, _NORM_FIELDS, [(_NORM_MEAN, "offset", mean), (_NORM_STD, "offset", std)]
        )
        unit = _table(
            builder,
            _UNIT_FIELDS,
            [
                (_UNIT_OPTIONS_TYPE, "uint8", _UNIT_NORMALIZATION),
                (_UNIT_OPTIONS, "offset", normalization),
            ],
        )
        units = _tables(builder, [unit])
    stats = None
    if tensor.min is not None or tensor.max is not None:
        maximum = _floats(builder, tensor.max)
        minimum = _floats(builder, tensor.min)
        stats = _table(
            builder,
            _STATS_FIELDS,
            [(_STATS_MAX, "offset", maximum), (_STATS_MIN, "offset", minimum)],
        )
    files = None
    if tensor.labels_file is not None:
        labels = _associated_file(
            builder, tensor.labels_file, _LABELS_DESCRIPTION, _FILE_TENSOR_AXIS_LABELS
        )
        files = _tables(builder, [labels])
    return _table(
        builder,
        _TENSOR_FIELDS,
        [
            (_TENSOR_NAME, "offset", name),
            (_TENSOR_DESCRIPTION, "offset", description),
            (_TENSOR_CONTENT, "offset", content),
            (_TENSOR_PROCESS_UNITS, "offset", units),
            (_TENSOR_STATS, "offset", stats),
            (_TENSOR_FILES, "offset", files),
        ],
    )


def _metadata_flatbuffer(meta: ModelMeta) -> bytes:
    builder = flatbuffers.Builder(1024)
    inputs = _tables(builder, [_tensor(builder, tensor) for tensor in meta.inputs])
    outputs = _tables(builder, [_tensor(builder, tensor) for tensor in meta.outputs])
    subgraph = _table(
        builder,
        _SUBGRAPH_FIELDS,
        [(_SUBGRAPH_INPUTS, "offset", inputs), (_SUBGRAPH_OUTPUTS, "offset", outputs)],
    )
    subgraphs = _tables(builder, [subgraph])
    model_files = _tables(
        builder,
        [
            _associated_file(builder, name, description, _FILE_DESCRIPTIONS)
            for name, description in meta.model_files
        ],
    )
    strings = [
        (slot, _string(builder, text))
        for slot, text in (
            (_MODEL_NAME, meta.name),
            (_MODEL_DESCRIPTION, meta.description),
            (_MODEL_VERSION, meta.version),
            (_MODEL_AUTHOR, meta.author),
            (_MODEL_LICENSE, meta.license),
            (_MODEL_MIN_PARSER, MIN_PARSER_VERSION),
        )
    ]
    root = _table(
        builder,
        _MODEL_FIELDS,
        [
            *((slot, "offset", offset) for slot, offset in strings),
            (_MODEL_SUBGRAPHS, "offset", subgraphs),
            (_MODEL_FILES, "offset", model_files),
        ],
    )
    builder.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


# --- the model flatbuffer (ai_edge_litert's object API) -----------------------------------


def _load_model(model: bytes) -> Any:
    """The model as ``ModelT``, refusing what is not a TFLite model or cannot be re-packed."""
    if len(model) < 8 or bytes(model[4:8]) != TFLITE_IDENTIFIER:
        raise ConversionError("the model bytes are not a TFLite model (no TFL3 file identifier)")
    from ai_edge_litert import schema_py_generated as schema

    try:
        tflite = schema.ModelT.InitFromPackedBuf(bytes(model), 0)
    except Exception as exc:
        raise ConversionError(f"the model bytes are not a readable TFLite model: {exc}") from exc
    if not tflite.subgraphs:
        raise ConversionError("the TFLite model has no subgraph")
    if any(buffer is not None and buffer.offset > 1 for buffer in tflite.buffers or ()):
        # models over 2 GB keep their weights after the flatbuffer, at absolute offsets that
        # re-packing would break
        raise ConversionError(
            "the TFLite model keeps buffers outside its flatbuffer; metadata cannot be embedded"
        )
    return tflite


@functools.cache
def _aligned_buffer_type() -> Any:
    """``BufferT`` whose data keeps the 16-byte alignment of the schema (``force_align: 16``):
    the object API's own ``Pack`` aligns byte vectors to 4 bytes only."""
    from ai_edge_litert import schema_py_generated as schema

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder: Any) -> Any:  # noqa: N802 - the object API's name
            raw: Any = getattr(self, "data", None)
            if raw is not None:
                data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
                self.data = data  # an ndarray: Pack writes it in one piece
                builder.Prep(_BUFFER_ALIGNMENT, data.size)
            return super().Pack(builder)

    return AlignedBufferT


def pack_model(tflite: Any) -> bytes:
    """A ``ModelT`` packed back into .tflite bytes, weight buffers 16-byte aligned."""
    aligned = _aligned_buffer_type()
    tflite.buffers = [
        None if buffer is None else aligned(buffer.data, buffer.offset, buffer.size)
        for buffer in tflite.buffers or ()
    ]
    builder = flatbuffers.Builder(1024)  # grows as needed
    builder.Finish(tflite.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _set_metadata_buffer(tflite: Any, metadata: bytes) -> None:
    """Point the model's ``TFLITE_METADATA`` entry at a buffer holding ``metadata`` (aligned
    with every other buffer by :func:`pack_model`)."""
    from ai_edge_litert import schema_py_generated as schema

    buffers = list(tflite.buffers or ())
    data = schema.BufferT()
    data.data = np.frombuffer(metadata, dtype=np.uint8).copy()
    entries = list(tflite.metadata or ())
    ours = [entry for entry in entries if _entry_name(entry) == METADATA_NAME]
    if ours and 0 <= ours[0].buffer < len(buffers):
        buffers[ours[0].buffer] = data
        # one entry only: a second TFLITE_METADATA entry would be ambiguous to readers
        entries = [entry for entry in entries if entry is ours[0] or entry not in ours]
    else:
        entries = [entry for entry in entries if entry not in ours]
        buffers.append(data)
        entries.append(schema.MetadataT(name=METADATA_NAME, buffer=len(buffers) - 1))
    tflite.buffers = buffers
    tflite.metadata = entries


def _entry_name(entry: Any) -> str | None:
    name = getattr(entry, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name if isinstance(name, str) else None


# --- the associated files (a ZIP archive after the flatbuffer) ----------------------------


def _append_zip(model: bytes, files: Sequence[tuple[str, bytes]]) -> bytes:
    """``model`` followed by a stored (uncompressed) ZIP archive of ``files``, byte-stable."""
    out = io.BytesIO()
    out.write(model)
    # mode "w" on a positioned stream: the archive starts here and its offsets count from the
    # start of the model file, as MetadataPopulator writes them
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, whatever the host
            info.external_attr = _ZIP_MODE << 16
            archive.writestr(info, bytes(content))
    return out.getvalue()


def _zip_start(data: bytes) -> int | None:
    """Where the ZIP archive after the model flatbuffer starts, or None if there is none."""
    stream = io.BytesIO(data)
    if not zipfile.is_zipfile(stream):
        return None
    try:
        with zipfile.ZipFile(stream) as archive:
            start = min((info.header_offset for info in archive.infolist()), default=None)
            if start is None:
                start = archive.start_dir
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if not 8 <= start <= len(data) or data[4:8] != TFLITE_IDENTIFIER:
        return None
    return int(start)
