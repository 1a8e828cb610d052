"""Compiler options for syncpool's own code."""

# Warnings are errors for the project's own code (system libraries are prebuilt).
SYNCPOOL_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]
