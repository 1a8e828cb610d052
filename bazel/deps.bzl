"""The repositories syncpool's library needs, for this workspace and any other.

In another workspace's WORKSPACE file:

    local_repository(name = "syncpool", path = "/path/to/syncpool")
    load("@syncpool//bazel:deps.bzl", "syncpool_dependencies")
    syncpool_dependencies()

then depend on "@syncpool//:syncpool". A repository the workspace has already declared under
one of these names, before the call, is kept (its own Abseil, say). bazel/README.md says what
each one stands in for.
"""

load("//bazel:system_libs.bzl", "system_library")

def _bazel_stand_in_impl(rctx):
    # The stand-in's files and folders, linked from its folder under bazel/ of the syncpool
    # repository (of the repository that declares this rule, wherever it lies on disk).
    top = rctx.path(Label("//bazel:BUILD.bazel")).dirname.get_child(rctx.attr.folder)
    if not top.exists:
        fail("syncpool: no folder bazel/%s" % rctx.attr.folder)
    for entry in top.readdir():
        rctx.symlink(entry, entry.basename)

_bazel_stand_in = repository_rule(
    implementation = _bazel_stand_in_impl,
    attrs = {"folder": attr.string(mandatory = True)},
    local = True,
)

def _declare(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def _label(name):
    # A label of this repository, whatever name the calling workspace gave it.
    return str(Label(name))

def syncpool_dependencies():
    """Declares the repositories that @syncpool//:syncpool needs, unless already declared."""

    # Bazel 4.2.3's own C++ and Java tools load these even for a pure C++ build; nothing may
    # be downloaded, so they are small stand-ins (bazel/rules_cc, bazel/rules_java,
    # bazel/remote_coverage_tools).
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        _declare(_bazel_stand_in, name = name, folder = name)

    # Abseil 20220623 from Debian's libabsl-dev; mimalloc, which the library loads at run time
    # (libmimalloc2.0), so that its target only links libdl.
    _declare(
        system_library,
        name = "com_google_absl",
        packages = {
            "absl/base": _label("//bazel:absl_base.BUILD"),
            "absl/container": _label("//bazel:absl_container.BUILD"),
            "absl/debugging": _label("//bazel:absl_debugging.BUILD"),
            "absl/synchronization": _label("//bazel:absl_synchronization.BUILD"),
            "absl/strings": _label("//bazel:absl_strings.BUILD"),
            "absl/time": _label("//bazel:absl_time.BUILD"),
        },
    )
    _declare(
        system_library,
        name = "mimalloc",
        packages = {"": _label("//bazel:mimalloc.BUILD")},
    )
