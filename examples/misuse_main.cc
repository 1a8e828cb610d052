// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// Mistakes a user's debug build must catch: scripts/consumers.sh builds this program without
// NDEBUG (-O1 -g -Wall -Wextra -Werror) against a release build of the installed library,
// sets no SYNCPOOL_* variable, runs each case and checks that it aborts with a message naming
// syncpool, the pool and the mistake. `ok` runs correct uses of the same pools and exits 0.
//
// Usage: misuse CASE, with CASE one of ok, double_put, double_put_then_gets, wrong_size,
// other_resource, malloc_pointer, double_deallocate.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "syncpool/options.h"
#include "syncpool/pool.h"
#include "syncpool/pool_resource.h"

namespace {

struct Buffer {
  char bytes[256];
};

int Run(const std::string& what) {
  // Designated initializers: every other field keeps its default, without a warning.
  syncpool::PoolResource resource(syncpool::Options{.name = "checked"});
  syncpool::Pool<Buffer> pool([] { return std::make_unique<Buffer>(); }, nullptr,
                              syncpool::Options{.name = "checked"});
  if (what == "ok") {
    void* p = resource.allocate(100);
    resource.deallocate(p, 100);
    auto handle = pool.Get();
    pool.Put(std::move(handle));  // Go's Put, for a handle.
    auto again = pool.Get();
    std::printf("ok: %s\n", again ? "pooled" : "empty");
    return 0;
  }
  if (what == "double_put" || what == "double_put_then_gets") {
    Buffer* raw = pool.Get().release().release();
    pool.Put(std::unique_ptr<Buffer>(raw));
    pool.Put(std::unique_ptr<Buffer>(raw));  // The second Put of the same object.
    if (what == "double_put_then_gets") {
      auto a = pool.Get();
      auto b = pool.Get();  // Without the checks: the same object twice.
      std::printf("%p %p\n", static_cast<void*>(a.get()), static_cast<void*>(b.get()));
    }
    return 0;
  }
  if (what == "wrong_size") {
    resource.deallocate(resource.allocate(100), 2000);
    return 0;
  }
  if (what == "other_resource") {
    syncpool::PoolResource other(syncpool::Options{.name = "other"});
    resource.deallocate(other.allocate(100), 100);
    return 0;
  }
  if (what == "malloc_pointer") {
    resource.deallocate(std::malloc(100), 100);
    return 0;
  }
  if (what == "double_deallocate") {
    void* p = resource.allocate(48);
    resource.deallocate(p, 48);
    resource.deallocate(p, 48);
    return 0;
  }
  std::fprintf(stderr, "misuse: unknown case %s\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: misuse CASE\n");
    return 2;
  }
  return Run(argv[1]);
}
