#!/usr/bin/env bash
# One build of libsyncpool.so loads on every glibc from 2.34 up. Checks its dynamic section:
#   - no symbol it imports or exports is versioned GLIBC_2.35 or later, and no entry of its
#     version needs names such a version unless marked weak (the loader of an older glibc
#     refuses an object that needs a version it lacks, whatever the symbol's binding);
#   - glibc's __rseq_offset / __rseq_size (GLIBC_2.35) appear, if at all, as weak undefined
#     references (src/cpu.cc looks them up at run time instead of linking them).
# Usage: dynamic_symbols_test.sh LIBRARY... (one shared library per layer of //:syncpool: each
# is checked, and together they must list some GLIBC_* symbol). Uses readelf, else objdump (binutils, which the
# compilers' packages depend on).
set -euo pipefail

if (($# > 1)); then
  status=0
  total=0
  for lib in "$@"; do
    out=$(SYNCPOOL_DYNSYM_PART=1 "$0" "${lib}") || status=1
    echo "${out}"
    n=$(sed -n 's/^PASS: .*: \([0-9]*\) symbols versioned.*/\1/p' <<<"${out}")
    total=$((total + ${n:-0}))
  done
  if ((total == 0)); then
    echo "FAIL: no library listed a symbol versioned GLIBC_*: the listing was not understood" >&2
    status=1
  fi
  exit "${status}"
fi

lib="${1:?usage: dynamic_symbols_test.sh LIBRARY...}"
[[ -f "${lib}" ]] || { echo "FAIL: ${lib} not found" >&2; exit 1; }

# too_new VERSION: true when VERSION (2.35, 2.3.4, ...) is 2.35 or later.
too_new() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  ((major > 2 || (major == 2 && ${minor:-0} >= 35)))
}

failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

glibc_symbols=0  # Symbols versioned GLIBC_*, to be sure the listing was understood.
if command -v readelf >/dev/null 2>&1; then
  tool="readelf"
  # Lines: Num: Value Size Type Bind Vis Ndx Name[@[@]VERSION [(n)]]
  while read -r _ _ _ _ bind _ ndx name _; do
    [[ "${name:-}" == *@* ]] || [[ "${name:-}" == __rseq_* ]] || continue
    base="${name%%@*}"
    version=""
    [[ "${name}" == *@GLIBC_* ]] && version="${name##*@GLIBC_}"
    if [[ -n "${version}" ]]; then
      glibc_symbols=$((glibc_symbols + 1))
      if too_new "${version}"; then
        fail "${name} (${bind}, ${ndx}) needs GLIBC_${version}"
      fi
    fi
    case "${base}" in
      __rseq_offset | __rseq_size)
        if [[ "${bind}" != "WEAK" || "${ndx}" != "UND" ]]; then
          fail "${name} is a ${bind} ${ndx} reference, not a weak undefined one"
        else
          echo "note: ${name} is a weak undefined reference"
        fi
        ;;
    esac
  done < <(readelf --dyn-syms -W "${lib}")
  # Lines: 0x0010:   Name: GLIBC_2.34  Flags: none  Version: 5
  while read -r _ _ vname _ flags _; do
    [[ "${vname}" == GLIBC_* ]] || continue
    if too_new "${vname#GLIBC_}" && [[ "${flags}" != *WEAK* ]]; then
      fail "the version needs name ${vname} (flags ${flags})"
    fi
  done < <(readelf -V -W "${lib}" | grep 'Name: GLIBC_' || true)
elif command -v objdump >/dev/null 2>&1; then
  tool="objdump"
  # Lines: VALUE FLAGS... SECTION SIZE [(VERSION)|VERSION] NAME, the weak flag a "w".
  while read -r line; do
    [[ "${line}" =~ (GLIBC_[0-9.]+)\)?[[:space:]]+([^[:space:]]+)$ ]] || \
      [[ "${line}" =~ [[:space:]](__rseq_[a-z]+)$ ]] || continue
    name="${line##* }"
    if [[ "${line}" =~ GLIBC_([0-9.]+) ]]; then
      version="${BASH_REMATCH[1]}"
      glibc_symbols=$((glibc_symbols + 1))
      too_new "${version}" && fail "${name} needs GLIBC_${version}: ${line}"
    fi
    case "${name}" in
      __rseq_offset | __rseq_size)
        if [[ "${line}" =~ ^[0-9a-f]+[[:space:]]+w[[:space:]] && "${line}" == *"*UND*"* ]]; then
          echo "note: ${name} is a weak undefined reference"
        else
          fail "${name} is not a weak undefined reference: ${line}"
        fi
        ;;
    esac
  done < <(objdump -T "${lib}")
  # Lines of "Version References": 0x0d696914 0x00 05 GLIBC_2.34 (flags 0x02: weak).
  while read -r _ vflags _ vname; do
    [[ "${vname:-}" == GLIBC_* ]] || continue
    if too_new "${vname#GLIBC_}" && (((vflags & 2) == 0)); then
      fail "the version needs name ${vname} (flags ${vflags})"
    fi
  done < <(objdump -p "${lib}" | sed -n '/^Version References:/,/^$/p')
else
  echo "FAIL: neither readelf nor objdump is installed (Debian's binutils)" >&2
  exit 1
fi

if ((glibc_symbols == 0)) && [[ -z "${SYNCPOOL_DYNSYM_PART:-}" ]]; then
  fail "${tool} listed no symbol versioned GLIBC_*: the listing was not understood"
fi
if ((failed)); then
  echo "FAIL: ${lib} would not load on glibc 2.34 (${tool})" >&2
  exit 1
fi
echo "PASS: ${lib}: ${glibc_symbols} symbols versioned GLIBC_*, none 2.35 or later (${tool})"
