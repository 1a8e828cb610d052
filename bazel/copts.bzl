"""Compiler options for syncpool's own code."""

# The language of syncpool's sources and public headers. Every syncpool target compiles with
# it, whatever the workspace's own -std. Bazel passes no compiler flag from a library to the
# targets that depend on it, so a target of another workspace whose sources include syncpool's
# headers adds it too: load("@syncpool//bazel:copts.bzl", "SYNCPOOL_CXXOPTS"), then
# copts = SYNCPOOL_CXXOPTS.
SYNCPOOL_CXXOPTS = ["-std=c++20"]

# syncpool's targets: the language and the warnings. Warnings are errors in this workspace
# only (.bazelrc): in another workspace that builds syncpool, a new compiler's warning in its
# code does not stop the build.
SYNCPOOL_COPTS = SYNCPOOL_CXXOPTS + [
    "-Wall",
    "-Wextra",
]
