#!/usr/bin/env bash
# Builds the program of examples/ (consumer_main.cc) the ways other projects use syncpool, runs
# it and checks the line it prints ("syncpool MAJOR.MINOR.PATCH: ..." with the version of
# include/syncpool/version.h):
#   cmake      examples/cmake_consumer: find_package(syncpool) + syncpool::syncpool, against
#              the static library installed into a fresh prefix (from out/cmake, the build of
#              scripts/cmake_tests.sh)
#   pkgconfig  examples/pkgconfig_consumer: make with `pkg-config --cflags --libs syncpool`,
#              against the shared library (-DBUILD_SHARED_LIBS=ON, Release) installed into
#              another; examples/misuse_main.cc built as a user's debug build with -Werror,
#              whose mistakes must abort with a message naming the pool; and the five
#              realistic programs of examples/programs (-O2 -Wall -Wextra -Werror), each of
#              which checks its own result
#   bazel      examples/bazel_consumer: local_repository + syncpool_dependencies(), a C++17
#              workspace; also checks, from the build's actions, that syncpool's sources
#              compile there as C++20 and without -Werror, and here with -Werror
# Usage: consumers.sh                 all three
#        consumers.sh cmake PREFIX    the CMake consumer against syncpool installed in PREFIX
#                                     (scripts/package.sh: the unpacked Debian package)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly ROOT="${PWD}"

version() {
  local part out=()
  for part in MAJOR MINOR PATCH; do
    out+=("$(sed -n "s/^#define SYNCPOOL_VERSION_${part} \([0-9]*\)$/\1/p" \
      include/syncpool/version.h)")
  done
  local IFS=.
  echo "${out[*]}"
}
readonly EXPECTED="syncpool $(version): Pool<std::string> pooled, PoolResource sum 5050, PoolAllocator sum 5050"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# check NAME PROGRAM...: runs the program and compares its output with EXPECTED.
check() {
  local name="$1" out
  shift
  out="$("$@")"
  if [[ "${out}" != "${EXPECTED}" ]]; then
    echo "FAIL: ${name} printed: ${out}" >&2
    echo "      expected:  ${EXPECTED}" >&2
    return 1
  fi
  echo "PASS: ${name}: ${out}"
}

# cmake_consumer PREFIX: builds examples/cmake_consumer against syncpool installed in PREFIX.
cmake_consumer() {
  local prefix="$1" build="${tmp}/cmake_consumer"
  rm -rf "${build}"
  cmake -S examples/cmake_consumer -B "${build}" -G Ninja -DCMAKE_PREFIX_PATH="${prefix}"
  cmake --build "${build}"
  check "cmake consumer" "${build}/app"
}

# install_syncpool BUILD_DIR PREFIX CMAKE_ARGS...: configures (if needed), builds and installs.
install_syncpool() {
  local build="$1" prefix="$2"
  shift 2
  cmake -S . -B "${build}" -G Ninja "$@" >/dev/null
  cmake --build "${build}" --target syncpool -j2
  cmake --install "${build}" --prefix "${prefix}" >/dev/null
}

# compile_flags PATTERN: for each compile action of the targets, a line "SOURCE STD WERROR":
# the last -std of its command line, and werror or nowerror. Fails when there is none.
compile_flags() {
  bazel aquery --noshow_progress "mnemonic(CppCompile, $1)" --output=text 2>/dev/null |
    awk '
      function flush() { if (source != "") print source, std, (werror ? "werror" : "nowerror") }
      /^action / { flush(); source = $3; gsub(/\047/, "", source); std = "none"; werror = 0; next }
      match($0, /-std=[a-z0-9+]+/) { std = substr($0, RSTART + 1, RLENGTH - 1) }
      /-Werror( |$)/ { werror = 1 }
      END { flush(); if (source == "") exit 1 }'
}

if [[ "${1:-}" == "cmake" ]]; then
  cmake_consumer "${2:?usage: consumers.sh cmake PREFIX}"
  exit 0
fi

echo "==> CMake consumer, static library"
install_syncpool out/cmake "${tmp}/static" -DSYNCPOOL_BUILD_TESTS=ON
cmake_consumer "${tmp}/static"

echo "==> pkg-config consumer, shared library (a release build)"
install_syncpool out/cmake-shared "${tmp}/shared" -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_BUILD_TYPE=Release
cp -r examples/consumer_main.cc examples/misuse_main.cc examples/pkgconfig_consumer \
  examples/programs "${tmp}/"
libdir="$(dirname "$(find "${tmp}/shared" -name syncpool.pc)")/.."
PKG_CONFIG_PATH="${libdir}/pkgconfig" make -C "${tmp}/pkgconfig_consumer" app misuse examples
# ldd's whole output first: `ldd | grep -q` under pipefail fails when grep exits at its match
# before ldd has written the rest (SIGPIPE).
if ! grep -q 'libsyncpool\.so' <<<"$(ldd "${tmp}/pkgconfig_consumer/app")"; then
  echo "FAIL: the pkg-config consumer did not link the shared library" >&2
  exit 1
fi
LD_LIBRARY_PATH="${libdir}" check "pkg-config consumer" "${tmp}/pkgconfig_consumer/app"

# The realistic programs of examples/programs: each checks its own result (exit status 0) and
# prints one line.
echo "==> examples/programs"
for program in buffer_pool request_handler monotonic_arena third_party_container \
  reading_stats; do
  rc=0
  out="$(LD_LIBRARY_PATH="${libdir}" "${tmp}/pkgconfig_consumer/${program}" 2>/dev/null)" || rc=$?
  if ((rc != 0)); then
    echo "FAIL: examples/programs/${program}: exit ${rc}: ${out}" >&2
    exit 1
  fi
  echo "PASS: ${out}"
done

# A user's debug build over the release library, no SYNCPOOL_* variable: each mistake aborts
# with a message naming syncpool, the pool and the mistake.
echo "==> misuse in a debug build of the consumer"
misuse() {
  local what="$1" pattern="$2" rc=0 err
  err="$(env -u SYNCPOOL_DEBUG LD_LIBRARY_PATH="${libdir}" \
    "${tmp}/pkgconfig_consumer/misuse" "${what}" 2>&1 >/dev/null)" || rc=$?
  if ((rc != 134)) || ! grep -Eq "${pattern}" <<<"${err}"; then
    echo "FAIL: misuse ${what}: exit ${rc}, expected an abort (134) printing /${pattern}/:" >&2
    echo "${err}" >&2
    return 1
  fi
  echo "PASS: misuse ${what}: $(head -1 <<<"${err}")"
}
ok="$(env -u SYNCPOOL_DEBUG LD_LIBRARY_PATH="${libdir}" "${tmp}/pkgconfig_consumer/misuse" ok)"
[[ "${ok}" == "ok: pooled" ]] || { echo "FAIL: misuse ok printed: ${ok}" >&2; exit 1; }
misuse double_put '^syncpool: Pool "checked": double Put'
misuse double_put_then_gets '^syncpool: Pool "checked": double Put'
misuse wrong_size '^syncpool: PoolResource "checked": deallocate of .* with size 2000, but it was allocated with size 100'
misuse other_resource '^syncpool: PoolResource "checked": deallocate of .*did not hand it out'
misuse malloc_pointer '^syncpool: PoolResource "checked": deallocate of .*did not hand it out'
misuse double_deallocate '^syncpool: PoolResource "checked": deallocate of .*double deallocate'

echo "==> Bazel consumer"
cd examples/bazel_consumer
# Its own output base: stop its server afterwards (memory), whatever the outcome.
trap '(cd "${ROOT}/examples/bazel_consumer" && bazel shutdown 2>/dev/null) || true
      rm -rf "${tmp}"' EXIT
bazel build --noshow_progress //:app
check "bazel consumer" bazel-bin/app
# The flags of syncpool's compile actions: in this workspace, C++20 (the last -std wins) and no
# -Werror; in syncpool's own, -Werror.
# expect_flags TARGETS PATTERN WHAT: every compile action of TARGETS matches PATTERN.
expect_flags() {
  local bad
  bad="$(compile_flags "$1" | grep -v "$2" || true)"
  if [[ -n "${bad}" ]]; then
    echo "FAIL: $3: ${bad}" >&2
    exit 1
  fi
}
expect_flags '@syncpool//:all' ' std=c++20 nowerror$' \
  "syncpool's sources compile in the Bazel consumer with"
cd "${ROOT}"
expect_flags '//:all' ' werror$' "syncpool's own build compiles its sources without -Werror"
echo "PASS: bazel consumer: syncpool compiled as C++20 without -Werror (with it here)"
