#!/usr/bin/env bash
# The demonstration: installs what is missing (scripts/install_deps.sh), then builds and runs
# //bench:demo optimized. Works from any directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install_deps.sh
exec bazel run -c opt //bench:demo
