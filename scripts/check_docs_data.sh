#!/usr/bin/env bash
# Checks docs/data against its README: every file or folder in docs/data (but the README) is in
# the README's table and quoted by some document (README.md or docs/*.md, by its path under
# docs/data, or by its stem for the files a document names as "NAME.csv and .txt"), and every
# file the table lists exists.
# Usage: check_docs_data.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly DATA=docs/data
status=0
fail() { echo "FAIL: $*" >&2; status=1; }

# The names in the table's first column (`a`, `b/`), without a trailing slash.
listed="$(sed -n 's/^| \(`[^|]*`\) |.*/\1/p' "${DATA}/README.md" | grep -o '`[^`]*`' | tr -d '`' |
  sed 's|/$||' | sort -u)"
present="$(cd "${DATA}" && ls -1 | grep -vx 'README.md' | sort -u)"

while read -r name; do
  [[ -n "${name}" ]] || continue
  grep -qx -- "${name}" <<<"${listed}" || fail "${DATA}/${name} is not in ${DATA}/README.md"
  stem="${name%.*}"
  grep -qF -- "${name}" README.md docs/*.md || grep -qF -- "data/${stem}" README.md docs/*.md ||
    fail "${DATA}/${name} is quoted by no document"
done <<<"${present}"
while read -r name; do
  [[ -n "${name}" ]] || continue
  [[ -e "${DATA}/${name}" ]] || fail "${DATA}/README.md lists ${name}, which is not there"
done <<<"${listed}"

((status == 0)) && echo "PASS: ${DATA}: $(wc -l <<<"${present}") entries, each listed and quoted"
exit "${status}"
