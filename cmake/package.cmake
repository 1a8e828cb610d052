# The Debian package libsyncpool-dev (cpack -G DEB; scripts/package.sh builds and checks it):
# the headers, the static library, the CMake package and syncpool.pc, under /usr. Configure
# with -DCMAKE_INSTALL_PREFIX=/usr, so that the library lands in Debian's multiarch directory.

set(CPACK_PACKAGE_NAME libsyncpool-dev)
set(CPACK_PACKAGE_VENDOR "syncpool authors")
set(CPACK_PACKAGE_CONTACT "syncpool authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# The extended description, below CPACK_PACKAGE_DESCRIPTION_SUMMARY.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Pool<T>, a std::pmr::memory_resource (PoolResource) and a standard allocator\n(PoolAllocator<T>) over per-CPU caches; a sweeper thread gives back what\nsits unused. Headers, static library, CMake package and pkg-config file.")

# Abseil: the version this build compiled against. Its headers are part of syncpool's and its
# shared libraries are linked into every program, so the package needs that Abseil release
# (Debian names the runtime package after it, libabsl20220623).
find_program(SYNCPOOL_DPKG_QUERY dpkg-query)
if(SYNCPOOL_DPKG_QUERY)
  # One line per installed architecture (Multi-Arch: same), all of one version.
  execute_process(COMMAND ${SYNCPOOL_DPKG_QUERY} -W -f=\${Version}\n libabsl-dev
                  OUTPUT_VARIABLE _absl_deb_version ERROR_QUIET
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REGEX REPLACE "\n.*" "" _absl_deb_version "${_absl_deb_version}")
endif()
if(_absl_deb_version MATCHES "^([0-9]+:)?([0-9]+)")
  set(_absl_lts ${CMAKE_MATCH_2})
  math(EXPR _absl_next "${_absl_lts} + 1")
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libabsl-dev (>= ${_absl_deb_version}), libabsl-dev (<< ${_absl_next}), libabsl${_absl_lts}, libc6 (>= 2.34)")
else()
  # Not on a Debian system (no libabsl-dev to ask): name the release this version supports.
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libabsl-dev (>= 20220623), libabsl-dev (<< 20220624), libabsl20220623, libc6 (>= 2.34)")
endif()
# mimalloc is PoolResource's default upstream, loaded with dlopen() at run time: no tool finds
# that dependency, and without it the upstream is new/delete.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libmimalloc2.0")

include(CPack)
