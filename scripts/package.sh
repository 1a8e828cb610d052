#!/usr/bin/env bash
# The Debian package libsyncpool-dev (cmake/package.cmake): builds it with cpack into out/
# (RelWithDebInfo, installed under /usr), then checks
#   - its control fields: name, the version of include/syncpool/version.h, the Abseil it was
#     built against (Depends), mimalloc (Recommends);
#   - its file list (dpkg-deb -c): exactly the public headers of include/syncpool, the static
#     library, the CMake package and syncpool.pc, the license, changelog and README, and docs/
#     (so that the README's links work in the installed copy);
#   - that the CMake consumer (scripts/consumers.sh cmake) builds and runs against its
#     unpacked tree (dpkg-deb -x).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly BUILD=out/package

cmake -S . -B "${BUILD}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_DOCDIR=share/doc/libsyncpool-dev
cmake --build "${BUILD}" -j2
rm -f "${BUILD}"/*.deb
(cd "${BUILD}" && cpack -G DEB)
debs=("${BUILD}"/libsyncpool-dev_*.deb)
((${#debs[@]} == 1)) && [[ -f "${debs[0]}" ]] || { echo "FAIL: no single .deb in ${BUILD}" >&2; exit 1; }
deb="${debs[0]}"
echo "package: ${deb}"

status=0
fail() { echo "FAIL: $*" >&2; status=1; }

version="$(for part in MAJOR MINOR PATCH; do
  sed -n "s/^#define SYNCPOOL_VERSION_${part} \([0-9]*\)$/\1/p" include/syncpool/version.h
done | paste -sd.)"
arch="$(dpkg --print-architecture)"
absl="$(dpkg-query -W -f='${Version}\n' libabsl-dev | head -n 1)"
[[ "$(dpkg-deb -f "${deb}" Package)" == libsyncpool-dev ]] || fail "Package is not libsyncpool-dev"
[[ "$(dpkg-deb -f "${deb}" Version)" == "${version}" ]] ||
  fail "Version $(dpkg-deb -f "${deb}" Version), version.h says ${version}"
[[ "$(dpkg-deb -f "${deb}" Architecture)" == "${arch}" ]] || fail "Architecture is not ${arch}"
depends="$(dpkg-deb -f "${deb}" Depends)"
[[ "${depends}" == *"libabsl-dev (>= ${absl})"* && "${depends}" == *"libabsl${absl%%.*}"* ]] ||
  fail "Depends does not name the Abseil built against (${absl}): ${depends}"
[[ "$(dpkg-deb -f "${deb}" Recommends)" == *libmimalloc2.0* ]] || fail "Recommends lacks libmimalloc2.0"

# The files it must hold, and no others.
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)"
lib="usr/lib/${multiarch}"
expected="$( (
  git ls-files 'include/syncpool/*.h' | sed 's|^|usr/|'
  echo "${lib}/libsyncpool.a"
  echo "${lib}/pkgconfig/syncpool.pc"
  for f in syncpoolConfig.cmake syncpoolConfigVersion.cmake syncpoolTargets.cmake \
    syncpoolTargets-relwithdebinfo.cmake; do
    echo "${lib}/cmake/syncpool/${f}"
  done
  for f in CHANGELOG.md LICENSE README.md; do echo "usr/share/doc/libsyncpool-dev/${f}"; done
  git ls-files docs | sed 's|^|usr/share/doc/libsyncpool-dev/|'
) | sort)"
actual="$(dpkg-deb -c "${deb}" | awk '$1 !~ /^d/ { sub(/^\.\//, "", $6); print $6 }' | sort)"
if [[ "${actual}" != "${expected}" ]]; then
  fail "file list differs from the expected one (< expected, > package):"
  diff <(echo "${expected}") <(echo "${actual}") >&2 || true
else
  echo "PASS: file list ($(wc -l <<<"${actual}") files)"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
dpkg-deb -x "${deb}" "${tmp}/root"

# No installed file carries a test seam: the fake CPU (src/fake_cpu.h) and the hooks of the
# window tests (src/test_seams.h) stay in src/, and the installed headers only leave hook
# points empty.
seams="$(grep -rlniE 'fake|_for_test|window|test_seams|testing/' "${tmp}/root/usr/include" || true)"
if [[ -n "${seams}" ]]; then
  fail "installed headers that mention a test seam:"
  sed "s|^${tmp}/root/||" <<<"${seams}" >&2
else
  echo "PASS: no installed header mentions a test seam"
fi

# The public face stays small: a program that includes the three public headers reads at most
# 12 syncpool headers, and at most 4 internal headers are installed (the inline paths':
# docs/design.md, "The public face").
printf '#include <syncpool/pool.h>\n#include <syncpool/pool_resource.h>\n#include <syncpool/pool_allocator.h>\n' >"${tmp}/faces.cc"
read_headers="$(${CXX:-c++} -std=c++20 -fsyntax-only -H -I"${tmp}/root/usr/include" "${tmp}/faces.cc" 2>&1 |
  sed -n 's|^\.* \(.*/include/syncpool/.*\)|\1|p' | sort -u | wc -l)"
if ((read_headers > 12)); then
  fail "a program that includes the three public headers reads ${read_headers} syncpool headers (at most 12)"
else
  echo "PASS: a program that includes the three public headers reads ${read_headers} syncpool headers (at most 12)"
fi
internal_headers="$(find "${tmp}/root/usr/include/syncpool/internal" -name '*.h' | wc -l)"
if ((internal_headers > 4)); then
  fail "${internal_headers} internal headers installed (at most 4)"
else
  echo "PASS: ${internal_headers} internal headers installed (at most 4)"
fi

bash scripts/consumers.sh cmake "${tmp}/root/usr" || status=1

((status == 0)) && echo "PASS: ${deb}"
exit "${status}"
