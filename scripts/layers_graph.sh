#!/usr/bin/env bash
# Draws the layers of the library from its build graph, for the top of docs/design.md:
#   bash scripts/layers_graph.sh           writes docs/layers.dot and docs/layers.png
#   bash scripts/layers_graph.sh --check   fails when docs/layers.dot differs from the build
#                                          graph (scripts/test.sh runs it)
# The graph is `bazel query` of //:syncpool's libraries in this package (one per layer,
# bazel/layers.bzl), each edge a dependency, drawn bottom up after a transitive reduction
# (an edge implied by a longer path is left out). Drawing needs graphviz (`dot`, `tred`),
# which scripts/install_deps.sh installs; the check needs Bazel only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The graph in dot, labels shortened to the layer's name ("faces" for //:syncpool itself),
# edges sorted so that the file changes only when the graph does.
graph() {
  local edges
  edges="$(bazel query --noshow_progress \
    'kind(cc_library, deps(//:syncpool)) intersect //:*' --output=graph 2>/dev/null |
    sed -n 's|^ *"//:\([a-z_]*\)" -> "//:\([a-z_]*\)"$|\1 \2|p' |
    sed 's/syncpool_//g; s/^syncpool /faces /' | sort)"
  echo "// The layers of syncpool: an edge A -> B means target A depends on B."
  echo "// Written by scripts/layers_graph.sh from bazel query; do not edit by hand."
  echo "digraph layers {"
  echo "  rankdir=BT;"
  echo "  node [shape=box, fontname=\"Helvetica\"];"
  while read -r from to; do
    echo "  \"${from}\" -> \"${to}\";"
  done <<<"${edges}"
  echo "}"
}

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -u docs/layers.dot <(graph); then
    echo "layers_graph: docs/layers.dot differs from the build graph;" \
      "run bash scripts/layers_graph.sh" >&2
    exit 1
  fi
  echo "layers_graph: docs/layers.dot matches the build graph"
  exit 0
fi

command -v dot >/dev/null && command -v tred >/dev/null ||
  { echo "layers_graph: needs graphviz (bash scripts/install_deps.sh)" >&2; exit 1; }
graph >docs/layers.dot
tred docs/layers.dot | dot -Tpng -Gdpi=96 -o docs/layers.png
echo "layers_graph: wrote docs/layers.dot and docs/layers.png"
