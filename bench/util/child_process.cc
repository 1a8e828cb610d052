// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0

#include "bench/util/child_process.h"

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace syncpool {
namespace bench {

bool RunSelf(const char* tool, const std::vector<std::string>& args,
             const std::function<void(std::string_view line)>& on_line) {
  std::vector<std::string> copies = args;
  std::vector<char*> argv;
  for (std::string& a : copies) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "%s: pipe: ", tool);
    std::perror(nullptr);
    return false;
  }
  std::fflush(stdout);  // Nothing buffered here is written twice by the child.
  const pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "%s: fork: ", tool);
    std::perror(nullptr);
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy.
    execv("/proc/self/exe", argv.data());
    std::perror("exec /proc/self/exe");
    _exit(127);
  }
  close(fds[1]);
  FILE* out = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t n;
  while ((n = getline(&line, &capacity, out)) > 0) {
    std::string_view text(line, static_cast<size_t>(n));
    if (text.back() == '\n') text.remove_suffix(1);
    on_line(text);
  }
  std::free(line);
  std::fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace bench
}  // namespace syncpool
