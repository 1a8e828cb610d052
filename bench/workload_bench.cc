// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: bench/workload_bench.cc
// -----------------------------------------------------------------------------
//
// Application-shaped workloads (Google Benchmark), the same container code over each allocator:
//
//   bazel run -c opt //bench:workload_bench
//   bazel run -c opt //bench:workload_bench -- --benchmark_filter=BM_Tree --benchmark_min_time=0.2
//
//   BM_Tree/<allocator>/<nodes>   builds a document tree of <nodes> nodes (100, 1000, 10000,
//                                 100000, 1000000: about 153 MiB live) and destroys it, as a
//                                 JSON parser and its caller would: inner nodes are
//                                 std::maps of string keys to child nodes or
//                                 std::vectors of children grown by push_back without reserve,
//                                 leaves are strings of 20 to 80 characters (keys: 16 to 47,
//                                 all beyond the small-string buffer). Items are nodes: the
//                                 items_per_second column is nodes built and destroyed per second.
//   BM_Request/<allocator>/<max_kib>
//                                 bursts of request-sized temporaries: 8 bursts per iteration,
//                                 each of 1 to 64 requests alive at once, then all destroyed.
//                                 A request is a header table (std::unordered_map of 10 to 30
//                                 string pairs), a body (a string grown by appending chunks of
//                                 64 B to 1 KiB, up to a size between 256 B and <max_kib> KiB
//                                 (4, 64), log-uniform) and 4 to 24 fields copied out of the
//                                 body (std::vector of strings of 16 to 120 characters). Items
//                                 are requests. The body is a string, not a std::vector<char>:
//                                 libstdc++ 12 copies a vector<char> whose allocator is not
//                                 std::allocator one char at a time (__uninitialized_copy_a has
//                                 a memmove path for std::allocator only), which made every other
//                                 allocator here twice as slow as `std` at 64 KiB for that copy
//                                 alone (docs/benchmarks.md); strings copy with memcpy whatever
//                                 their allocator.
//   BM_Map/<allocator>/<entries>  a hash table (std::unordered_map) of <entries> entries (1000,
//                                 100000, 1000000: about 157 MiB live) built, read and
//                                 destroyed: keys are strings of 24 to 40 characters (beyond the
//                                 small-string buffer; the first six are the entry's number, so
//                                 they are unique), values std::vectors of 2 to 6 uint64_t, each
//                                 built with its size (one allocation); no reserve(), so the
//                                 bucket array grows by rehashing. Then every key is looked up
//                                 once (a string_view, no allocation), in the order of a stride
//                                 coprime with <entries>, so that consecutive lookups reach nodes
//                                 built far apart: where the allocator put them shows. Items are
//                                 entries. At 1,000,000 the time goes mostly to cache and TLB
//                                 misses, bump included.
//
// Everything is drawn from fixed-seed xorshift generators, reset every iteration (BM_Map's: one
// per entry, seeded from its number): every iteration, thread and allocator builds the same
// structures with the same allocation sizes, in the same order (the context lines at the top of
// the output count them, per tree, per request iteration and per map; counting them takes a
// few seconds at startup, most of it for the 1,000,000 sizes). Only the allocator differs:
//
//   std                 std::allocator (glibc malloc)
//   syncpool_allocator  syncpool::PoolAllocator<T> over PoolResource::Default() (no virtual call)
//   syncpool            std::pmr containers on PoolResource::Default()
//   monotonic_syncpool  BM_Request only: std::pmr containers on a per-thread
//                       std::pmr::monotonic_buffer_resource over PoolResource::Default(),
//                       released before every iteration (request-scoped memory)
//   new_delete          std::pmr containers on std::pmr::new_delete_resource()
//   mimalloc            std::pmr containers on syncpool::MimallocResource::Get() (mimalloc loaded
//                       locally; skipped with an error when libmimalloc.so.2 cannot be loaded)
//   synchronized_pool   std::pmr containers on one std::pmr::synchronized_pool_resource
//   tbb                 std::pmr containers on oneTBB's scalable_aligned_malloc/_free
//                       (libtbbmalloc, linked without its malloc-replacing proxy)
//   boost_pool          std::pmr containers on one boost::container::pmr::
//                       synchronized_pool_resource (default options), through an adapter to
//                       std::pmr::memory_resource that adds one virtual call per allocate and
//                       per deallocate
//
// The stricter peers: standard allocators (no virtual call) whose inline allocate and
// deallocate call the library's functions through pointers resolved once at startup
// (bench/direct_allocators.h). Each library is loaded with dlopen(RTLD_LOCAL): linking one would
// replace malloc for the whole program; the `malloc` context line shows which library serves
// the program's malloc (glibc's libc.so.6). A library that cannot be loaded skips its rows with
// the dlopen error (the `direct_allocators` context line says what was loaded).
//
//   mimalloc_allocator  mi_malloc / mi_free (libmimalloc.so.2)
//   tcmalloc_allocator  gperftools' tc_malloc / tc_free_sized (libtcmalloc_minimal.so.4)
//   jemalloc_allocator  mallocx / sdallocx (libjemalloc.so.2). jemalloc's initial-exec TLS does
//                       not fit glibc's default room for a library loaded at run time: the
//                       program runs itself again at startup with GLIBC_TUNABLES=
//                       glibc.rtld.optional_static_tls=8192 (added to what GLIBC_TUNABLES holds)
//                       unless that tunable is set already.
//   bump                the physical floor: allocate bumps a per-thread pointer (8-byte
//                       granules) through chunks mapped and faulted in (MAP_POPULATE) during the
//                       warm-up iteration, reset to the first chunk before every iteration (O(1),
//                       inside the timing), the chunks unmapped after the timed loop; deallocate
//                       does nothing. No allocator can allocate for less.
//   bump_percpu         the floor of a design in which every block passes once through
//                       syncpool's per-CPU stacks: bump's blocks, and with each allocation one
//                       inline pop and push (PoolAllocator over PoolResource::Default()) of a
//                       block of the same size, the same block each time (always a hit, always
//                       in cache, no span touched).
//
// For the two syncpool allocators the label holds what PoolResource::Default()'s caches did
// during the timed loop, from GetStats() deltas: hit (hits / (hits + misses), percent), then per
// iteration: misses (upstream calls), grows (per-CPU capacity doublings), spills and shared_moves (include/syncpool/stats.h).
// Thread 0 takes the snapshots, at its first timed iteration and after the loop, so the figures
// include every thread's work and are divided by the iterations of all threads.
//
// Thread counts: 1 and 2 by default (this project's CI machine class has two cores);
// --syncpool_threads=1,2,4 (a comma-separated list, before the Google Benchmark flags) replaces
// them. Each thread builds its own structures; the resources are shared by the threads, created
// on first use and never destroyed. Each thread builds one tree (one request iteration, one
// map) before timing, so the pools are measured warm. At the 1,000,000 sizes an iteration takes
// 0.06 to 1.7 s (BM_Tree) and 1.3 to 3.7 s (BM_Map) on the CI machine class, so those rows run
// one or a few iterations at the default --benchmark_min_time, about 3 minutes for all of them
// (--benchmark_filter='/(100|1000|10000|100000|4|64)/' leaves them out). Every benchmark uses
// UseRealTime(): with several threads a time is the wall time divided by the iterations of all
// threads.
//
// --workload_context=0 (before the Google Benchmark flags) skips the output's "per tree",
// "per request" and "per map" lines, which build every workload once at startup over
// new/delete (seconds, and up to hundreds of MB that glibc keeps): for profiles and for the
// peak resident set. The program prints its peak resident set (getrusage's ru_maxrss) on
// stderr at exit, as "peak_rss_kib=N"; run one benchmark per process to compare allocators
// by it (docs/memory.md, "A large tree's peak").
//
// The names are stable: results are compared across versions by name.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <sys/resource.h>

#include "bench/bench_util.h"
#include "bench/direct_allocators.h"
#include "benchmark/benchmark.h"
#include "boost/container/pmr/synchronized_pool_resource.hpp"
#include "oneapi/tbb/scalable_allocator.h"
#include "syncpool/mimalloc_resource.h"
#include "syncpool/pool_allocator.h"
#include "syncpool/pool_resource.h"
#include "syncpool/stats.h"

namespace {

// -----------------------------------------------------------------------------
// Deterministic content
// -----------------------------------------------------------------------------

// Marsaglia's xorshift64: a fixed sequence per seed, on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }

  // In [low, high].
  size_t Uniform(size_t low, size_t high) {
    return low + static_cast<size_t>(Next() % (high - low + 1));
  }

  bool Coin() { return (Next() >> 63) != 0; }

 private:
  uint64_t state_;
};

constexpr uint64_t kTreeSeed = 0x9e3779b97f4a7c15;
constexpr uint64_t kRequestSeed = 0xd1b54a32d192ed03;
constexpr uint64_t kBurstSeed = 0x8cb92ba72f3d8dd7;
constexpr uint64_t kMapSeed = 0x94d049bb133111eb;

// splitmix64's finalizer: a seed per index, for generators that start at any index.
uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// The characters every string is cut from.
constexpr size_t kTextBytes = 8192;

const char* TextPool() {
  static const char* const text = [] {
    static char chars[kTextBytes];
    constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789-_ /:.,;=";
    Rng rng(0x2545f4914f6cdd1d);
    for (char& c : chars) c = kAlphabet[rng.Next() % (sizeof(kAlphabet) - 1)];
    return chars;
  }();
  return text;
}

// A slice of the pool of [low, high] characters, at a random offset.
std::string_view Text(Rng& rng, size_t low, size_t high) {
  const size_t length = rng.Uniform(low, high);
  return std::string_view(TextPool() + rng.Uniform(0, kTextBytes - length), length);
}

// -----------------------------------------------------------------------------
// BM_Tree's document
// -----------------------------------------------------------------------------

// The most children of an inner node.
constexpr size_t kMaxFanout = 16;

// A tree of exactly `nodes` nodes, built in the constructor and destroyed in the destructor,
// every container and node allocated through `CharAlloc` rebound. An inner node of n - 1
// descendants has 1 to 16 children (fewer if n - 1 is smaller) sharing them evenly; a node
// without descendants is a string.
template <typename CharAlloc>
class Document {
 public:
  template <typename T>
  using Alloc = typename std::allocator_traits<CharAlloc>::template rebind_alloc<T>;
  using String = std::basic_string<char, std::char_traits<char>, CharAlloc>;
  struct Node;
  using Object = std::map<String, Node*, std::less<>, Alloc<std::pair<const String, Node*>>>;
  using Array = std::vector<Node*, Alloc<Node*>>;
  struct Node {
    template <size_t I, typename... Args>
    explicit Node(std::in_place_index_t<I> index, Args&&... args)
        : value(index, std::forward<Args>(args)...) {}
    std::variant<String, Object, Array> value;
  };

  Document(const CharAlloc& alloc, size_t nodes) : alloc_(alloc), node_alloc_(alloc) {
    Rng rng(kTreeSeed);
    root_ = Build(rng, nodes);
  }
  ~Document() { Destroy(root_); }
  Document(const Document&) = delete;
  Document& operator=(const Document&) = delete;

  const Node* root() const { return root_; }

 private:
  using NodeTraits = std::allocator_traits<Alloc<Node>>;

  template <size_t I, typename... Args>
  Node* New(Args&&... args) {
    Node* node = NodeTraits::allocate(node_alloc_, 1);
    ::new (static_cast<void*>(node)) Node(std::in_place_index<I>, std::forward<Args>(args)...);
    return node;
  }

  Node* Build(Rng& rng, size_t nodes) {
    if (nodes <= 1) return New<0>(Text(rng, 20, 80), alloc_);
    const size_t descendants = nodes - 1;
    const size_t fanout = std::min(descendants, rng.Uniform(1, kMaxFanout));
    auto share = [&](size_t i) { return descendants / fanout + (i < descendants % fanout); };
    if (rng.Coin()) {
      Node* node = New<1>(Alloc<std::pair<const String, Node*>>(alloc_));
      Object& members = std::get<1>(node->value);
      for (size_t i = 0; i < fanout; ++i) {
        String key(Text(rng, 16, 47), alloc_);
        key[0] = "0123456789abcdef"[i];  // Unique among its siblings.
        Node* child = Build(rng, share(i));
        members.emplace(std::move(key), child);
      }
      return node;
    }
    Node* node = New<2>(Alloc<Node*>(alloc_));
    Array& items = std::get<2>(node->value);
    for (size_t i = 0; i < fanout; ++i) items.push_back(Build(rng, share(i)));
    return node;
  }

  void Destroy(Node* node) {
    if (const Object* members = std::get_if<1>(&node->value)) {
      for (const auto& member : *members) Destroy(member.second);
    } else if (const Array* items = std::get_if<2>(&node->value)) {
      for (Node* item : *items) Destroy(item);
    }
    node->~Node();
    NodeTraits::deallocate(node_alloc_, node, 1);
  }

  CharAlloc alloc_;
  Alloc<Node> node_alloc_;
  Node* root_;
};

// -----------------------------------------------------------------------------
// BM_Request's bursts
// -----------------------------------------------------------------------------

constexpr int kBurstsPerIteration = 8;
constexpr size_t kMaxBurst = 64;

// A hash for the header table: std::hash has no specialization for strings of other allocators.
struct StringHash {
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
};

template <typename CharAlloc>
class RequestBurster {
 public:
  template <typename T>
  using Alloc = typename std::allocator_traits<CharAlloc>::template rebind_alloc<T>;
  using String = std::basic_string<char, std::char_traits<char>, CharAlloc>;
  using Headers = std::unordered_map<String, String, StringHash, std::equal_to<>,
                                     Alloc<std::pair<const String, String>>>;

  struct Request {
    explicit Request(const CharAlloc& alloc)
        : headers(Alloc<std::pair<const String, String>>(alloc)), body(alloc), fields(alloc) {}
    Headers headers;
    String body;
    std::vector<String, Alloc<String>> fields;
  };

  RequestBurster(const CharAlloc& alloc, size_t max_body_bytes)
      : alloc_(alloc), max_body_log2_(std::bit_width(max_body_bytes) - 1) {}

  // One iteration: kBurstsPerIteration bursts. Returns the number of requests.
  size_t Run() {
    Rng rng(kRequestSeed);
    Rng bursts(kBurstSeed);
    size_t requests = 0;
    const Alloc<Request> request_alloc(alloc_);
    std::vector<Request, Alloc<Request>> live(request_alloc);
    live.reserve(kMaxBurst);  // Requests stay where they are built, as in a slot table.
    for (int b = 0; b < kBurstsPerIteration; ++b) {
      const size_t burst = bursts.Uniform(1, kMaxBurst);
      for (size_t i = 0; i < burst; ++i) {
        live.emplace_back(alloc_);
        Fill(rng, live.back());
      }
      benchmark::DoNotOptimize(live.data());
      benchmark::ClobberMemory();
      requests += burst;
      live.clear();
    }
    return requests;
  }

 private:
  void Fill(Rng& rng, Request& request) {
    const size_t headers = rng.Uniform(10, 30);
    for (size_t i = 0; i < headers; ++i) {
      String name(Text(rng, 8, 32), alloc_);
      String value(Text(rng, 8, 100), alloc_);
      request.headers.emplace(std::move(name), std::move(value));
    }
    // Log-uniform: a power of two 2^e, e in [9, log2(max)], then uniform in [2^(e-1), 2^e].
    const size_t e = rng.Uniform(9, max_body_log2_);
    const size_t size = rng.Uniform(size_t{1} << (e - 1), size_t{1} << e);
    while (request.body.size() < size) {
      const std::string_view chunk = Text(rng, 64, 1024);
      const size_t n = std::min(chunk.size(), size - request.body.size());
      request.body.append(chunk.data(), n);
    }
    const size_t fields = rng.Uniform(4, 24);
    for (size_t i = 0; i < fields; ++i) {
      const size_t length = rng.Uniform(16, 120);
      const size_t offset = rng.Uniform(0, size - length);
      request.fields.push_back(
          String(std::string_view(request.body.data() + offset, length), alloc_));
    }
  }

  CharAlloc alloc_;
  size_t max_body_log2_;
};

// -----------------------------------------------------------------------------
// BM_Map's table
// -----------------------------------------------------------------------------

// A hash that also takes string_views (with std::equal_to<>, lookups without a key string).
// Not noexcept on purpose: libstdc++ then keeps each node's hash code in the node, as it does
// for std::hash<std::string> (which it declares slow), so the nodes are those of a table keyed
// by std::string. With a noexcept hash of its own it would not, and would hash keys again on
// every rehash and bucket walk.
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Keys of 24 to 40 characters, all beyond the small-string buffer (15).
constexpr size_t kMaxKey = 40;

// One iteration of BM_Map: a std::unordered_map of `entries` keys to vectors of 2 to 6
// integers, every string, vector, node and bucket array allocated through `CharAlloc` rebound;
// built without reserve() (the buckets grow by rehashing, as a table filled from input does),
// every key looked up once in a scattered order, then destroyed.
template <typename CharAlloc>
class Table {
 public:
  template <typename T>
  using Alloc = typename std::allocator_traits<CharAlloc>::template rebind_alloc<T>;
  using String = std::basic_string<char, std::char_traits<char>, CharAlloc>;
  using Values = std::vector<uint64_t, Alloc<uint64_t>>;
  using Map = std::unordered_map<String, Values, TransparentStringHash, std::equal_to<>,
                                 Alloc<std::pair<const String, Values>>>;

  Table(const CharAlloc& alloc, size_t entries)
      : alloc_(alloc), entries_(entries), stride_(Stride(entries)) {}

  // Returns the number of entries.
  size_t Run() {
    uint64_t sum = 0;
    {
      const Alloc<std::pair<const String, Values>> node_alloc(alloc_);
      Map map(node_alloc);
      for (size_t i = 0; i < entries_; ++i) {
        Rng rng(Mix(kMapSeed + i) | 1);
        char key[kMaxKey];
        Values values(rng.Uniform(2, 6), alloc_);
        String name(Key(i, rng, key), alloc_);
        for (uint64_t& value : values) value = rng.Next();
        map.emplace(std::move(name), std::move(values));
      }
      // Every key once, in the order of a stride coprime with the count: neighbours in the
      // lookup order were built far apart.
      size_t i = 0;
      for (size_t n = 0; n < entries_; ++n) {
        Rng rng(Mix(kMapSeed + i) | 1);
        rng.Uniform(2, 6);
        char key[kMaxKey];
        const auto it = map.find(Key(i, rng, key));
        if (it == map.end()) std::abort();
        for (uint64_t value : it->second) sum += value;
        i += stride_;
        if (i >= entries_) i -= entries_;
      }
      benchmark::DoNotOptimize(map);
    }
    benchmark::DoNotOptimize(sum);
    return entries_;
  }

 private:
  // The key of entry i in `buffer`: 24 to 40 characters of the text, the first six replaced by
  // i in hexadecimal, so that the keys are unique (up to 16^6 entries).
  static std::string_view Key(size_t i, Rng& rng, char (&buffer)[kMaxKey]) {
    const std::string_view text = Text(rng, 24, kMaxKey);
    std::copy(text.begin(), text.end(), buffer);
    for (int d = 0; d < 6; ++d) buffer[d] = "0123456789abcdef"[(i >> (4 * d)) & 15];
    return std::string_view(buffer, text.size());
  }

  // About entries / golden ratio, coprime with entries.
  static size_t Stride(size_t entries) {
    size_t stride = std::max<size_t>(1, entries * 618 / 1000) | 1;
    while (std::gcd(stride, entries) != 1) stride += 2;
    return stride % entries;
  }

  CharAlloc alloc_;
  size_t entries_;
  size_t stride_;
};

// -----------------------------------------------------------------------------
// Allocators
// -----------------------------------------------------------------------------

// oneTBB's scalable allocator as a memory_resource. libtbbmalloc is linked, not its proxy
// (libtbbmalloc_proxy), so malloc and operator new stay glibc's: only this resource uses it.
class TbbResource final : public std::pmr::memory_resource {
  void* do_allocate(size_t bytes, size_t alignment) override {
    // scalable_aligned_malloc refuses 0 bytes.
    void* p = scalable_aligned_malloc(bytes != 0 ? bytes : 1, alignment);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, size_t /*bytes*/, size_t /*alignment*/) override {
    scalable_aligned_free(p);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

// Boost.Container's synchronized_pool_resource (default options: pools up to 4 KiB, larger
// blocks straight to its upstream, Boost's new_delete_resource; every call under one mutex)
// derives from boost::container::pmr::memory_resource, not from std's. This adapter forwards to
// it, so each allocate and deallocate adds one virtual call to what the other resources pay:
// the adapter's do_allocate / do_deallocate (the std::pmr one), then Boost's (out of line, in
// libboost_container).
class BoostPoolResource final : public std::pmr::memory_resource {
  void* do_allocate(size_t bytes, size_t alignment) override {
    return pool_.allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    pool_.deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  boost::container::pmr::synchronized_pool_resource pool_;
};

std::pmr::memory_resource* SyncPool() { return &syncpool::PoolResource::Default(); }
std::pmr::memory_resource* NewDelete() { return std::pmr::new_delete_resource(); }
std::pmr::memory_resource* Mimalloc() { return syncpool::MimallocResource::Get(); }
// The shared resources below are created on first use and never destroyed, so no thread of a
// benchmark can outlive them.
std::pmr::memory_resource* SynchronizedPool() {
  static auto* const resource = new std::pmr::synchronized_pool_resource();
  return resource;
}
std::pmr::memory_resource* Tbb() {
  static auto* const resource = new TbbResource();
  return resource;
}
std::pmr::memory_resource* BoostPool() {
  static auto* const resource = new BoostPoolResource();
  return resource;
}

// An allocator policy: `Make()` returns the allocator of chars the containers are built with
// (rebound for everything else), or nullopt when it is not available, and then `Unavailable()`
// says why; `kSyncpoolStats` says whether it allocates from PoolResource::Default(). A policy
// may also have `Reset()`, called before every iteration (the warm-up's too) once the previous
// one destroyed what it built, and `Release()`, called after the timed loop.
struct StdPolicy {
  using CharAlloc = std::allocator<char>;
  static constexpr bool kSyncpoolStats = false;
  static std::optional<CharAlloc> Make() { return CharAlloc(); }
  static std::string Unavailable() { return {}; }
};

struct PoolAllocatorPolicy {
  using CharAlloc = syncpool::PoolAllocator<char>;
  static constexpr bool kSyncpoolStats = true;
  static std::optional<CharAlloc> Make() { return CharAlloc(&syncpool::PoolResource::Default()); }
  static std::string Unavailable() { return {}; }
};

template <std::pmr::memory_resource* (*kResource)(), bool kStats = false>
struct PmrPolicy {
  using CharAlloc = std::pmr::polymorphic_allocator<char>;
  static constexpr bool kSyncpoolStats = kStats;
  static std::optional<CharAlloc> Make() {
    std::pmr::memory_resource* mr = kResource();
    if (mr == nullptr) return std::nullopt;
    return CharAlloc(mr);
  }
  // Only MimallocResource::Get() can be missing.
  static std::string Unavailable() { return "libmimalloc.so.2 not loaded"; }
};

// Request-scoped memory: a std::pmr::monotonic_buffer_resource per thread over
// PoolResource::Default(), emptied (release()) before every iteration, so that its chunks go
// back to the pool and the next iteration's come from the caches (docs/guide.md). Nothing is
// freed one by one: deallocations are no-ops. Registered for BM_Request only (a tree or map of
// a million entries is not request-scoped work).
struct MonotonicPolicy {
  using CharAlloc = std::pmr::polymorphic_allocator<char>;
  static constexpr bool kSyncpoolStats = true;
  static std::pmr::monotonic_buffer_resource& Arena() {
    thread_local std::pmr::monotonic_buffer_resource arena(64 * 1024,
                                                           &syncpool::PoolResource::Default());
    return arena;
  }
  static std::optional<CharAlloc> Make() { return CharAlloc(&Arena()); }
  static std::string Unavailable() { return {}; }
  static void Reset() { Arena().release(); }
  static void Release() { Arena().release(); }
};

// A DirectAllocator (bench/direct_allocators.h): a library's functions called from the
// allocator's inline allocate and deallocate, or the bump arena.
template <typename Library>
struct DirectPolicy {
  using CharAlloc = syncpool::bench::DirectAllocator<char, Library>;
  static constexpr bool kSyncpoolStats = false;
  static std::optional<CharAlloc> Make() {
    if (!Library::Available()) return std::nullopt;
    return CharAlloc();
  }
  static std::string Unavailable() { return Library::Error(); }
  static void Reset() {
    if constexpr (requires { Library::Reset(); }) Library::Reset();
  }
  static void Release() {
    if constexpr (requires { Library::Release(); }) Library::Release();
  }
};

// The library of bump_percpu (see the top of the file).
struct BumpThroughCache {
  static bool Available() { return true; }
  static std::string Error() { return {}; }
  static void* Allocate(size_t bytes, size_t alignment) {
    syncpool::PoolAllocator<char> cache(&syncpool::PoolResource::Default());
    char* const block = cache.allocate(bytes);
    cache.deallocate(block, bytes);
    return syncpool::bench::Bump::Allocate(bytes, alignment);
  }
  static void Deallocate(void* /*p*/, size_t /*bytes*/, size_t /*alignment*/) {}
  static void Reset() { syncpool::bench::Bump::Reset(); }
  static void Release() { syncpool::bench::Bump::Release(); }
};

// -----------------------------------------------------------------------------
// The benchmarks
// -----------------------------------------------------------------------------

// What PoolResource::Default()'s caches did during the timed loop, in the run's label (counters
// would have to exist for every allocator: the CSV reporter refuses runs whose counters
// differ). Only thread 0 reads the stats: at its first timed iteration (after the start
// barrier, so no thread's warm-up is counted) and after the loop (after the stop barrier).
class SyncpoolCounters {
 public:
  SyncpoolCounters(const benchmark::State& state, bool enabled)
      : enabled_(enabled && state.thread_index() == 0) {}

  // Called at the top of every timed iteration; reads the stats at the first.
  void StartOnce() {
    if (enabled_ && !started_) {
      started_ = true;
      before_ = syncpool::PoolResource::Default().GetStats();
    }
  }

  void Report(benchmark::State& state) const {
    if (!started_) return;
    const syncpool::Stats after = syncpool::PoolResource::Default().GetStats();
    const double iterations = static_cast<double>(state.iterations()) * state.threads();
    const auto delta = [](uint64_t a, uint64_t b) { return static_cast<double>(a - b); };
    const double hits = delta(after.hits, before_.hits);
    const double misses = delta(after.misses, before_.misses);
    char label[200];
    std::snprintf(label, sizeof(label),
                  "hit=%.2f%% per iteration: misses=%.4g grows=%.4g spills=%.4g "
                  "shared_moves=%.4g",
                  hits + misses > 0 ? 100 * hits / (hits + misses) : 0.0, misses / iterations,
                  delta(after.grows, before_.grows) / iterations,
                  delta(after.spills, before_.spills) / iterations,
                  delta(after.shared_moves, before_.shared_moves) / iterations);
    state.SetLabel(label);
  }

 private:
  const bool enabled_;
  bool started_ = false;
  syncpool::Stats before_;
};

// Runs one workload over Policy's allocator: `make(alloc)` builds the work, a callable that
// does one iteration and returns how many items it handled; it runs once to warm the caches
// up, then once per iteration, syncpool's counters around the loop. Skips the benchmark when
// the allocator is not available.
template <typename Policy, typename Make>
void RunWorkload(benchmark::State& state, Make make) {
  using CharAlloc = typename Policy::CharAlloc;
  const std::optional<CharAlloc> alloc = Policy::Make();
  if (!alloc.has_value()) {
    const std::string error = "allocator not available: " + Policy::Unavailable();
    state.SkipWithError(error.c_str());
    return;
  }
  const auto reset = [] {
    if constexpr (requires { Policy::Reset(); }) Policy::Reset();
  };
  auto work = make(*alloc);
  reset();
  const size_t items = work();  // Warm-up.
  SyncpoolCounters counters(state, Policy::kSyncpoolStats);
  for (auto _ : state) {
    counters.StartOnce();
    reset();
    benchmark::DoNotOptimize(work());
    benchmark::ClobberMemory();
  }
  counters.Report(state);
  if constexpr (requires { Policy::Release(); }) Policy::Release();
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(items));
}

template <typename Policy>
void Tree(benchmark::State& state, size_t nodes) {
  using CharAlloc = typename Policy::CharAlloc;
  RunWorkload<Policy>(state, [nodes](const CharAlloc& alloc) {
    return [alloc, nodes] {
      const Document<CharAlloc> document(alloc, nodes);
      benchmark::DoNotOptimize(document.root());
      return nodes;
    };
  });
}

template <typename Policy>
void Map(benchmark::State& state, size_t entries) {
  using CharAlloc = typename Policy::CharAlloc;
  RunWorkload<Policy>(state, [entries](const CharAlloc& alloc) {
    return [table = Table<CharAlloc>(alloc, entries)]() mutable { return table.Run(); };
  });
}

template <typename Policy>
void Request(benchmark::State& state, size_t max_kib) {
  using CharAlloc = typename Policy::CharAlloc;
  RunWorkload<Policy>(state, [max_kib](const CharAlloc& alloc) {
    return [burster = RequestBurster<CharAlloc>(alloc, max_kib * 1024)]() mutable {
      return burster.Run();
    };
  });
}

struct NamedAllocator {
  const char* name;
  void (*tree)(benchmark::State&, size_t);
  void (*request)(benchmark::State&, size_t);
  void (*map)(benchmark::State&, size_t);
};

template <typename Policy>
constexpr NamedAllocator Named(const char* name) {
  return {name, &Tree<Policy>, &Request<Policy>, &Map<Policy>};
}

// An allocator for BM_Request alone (tree and map null).
template <typename Policy>
constexpr NamedAllocator RequestOnly(const char* name) {
  return {name, nullptr, &Request<Policy>, nullptr};
}

namespace direct = syncpool::bench;

constexpr NamedAllocator kAllocators[] = {
    Named<StdPolicy>("std"),
    Named<PoolAllocatorPolicy>("syncpool_allocator"),
    Named<PmrPolicy<&SyncPool, /*kStats=*/true>>("syncpool"),
    RequestOnly<MonotonicPolicy>("monotonic_syncpool"),
    Named<PmrPolicy<&NewDelete>>("new_delete"),
    Named<PmrPolicy<&Mimalloc>>("mimalloc"),
    Named<PmrPolicy<&SynchronizedPool>>("synchronized_pool"),
    Named<PmrPolicy<&Tbb>>("tbb"),
    Named<PmrPolicy<&BoostPool>>("boost_pool"),
    Named<DirectPolicy<direct::Mimalloc>>("mimalloc_allocator"),
    Named<DirectPolicy<direct::Tcmalloc>>("tcmalloc_allocator"),
    Named<DirectPolicy<direct::Jemalloc>>("jemalloc_allocator"),
    Named<DirectPolicy<direct::Bump>>("bump"),
    Named<DirectPolicy<BumpThroughCache>>("bump_percpu"),
};

constexpr size_t kTreeNodes[] = {100, 1000, 10000, 100000, 1000000};
constexpr size_t kRequestMaxKib[] = {4, 64};
constexpr size_t kMapEntries[] = {1000, 100000, 1000000};

void RegisterWorkloads() {
  for (const NamedAllocator& allocator : kAllocators) {
    if (allocator.tree == nullptr) continue;
    for (size_t nodes : kTreeNodes) {
      const std::string name =
          std::string("BM_Tree/") + allocator.name + "/" + std::to_string(nodes);
      syncpool::bench::SetThreads(
          benchmark::RegisterBenchmark(name.c_str(), allocator.tree, nodes), /*thread_safe=*/true);
    }
  }
  for (const NamedAllocator& allocator : kAllocators) {
    for (size_t max_kib : kRequestMaxKib) {
      const std::string name =
          std::string("BM_Request/") + allocator.name + "/" + std::to_string(max_kib);
      syncpool::bench::SetThreads(
          benchmark::RegisterBenchmark(name.c_str(), allocator.request, max_kib),
          /*thread_safe=*/true);
    }
  }
  for (const NamedAllocator& allocator : kAllocators) {
    if (allocator.map == nullptr) continue;
    for (size_t entries : kMapEntries) {
      const std::string name =
          std::string("BM_Map/") + allocator.name + "/" + std::to_string(entries);
      syncpool::bench::SetThreads(
          benchmark::RegisterBenchmark(name.c_str(), allocator.map, entries),
          /*thread_safe=*/true);
    }
  }
}

// -----------------------------------------------------------------------------
// What the workloads allocate
// -----------------------------------------------------------------------------

// Counts what goes through it, for the context lines; single-threaded.
class CountingResource final : public std::pmr::memory_resource {
 public:
  size_t allocations() const { return allocations_; }
  size_t bytes() const { return bytes_; }
  size_t peak_bytes() const { return peak_bytes_; }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    ++allocations_;
    bytes_ += bytes;
    live_bytes_ += bytes;
    peak_bytes_ = std::max(peak_bytes_, live_bytes_);
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    live_bytes_ -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  size_t allocations_ = 0;
  size_t bytes_ = 0;
  size_t live_bytes_ = 0;
  size_t peak_bytes_ = 0;
};

std::string Describe(const CountingResource& counts) {
  char text[160];
  std::snprintf(text, sizeof(text), "%zu allocations, %.1f KiB (at most %.1f KiB live)",
                counts.allocations(), static_cast<double>(counts.bytes()) / 1024,
                static_cast<double>(counts.peak_bytes()) / 1024);
  return text;
}

void AddWorkloadContext() {
  using CharAlloc = std::pmr::polymorphic_allocator<char>;
  for (size_t nodes : kTreeNodes) {
    CountingResource counts;
    { const Document<CharAlloc> document(CharAlloc(&counts), nodes); }
    benchmark::AddCustomContext("BM_Tree/" + std::to_string(nodes),
                                "per tree: " + Describe(counts));
  }
  for (size_t max_kib : kRequestMaxKib) {
    CountingResource counts;
    RequestBurster<CharAlloc> burster(CharAlloc(&counts), max_kib * 1024);
    const size_t requests = burster.Run();
    benchmark::AddCustomContext(
        "BM_Request/" + std::to_string(max_kib),
        "per iteration: " + std::to_string(requests) + " requests, " + Describe(counts));
  }
  for (size_t entries : kMapEntries) {
    CountingResource counts;
    Table<CharAlloc>(CharAlloc(&counts), entries).Run();
    benchmark::AddCustomContext("BM_Map/" + std::to_string(entries),
                                "per map: " + Describe(counts));
  }
  benchmark::AddCustomContext("direct_allocators", syncpool::bench::DirectAllocatorsContext());
  benchmark::AddCustomContext("malloc", syncpool::bench::MallocOwner());
}

}  // namespace

int main(int argc, char** argv) {
  // First: it may run the program again (jemalloc's static TLS, bench/direct_allocators.h).
  syncpool::bench::LoadDirectAllocators(argv);
  if (!syncpool::bench::ParseThreadCounts("workload_bench", argc, argv)) return 2;
  bool context = true;
  {
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--workload_context=0" || arg == "--workload_context=1") {
        context = arg.back() == '1';
      } else if (arg.starts_with("--workload_context")) {
        std::fprintf(stderr, "workload_bench: --workload_context takes 0 or 1, not \"%s\"\n", argv[i]);
        return 2;
      } else {
        argv[kept++] = argv[i];
      }
    }
    argc = kept;
  }
  RegisterWorkloads();
  syncpool::bench::AddBuildContext();
  if (context) AddWorkloadContext();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) std::fprintf(stderr, "peak_rss_kib=%ld\n", usage.ru_maxrss);
  return 0;
}
