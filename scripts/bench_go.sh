#!/usr/bin/env bash
# Go's sync.Pool against syncpool, measured in one run and printed as one table. Installs what
# is missing (Debian's golang-go, and scripts/install_deps.sh for the C++ side), then
#   1. go test -bench in bench/go (standard library only; nothing is downloaded):
#      BenchmarkAlloc, BenchmarkPool (one goroutine) and BenchmarkAllocParallel,
#      BenchmarkPoolParallel (b.RunParallel), with -cpu 1,2 and -benchmem
#   2. bazel run -c opt //bench:pool_bench: BM_Seed_Alloc and BM_Seed_Pool at 1 and 2 threads
#   3. a table of the median ns/op of each side and how many times faster syncpool is:
#      Go BenchmarkAlloc/BenchmarkPool (GOMAXPROCS=1) against threads:1, and
#      Go BenchmarkAllocParallel-2/BenchmarkPoolParallel-2 against threads:2
# The exit status is nonzero when any step fails, or when Go's BenchmarkAlloc does not make one
# 1 KiB heap allocation per operation. Settings, from the environment:
#   SYNCPOOL_BENCH_TIME          seconds per benchmark run: go -benchtime Ns and
#                                --benchmark_min_time=N (default 1)
#   SYNCPOOL_BENCH_COUNT         runs of each benchmark: go -count and --benchmark_repetitions;
#                                the table shows their median (default 3)
#   SYNCPOOL_BAZEL_OUTPUT_BASE   bazel --output_base (default: Bazel's own, so its cache is
#                                reused); when set, the workspace's bazel-* links are left alone
#   GOCACHE                      Go's build cache (default: ${TMPDIR:-/tmp}/syncpool-gocache)
# Extra arguments are passed to the Bazel command, e.g.
#   SYNCPOOL_BENCH_COUNT=5 bash scripts/bench_go.sh --config=clang
# Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "bench_go: $*" >&2; }
die() { log "error: $*"; exit 1; }

bench_time="${SYNCPOOL_BENCH_TIME:-1}"
bench_count="${SYNCPOOL_BENCH_COUNT:-3}"
if ! [[ "${bench_time}" =~ ^[0-9]*\.?[0-9]+$ ]] ||
  ! awk -v t="${bench_time}" 'BEGIN { exit !(t > 0) }'; then
  die "SYNCPOOL_BENCH_TIME must be a positive number of seconds, not '${bench_time}'"
fi
[[ "${bench_count}" =~ ^[1-9][0-9]*$ ]] ||
  die "SYNCPOOL_BENCH_COUNT must be a positive integer, not '${bench_count}'"

# Go: Debian 12's golang-go (Go 1.19) when no `go` is on the PATH.
if ! command -v go >/dev/null 2>&1; then
  log "go not found; installing Debian's golang-go"
  as_root=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
      die "not running as root and sudo is not available; run this as root, or install:" \
        "apt-get install --no-install-recommends golang-go"
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends golang-go
  command -v go >/dev/null 2>&1 || die "golang-go is installed but go is still not on the PATH"
fi

bash scripts/install_deps.sh

# The Go toolchain on this machine, offline, in module mode, whatever the user's settings.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS='' GOWORK=off GO111MODULE=on
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/syncpool-gocache}"

bazel_startup=()
bazel_flags=(-c opt)
if [[ -n "${SYNCPOOL_BAZEL_OUTPUT_BASE:-}" ]]; then
  bazel_startup=(--output_base="${SYNCPOOL_BAZEL_OUTPUT_BASE}")
  # The bazel-* links of the workspace belong to the default output base: leave them alone.
  bazel_flags+=(--symlink_prefix=/)
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
go_txt="${work}/go.txt"
cpp_txt="${work}/cpp.txt"
cpp_json="${work}/cpp.json"

echo
echo "==> Go: $(go version)"
go_cmd=(go test -run '^$' -bench . -benchmem -cpu '1,2'
  -benchtime "${bench_time}s" -count "${bench_count}")
echo "    (cd bench/go && ${go_cmd[*]})"
if ! (cd bench/go && "${go_cmd[@]}") | tee "${go_txt}"; then
  die "the Go benchmarks failed"
fi

echo
bazel_cmd=(bazel "${bazel_startup[@]}" run "${bazel_flags[@]}" "$@" //bench:pool_bench --
  --benchmark_filter='^BM_Seed_(Alloc|Pool)/'
  --benchmark_min_time="${bench_time}"
  --benchmark_repetitions="${bench_count}")
echo "==> syncpool: ${bazel_cmd[*]}"
if ! "${bazel_cmd[@]}" --benchmark_out="${cpp_json}" --benchmark_out_format=json |
  tee "${cpp_txt}"; then
  die "the C++ benchmarks failed"
fi

echo
echo "==> raw results"
grep -E '^Benchmark' "${go_txt}" || true
grep -E '^BM_Seed_' "${cpp_txt}" || true

echo
echo "==> Go sync.Pool vs syncpool: 1 KiB buffers, median of ${bench_count} run(s)" \
  "of ${bench_time}s each"
# The Go text output ("BenchmarkPool-2  N  X ns/op  B B/op  A allocs/op") and the C++ JSON
# (Google Benchmark writes one "key": value per line) are read with awk, not a JSON library,
# so that nothing beyond Debian's base system is needed.
awk -v count="${bench_count}" '
  function median(list,    v, n, i, j, x) {
    n = split(list, v, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++) {  # insertion sort, numerically
      x = v[i] + 0
      for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]
      v[j + 1] = x
    }
    return n % 2 ? v[(n + 1) / 2] + 0 : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function unquote(s) { sub(/^[^:]*:[ \t]*"?/, "", s); sub(/"?,?[ \t\r]*$/, "", s); return s }
  FILENAME == ARGV[1] && /^Benchmark/ && $4 == "ns/op" {
    go_ns[$1] = go_ns[$1] " " $3
    for (i = 5; i < NF; i += 2) {
      if ($(i + 1) == "B/op") go_bytes[$1] = go_bytes[$1] " " $i
      if ($(i + 1) == "allocs/op") go_allocs[$1] = go_allocs[$1] " " $i
    }
    next
  }
  FILENAME == ARGV[2] {
    if ($1 == "\"name\":") { name = unquote($0); type = ""; rt = "" }
    else if ($1 == "\"run_type\":") type = unquote($0)
    else if ($1 == "\"real_time\":") rt = unquote($0)
    else if ($1 == "\"time_unit\":" && type == "iteration" && rt != "") {
      unit = unquote($0)
      scale = unit == "ns" ? 1 : unit == "us" ? 1e3 : unit == "ms" ? 1e6 : unit == "s" ? 1e9 : 0
      if (scale == 0) { print "bench_go: unknown time unit " unit > "/dev/stderr"; bad = 1 }
      cpp_ns[name] = cpp_ns[name] " " rt * scale
    }
  }
  END {
    rows = split("Alloc,1 thread|Pool,1 thread|Alloc,2 threads|Pool,2 threads", row, "|")
    go_name[1] = "BenchmarkAlloc";           cpp_name[1] = "BM_Seed_Alloc/real_time/threads:1"
    go_name[2] = "BenchmarkPool";            cpp_name[2] = "BM_Seed_Pool/real_time/threads:1"
    go_name[3] = "BenchmarkAllocParallel-2"; cpp_name[3] = "BM_Seed_Alloc/real_time/threads:2"
    go_name[4] = "BenchmarkPoolParallel-2";  cpp_name[4] = "BM_Seed_Pool/real_time/threads:2"
    printf "%-18s %12s %16s %14s\n", "", "Go ns/op", "syncpool ns/op", "Go/syncpool"
    for (r = 1; r <= rows; r++) {
      split(row[r], part, ",")
      g = median(go_ns[go_name[r]])
      c = median(cpp_ns[cpp_name[r]])
      if (g == "" || c == "") {
        printf "bench_go: no result for %s\n", (g == "" ? go_name[r] : cpp_name[r]) > "/dev/stderr"
        bad = 1
      }
      printf "%-18s %12s %16s %14s\n", part[1] ", " part[2],
        g == "" ? "-" : sprintf("%.2f", g), c == "" ? "-" : sprintf("%.2f", c),
        (g == "" || c == "" || c <= 0) ? "-" : sprintf("%.1fx", g / c)
    }
    print ""
    print "Alloc: Go new([1024]byte) stored in a package-level sink, so it escapes to the heap and"
    print "  the garbage collector frees it; C++ new and delete of a 1 KiB buffer."
    print "Pool: Go sync.Pool Get and Put of a *[1024]byte (with a New func); syncpool Pool<Buf>"
    print "  Get and Put (the handle puts the buffer back)."
    print "1 thread: Go BenchmarkAlloc, BenchmarkPool at GOMAXPROCS=1; C++ .../real_time/threads:1."
    print "2 threads: Go BenchmarkAllocParallel-2, BenchmarkPoolParallel-2 (b.RunParallel on"
    print "  GOMAXPROCS=2); C++ .../real_time/threads:2. Both are the wall time divided by the"
    print "  operations of both workers (aggregate throughput), not the time of one operation."
    print "Go/syncpool: Go ns/op divided by syncpool ns/op, how many times faster syncpool is."
    b = median(go_bytes["BenchmarkAlloc"]); a = median(go_allocs["BenchmarkAlloc"])
    if (a == 1 && b == 1024) {
      print "Check: Go BenchmarkAlloc allocated 1024 B/op, 1 allocs/op (a real heap allocation)."
    } else {
      printf "bench_go: Go BenchmarkAlloc reported %s B/op, %s allocs/op, not 1024 B/op, " \
        "1 allocs/op: it is not measuring a heap allocation\n", b, a > "/dev/stderr"
      bad = 1
    }
    exit bad
  }
' "${go_txt}" "${cpp_json}" || die "could not compare the results"
