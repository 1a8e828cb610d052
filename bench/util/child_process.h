// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/util/child_process.h
// -----------------------------------------------------------------------------
//
// Running this program again as a child process, for tools that measure something per process
// (the resident set of one memory resource, with no other resource's heap in it): the child is
// /proc/self/exe with the arguments given, its standard output read by the parent line by line.

#ifndef SYNCPOOL_BENCH_UTIL_CHILD_PROCESS_H_
#define SYNCPOOL_BENCH_UTIL_CHILD_PROCESS_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace syncpool {
namespace bench {

// RunSelf()
//
// Runs this program with `args` (args[0] is its name for the child) and waits for it; calls
// `on_line` with each line the child writes on its standard output, without the newline (its
// standard error is this process's). Returns whether the child exited with status 0; a
// failure to start it is reported on stderr, prefixed with `tool`.
bool RunSelf(const char* tool, const std::vector<std::string>& args,
             const std::function<void(std::string_view line)>& on_line);

}  // namespace bench
}  // namespace syncpool

#endif  // SYNCPOOL_BENCH_UTIL_CHILD_PROCESS_H_
