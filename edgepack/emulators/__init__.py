"""Host emulators for runtimes that do not exist on the build machine.

:mod:`edgepack.emulators.coreml` runs Core ML ML programs in NumPy, on any OS.
"""
