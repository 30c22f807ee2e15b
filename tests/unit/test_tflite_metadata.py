"""TFLite Metadata embedded without tflite-support, read back by a reader written here from
``metadata_schema.fbs`` (tensorflow/tflite-support), not by the module's own code."""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert.schema_py_generated import Model
from flatbuffers import number_types
from flatbuffers.table import Table

from edgepack.backends.tflite_metadata import (
    ImageMeta,
    ModelMeta,
    TensorMeta,
    embed_metadata,
    model_part,
)
from edgepack.errors import ConversionError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LABELS = b"a\nb\nc\n"
README = b"A tiny test classifier.\n"
META = ModelMeta(
    name="Tiny classifier",
    description="Classifies 8x8 gray images into a, b or c.",
    version="1.2.3",
    author="edgepack tests",
    license="Apache-2.0",
    inputs=(
        TensorMeta(
            name="image",
            description="Gray image, 8x8.",
            image=ImageMeta("GRAYSCALE", 8, 8),
            mean=(0.0,),
            std=(255.0,),
        ),
    ),
    outputs=(
        TensorMeta(
            name="probability",
            description="Probabilities of the 3 labels.",
            labels_file="labels.txt",
            min=(0.0,),
            max=(1.0,),
        ),
    ),
    files=(("labels.txt", LABELS), ("README.txt", README)),
    model_files=(("README.txt", "What the model does."),),
)

# metadata_schema.fbs, by hand: the field slots (field order in each table; a union takes two
# slots, its type first) and the enum values this test checks.
MODEL_NAME, MODEL_DESCRIPTION, MODEL_VERSION, MODEL_SUBGRAPHS = 0, 1, 2, 3
MODEL_AUTHOR, MODEL_LICENSE, MODEL_FILES, MODEL_MIN_PARSER = 4, 5, 6, 7
SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS = 2, 3
TENSOR_NAME, TENSOR_DESCRIPTION, TENSOR_CONTENT = 0, 1, 3
TENSOR_PROCESS_UNITS, TENSOR_STATS, TENSOR_FILES = 4, 5, 6
CONTENT_TYPE, CONTENT_VALUE = 0, 1
IMAGE_COLOR_SPACE, IMAGE_SIZE, SIZE_WIDTH, SIZE_HEIGHT = 0, 1, 0, 1
UNIT_TYPE, UNIT_VALUE, NORM_MEAN, NORM_STD = 0, 1, 0, 1
STATS_MAX, STATS_MIN = 0, 1
FILE_NAME, FILE_DESCRIPTION, FILE_TYPE = 0, 1, 2
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # union ContentProperties
NORMALIZATION_OPTIONS = 1  # union ProcessUnitOptions
GRAYSCALE = 2  # enum ColorSpaceType
DESCRIPTIONS, TENSOR_AXIS_LABELS = 1, 2  # enum AssociatedFileType
# tensorflow/lite/schema/schema.fbs: table Model { version; operator_codes; subgraphs;
# description; buffers; ... }, table Buffer { data; offset; size; }
TFLITE_BUFFERS, BUFFER_DATA = 4, 0


class FbTable:
    """A flatbuffer table read by field slot: a field's vtable entry is at 4 + 2 * slot."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.tab = Table(buf, pos)

    @classmethod
    def root(cls, buf: bytes) -> FbTable:
        return cls(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))

    def _at(self, slot: int) -> int:
        return int(self.tab.Offset(4 + 2 * slot))

    def string(self, slot: int) -> str | None:
        at = self._at(slot)
        return self.tab.String(at + self.tab.Pos).decode("utf-8") if at else None

    def uint8(self, slot: int) -> int:
        at = self._at(slot)
        return int(self.tab.Get(number_types.Uint8Flags, at + self.tab.Pos)) if at else 0

    def uint32(self, slot: int) -> int:
        at = self._at(slot)
        return int(self.tab.Get(number_types.Uint32Flags, at + self.tab.Pos)) if at else 0

    def table(self, slot: int) -> FbTable:
        at = self._at(slot)
        assert at, f"table field in slot {slot} is absent"
        return FbTable(self.tab.Bytes, self.tab.Indirect(at + self.tab.Pos))

    def tables(self, slot: int) -> list[FbTable]:
        at = self._at(slot)
        if not at:
            return []
        start = self.tab.Vector(at)
        return [
            FbTable(self.tab.Bytes, self.tab.Indirect(start + 4 * i))
            for i in range(self.tab.VectorLen(at))
        ]

    def floats(self, slot: int) -> list[float]:
        at = self._at(slot)
        return self.tab.GetVectorAsNumpy(number_types.Float32Flags, at).tolist() if at else []

    def vector_span(self, slot: int) -> tuple[int, int] | None:
        """Start (in the whole buffer) and length of a byte vector."""
        at = self._at(slot)
        return (int(self.tab.Vector(at)), int(self.tab.VectorLen(at))) if at else None


def metadata_entries(data: bytes) -> list[tuple[str, bytes]]:
    """The model's ``metadata`` entries: (name, content of the buffer they point at)."""
    model = Model.GetRootAs(data, 0)
    entries = []
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        content = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        entries.append((entry.Name().decode("utf-8"), content))
    return entries


def tflite_metadata(data: bytes) -> bytes:
    found = [content for name, content in metadata_entries(data) if name == "TFLITE_METADATA"]
    assert len(found) == 1, f"{len(found)} TFLITE_METADATA entries"
    return found[0]


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


@pytest.fixture(scope="module")
def plain() -> bytes:
    """A tiny float classifier converted to .tflite, without metadata."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    keras_model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1)),
            tf.keras.layers.Conv2D(4, 3, activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(3, activation="softmax"),
        ]
    )
    return bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())


@pytest.fixture(scope="module")
def embedded(plain: bytes) -> bytes:
    return embed_metadata(plain, META)


def test_metadata_reads_back_with_the_schema(embedded: bytes) -> None:
    buf = tflite_metadata(embedded)
    assert buf[4:8] == b"M001"
    assert flatbuffers.util.BufferHasIdentifier(buf, 0, b"M001")
    root = FbTable.root(buf)
    assert root.string(MODEL_NAME) == "Tiny classifier"
    assert root.string(MODEL_DESCRIPTION) == META.description
    assert root.string(MODEL_VERSION) == "1.2.3"
    assert root.string(MODEL_AUTHOR) == "edgepack tests"
    assert root.string(MODEL_LICENSE) == "Apache-2.0"
    assert root.string(MODEL_MIN_PARSER) == "1.0.0"
    (readme,) = root.tables(MODEL_FILES)
    assert readme.string(FILE_NAME) == "README.txt"
    assert readme.string(FILE_DESCRIPTION) == "What the model does."
    assert readme.uint8(FILE_TYPE) == DESCRIPTIONS

    (subgraph,) = root.tables(MODEL_SUBGRAPHS)
    inputs, outputs = subgraph.tables(SUBGRAPH_INPUTS), subgraph.tables(SUBGRAPH_OUTPUTS)
    assert (len(inputs), len(outputs)) == (1, 1)

    image = inputs[0]
    assert image.string(TENSOR_NAME) == "image"
    assert image.string(TENSOR_DESCRIPTION) == "Gray image, 8x8."
    content = image.table(TENSOR_CONTENT)
    assert content.uint8(CONTENT_TYPE) == IMAGE_PROPERTIES
    properties = content.table(CONTENT_VALUE)
    assert properties.uint8(IMAGE_COLOR_SPACE) == GRAYSCALE
    size = properties.table(IMAGE_SIZE)
    assert (size.uint32(SIZE_WIDTH), size.uint32(SIZE_HEIGHT)) == (8, 8)
    (unit,) = image.tables(TENSOR_PROCESS_UNITS)
    assert unit.uint8(UNIT_TYPE) == NORMALIZATION_OPTIONS
    normalization = unit.table(UNIT_VALUE)
    assert normalization.floats(NORM_MEAN) == [0.0]
    assert normalization.floats(NORM_STD) == [255.0]
    assert image.tables(TENSOR_FILES) == []

    scores = outputs[0]
    assert scores.string(TENSOR_NAME) == "probability"
    assert scores.table(TENSOR_CONTENT).uint8(CONTENT_TYPE) == FEATURE_PROPERTIES
    assert scores.tables(TENSOR_PROCESS_UNITS) == []
    stats = scores.table(TENSOR_STATS)
    assert (stats.floats(STATS_MIN), stats.floats(STATS_MAX)) == ([0.0], [1.0])
    (labels,) = scores.tables(TENSOR_FILES)
    assert labels.string(FILE_NAME) == "labels.txt"
    assert labels.uint8(FILE_TYPE) == TENSOR_AXIS_LABELS


def test_model_still_runs_with_identical_outputs(plain: bytes, embedded: bytes) -> None:
    x = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 1)).astype(np.float32)
    expected = run(plain, x)
    assert expected.shape == (1, 3)
    assert np.array_equal(run(embedded, x), expected)


def test_associated_files_follow_as_a_stored_zip(plain: bytes, embedded: bytes) -> None:
    archive = zipfile.ZipFile(io.BytesIO(embedded))
    assert archive.namelist() == ["labels.txt", "README.txt"]
    assert archive.read("labels.txt") == LABELS
    assert archive.read("README.txt") == README
    # the TFLite Support extractors read stored (uncompressed) entries only
    assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    flatbuffer = model_part(embedded)
    assert len(flatbuffer) < len(embedded)
    assert flatbuffer[4:8] == b"TFL3"
    assert not zipfile.is_zipfile(io.BytesIO(flatbuffer))
    assert model_part(plain) == plain


def test_other_metadata_entries_are_kept(plain: bytes, embedded: bytes) -> None:
    before = metadata_entries(plain)
    assert before, "the converter writes min_runtime_version"
    after = [entry for entry in metadata_entries(embedded) if entry[0] != "TFLITE_METADATA"]
    assert after == before


def test_weight_buffers_stay_16_byte_aligned(embedded: bytes) -> None:
    buffers = FbTable.root(embedded).tables(TFLITE_BUFFERS)
    spans = [buffer.vector_span(BUFFER_DATA) for buffer in buffers]
    starts = [span[0] for span in spans if span is not None and span[1] > 0]
    assert len(starts) >= 5  # conv and dense weights and biases, metadata entries
    assert all(start % 16 == 0 for start in starts)


def test_embedding_again_replaces_the_entry(plain: bytes, embedded: bytes) -> None:
    assert embed_metadata(plain, META) == embedded  # same input, same bytes
    assert embed_metadata(embedded, META) == embedded  # re-embedding changes nothing

    renamed = ModelMeta(
        name="Renamed",
        description="",
        version="2",
        author="",
        license="",
        inputs=(TensorMeta("input"),),
        outputs=(TensorMeta("output"),),
    )
    again = embed_metadata(embedded, renamed)
    names = [name for name, _ in metadata_entries(again)]
    assert names.count("TFLITE_METADATA") == 1
    assert FbTable.root(tflite_metadata(again)).string(MODEL_NAME) == "Renamed"
    # no files this time: the old archive is not carried over
    assert not zipfile.is_zipfile(io.BytesIO(again))
    x = np.zeros((1, 8, 8, 1), np.float32)
    assert np.array_equal(run(again, x), run(plain, x))


def _with(**changes: object) -> ModelMeta:
    return dataclasses.replace(META, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (_with(inputs=META.inputs * 2), "2 input tensor(s), the model has 1"),
        (_with(outputs=()), "0 output tensor(s), the model has 1"),
        (_with(files=(("README.txt", README),)), "labels file 'labels.txt'"),
        (_with(files=()), "is not among the associated files (none)"),
        (_with(model_files=(("NOTES.txt", "x"),)), "model file 'NOTES.txt'"),
    ],
)
def test_refuses_metadata_that_does_not_fit(plain: bytes, meta: ModelMeta, message: str) -> None:
    with pytest.raises(ConversionError) as caught:
        embed_metadata(plain, meta)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a model at all", b"\x00" * 64, b"\x08\x00\x00\x00TFL3\xff\xff\xff\x7f"],
)
def test_refuses_bytes_that_are_not_tflite(data: bytes) -> None:
    with pytest.raises(ConversionError) as caught:
        embed_metadata(data, META)
    assert "TFLite model" in str(caught.value)
    assert "\n" not in str(caught.value)
