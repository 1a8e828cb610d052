"""A repository rule that exposes a library installed from Debian's packages.

The headers stay where the package put them (under /usr/include, which the C++ toolchain
already searches); the repository only carries BUILD files that name the libraries to link.
`packages` maps a package path inside the new repository ("" for its root) to the label of
the BUILD file to place there.
"""

def _system_library_impl(rctx):
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name)
    for pkg, build_file in rctx.attr.packages.items():
        path = (pkg + "/BUILD.bazel") if pkg else "BUILD.bazel"
        rctx.file(path, rctx.read(rctx.path(Label(build_file))))

system_library = repository_rule(
    implementation = _system_library_impl,
    attrs = {"packages": attr.string_dict(mandatory = True)},
    local = True,
)
