#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and benchmarking syncpool need, when
# they are missing. Idempotent: with everything present it changes nothing and says so.
#
# Everything comes from Debian's archive: Bazel, the libraries, the compilers and the tools.
# Missing packages are installed with `apt-get update` (once) and
# `apt-get install -y --no-install-recommends`, noninteractively; as root, or through sudo.
set -euo pipefail

# What each package is for:
#   bazel-bootstrap          Bazel 4.2.3 (pulls in build-essential and a JDK)
#   g++                      GCC 12, the default toolchain (its binutils brings readelf and
#                            objdump, for tests/dynamic_symbols_test.sh)
#   clang, libclang-rt-14-dev  clang 14 for --config=clang/asan/tsan and its sanitizer runtimes
#                            (the runtimes are only a recommendation of clang's packages)
#   libabsl-dev              Abseil 20220623
#   libmimalloc-dev          mimalloc 2.0.9, PoolResource's default upstream
#   libgtest-dev, libgmock-dev  GoogleTest / GoogleMock 1.12
#   libbenchmark-dev         Google Benchmark 1.7.1
#   libjemalloc-dev, libgoogle-perftools-dev  jemalloc and tcmalloc, compared in benchmarks
#   libtbb-dev               oneTBB's scalable allocator (libtbbmalloc), compared in workload_bench
#   libboost-container-dev   Boost.Container's pmr pool resources, compared in workload_bench
#   gnuplot-nox              charts drawn from benchmark output
#   graphviz                 docs/layers.png, drawn from the build graph (scripts/layers_graph.sh)
#   valgrind                 tests/valgrind_test.sh: tests under memcheck (the per-thread caches,
#                            since valgrind refuses rseq)
#   cmake, pkg-config        the CMake build (CMakeLists.txt), its package (cpack) and the
#                            consumers in examples/ (scripts/consumers.sh, scripts/package.sh)
#   g++-aarch64-linux-gnu    the aarch64 cross build (scripts/aarch64.sh)
#   qemu-user                runs the aarch64 tests (no rseq under it: the per-thread mode)
# and, for the aarch64 step only, the arm64 builds of the libraries (install_arm64 below).
readonly PACKAGES=(
  bazel-bootstrap
  g++
  clang
  libclang-rt-14-dev
  libabsl-dev
  libmimalloc-dev
  libgtest-dev
  libgmock-dev
  libbenchmark-dev
  libjemalloc-dev
  libgoogle-perftools-dev
  libtbb-dev
  libboost-container-dev
  gnuplot-nox
  graphviz
  valgrind
  cmake
  pkg-config
  g++-aarch64-linux-gnu
  qemu-user
)

# arm64 libraries (Multi-Arch: same, installed beside the amd64 ones) for scripts/aarch64.sh:
#   libc6:arm64              the loader and C library the programs run with under qemu
#   libabsl-dev:arm64        Abseil, linked by the library
#   libgtest-dev:arm64       GoogleTest, linked by the tests
#   libmimalloc2.0:arm64     mimalloc's shared library, loaded at run time (mimalloc_resource_test)
readonly ARM64_PACKAGES=(
  libc6:arm64
  libabsl-dev:arm64
  libgtest-dev:arm64
  libmimalloc2.0:arm64
)

log() { echo "install_deps: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found; these scripts expect Debian 12 and its packages: ${PACKAGES[*]}"

native_arch="$(dpkg --print-architecture)"

# missing_of PACKAGE...: prints those of the packages that are not installed, one a line. A
# name without ":ARCH" means the machine's own architecture (or "all"): once arm64 is added,
# dpkg-query lists both builds of a Multi-Arch package under its plain name.
missing_of() {
  local pkg want
  for pkg in "$@"; do
    if [[ "${pkg}" == *:* ]]; then want="${pkg#*:}"; else want="${native_arch}"; fi
    dpkg-query -W -f='${Architecture} ${Status}\n' "${pkg}" 2>/dev/null |
      grep -Eq "^(${want}|all) install ok installed$" || echo "${pkg}"
  done
}

as_root=()
if ((EUID != 0)) && command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
fi

apt_updated=0
# apt_install PACKAGE...: apt-get update (once), then installs the packages.
apt_install() {
  if ((EUID != 0)) && ((${#as_root[@]} == 0)); then
    log "not running as root and sudo is not available; run this as root, or install:" \
      "apt-get install --no-install-recommends $*"
    return 1
  fi
  if ((!apt_updated)); then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update || return 1
    apt_updated=1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"
}

# The arm64 libraries: a failure here (no arm64 packages in the archive reached, no root) is
# not fatal: scripts/aarch64.sh finds them missing and skips, naming them.
install_arm64() {
  local missing reason=""
  mapfile -t missing < <(missing_of "${ARM64_PACKAGES[@]}")
  ((${#missing[@]} > 0)) || return 0
  log "missing (arm64): ${missing[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if ! "${as_root[@]}" dpkg --add-architecture arm64; then
      reason="could not add the arm64 architecture (dpkg --add-architecture arm64)"
    fi
    apt_updated=0  # the new architecture's package lists
  fi
  if [[ -z "${reason}" ]] && ! apt_install "${missing[@]}"; then
    reason="apt-get could not install ${missing[*]}"
  fi
  if [[ -z "${reason}" ]]; then
    mapfile -t missing < <(missing_of "${ARM64_PACKAGES[@]}")
    ((${#missing[@]} == 0)) || reason="still not installed: ${missing[*]}"
  fi
  if [[ -n "${reason}" ]]; then
    log "arm64 libraries unavailable (the aarch64 step will skip): ${reason}"
    return 0
  fi
  log "installed (arm64): ${ARM64_PACKAGES[*]}"
}

mapfile -t missing < <(missing_of "${PACKAGES[@]}")
if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages present"
else
  log "missing: ${missing[*]}"
  apt_install "${missing[@]}" || die "apt-get could not install: ${missing[*]}"
  # Check again: a package that apt could not install must stop the build here, not in Bazel.
  mapfile -t missing < <(missing_of "${missing[@]}")
  ((${#missing[@]} == 0)) || die "still not installed: ${missing[*]}"
  log "installed the missing packages"
fi

install_arm64
