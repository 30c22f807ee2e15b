"""Format bridges shared by backends: ONNX -> TensorFlow (onnx2tf), TensorFlow -> ONNX (tf2onnx),
TensorFlow -> Core ML (coremltools).

Each bridge checks the converted float model against the original on calibration samples and
fails the build, naming the worst output, when they disagree beyond float tolerance.
"""
