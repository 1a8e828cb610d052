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
)

log() { echo "install_deps: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found; these scripts expect Debian 12 and its packages: ${PACKAGES[*]}"

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
  if [[ "${status}" != "install ok installed" ]]; then
    missing+=("${pkg}")
  fi
done

if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages present; nothing to install"
  exit 0
fi

log "missing: ${missing[*]}"

as_root=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    die "not running as root and sudo is not available; run this as root, or install:" \
      "apt-get install --no-install-recommends ${missing[*]}"
  fi
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"

# Check again: a package that apt could not install must stop the build here, not in Bazel.
for pkg in "${missing[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
  [[ "${status}" == "install ok installed" ]] || die "${pkg} is still not installed"
done
log "installed: ${missing[*]}"
