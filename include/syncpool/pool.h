// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// -----------------------------------------------------------------------------
// File: syncpool/pool.h
// -----------------------------------------------------------------------------
//
// This header defines `syncpool::Pool<T>`, Go's `sync.Pool` with C++ ownership: a set of
// temporary objects that may be individually saved and retrieved, so that threads reuse them
// instead of allocating.
//
//   syncpool::Pool<std::string> buffers(
//       [] { return std::make_unique<std::string>(); },   // New
//       [](std::string& s) { s.clear(); });                 // reset on Put
//   {
//     auto buf = buffers.Get();        // a Pool<std::string>::Handle
//     buf->append("...");
//   }                                  // goes back to the pool here
//
// Contract (as Go's):
//   - Any object stored in the pool may be destroyed at any sweep without notice: a Pool is a
//     cache of interchangeable objects, not a free list with a fixed population. An object
//     that sits unused survives at least one and at most two sweeper epochs.
//   - A Put happens before the Get that returns the same object, whatever threads make them.
//   - Get() hands out any pooled object, or calls New when none is cached. Callers must not
//     assume any relation between what they Put and what they Get.
//   - Without a New function, Get() returns an empty Handle when nothing is cached.
//
// Pools of buffers: where syncpool::OwnedBytes<T> knows what an object owns (strings, vectors,
// containers with a capacity, your own specialisations: syncpool/owned_bytes.h), budgets and
// Stats count those bytes, and a Put of an object owning more than Options::max_object_bytes
// destroys it instead of caching it. Otherwise every object counts sizeof(T).
//
// Which thread destroys dropped objects: the sweeper's thread (or the thread calling
// Sweeper::SweepNow()) for objects dropped by a sweep; the thread calling Put() when its CPU's
// cache is full, when the object is over max_object_bytes, or when caching it would exceed a
// budget (the object is destroyed at once); the thread calling Clear() or destroying the pool
// for what is cached then. T's destructor must therefore be safe to run on any thread.
//
// Misuse: with debug checks on (Options::debug_checks), a second Put of an object that is
// already in the pool aborts with a message saying so. Using an object after Put is a bug the
// pool cannot see in general.
//
// Out of memory: construction and Get() may throw std::bad_alloc (from New, or from the pool's
// own bookkeeping), leaving the pool usable; Put() never throws: an object it cannot cache is
// destroyed.
//
// Thread safety: all members are thread-safe. The pool must outlive every Handle it returned.

#ifndef SYNCPOOL_POOL_H_
#define SYNCPOOL_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "absl/base/optimization.h"
#include "syncpool/internal/local_cache.h"
#include "syncpool/options.h"
#include "syncpool/owned_bytes.h"
#include "syncpool/stats.h"
#include "syncpool/sweeper.h"

namespace syncpool {
namespace internal {

class DebugRegistry;
class StatsReportEntry;

// The type-independent part of Pool<T>: one class of opaque objects in a BlockCache.
class PoolBase {
 public:
  // `owned_bytes`: what an object owns (OwnedBytes<T>), or nullptr where only sizeof(T) is
  // known.
  PoolBase(size_t object_size, void (*destroy)(void*), uint64_t (*owned_bytes)(const void*),
           const Options& options);
  PoolBase(const PoolBase&) = delete;
  PoolBase& operator=(const PoolBase&) = delete;
  ~PoolBase();

  // PoolBase::GetOr()
  //
  // `on_hit(object)` for an object from the cache's inline path, else `otherwise()`, which
  // must call GetSlow().
  template <typename OnHit, typename Otherwise>
  ABSL_ATTRIBUTE_ALWAYS_INLINE auto GetOr(OnHit on_hit, Otherwise otherwise) {
    return local_.GetOr(0, local_.Row(0), on_hit, otherwise);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Put(void* obj) {
    if (ABSL_PREDICT_TRUE(local_.TryPutAt(0, local_.Row(0), obj))) return;
    PutSlow(obj);
  }
  // PoolBase::PutOwning()
  //
  // Put() of an object that owns `bytes` (a pool with `owned_bytes`): destroyed instead of
  // cached when it owns more than max_object_bytes or would take the pool or the process
  // over its budget; else counted, then cached.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PutOwning(void* obj, uint64_t bytes) {
    if (ABSL_PREDICT_FALSE(bytes > max_object_bytes_) || OverBudget(bytes)) {
      DropOnPut(obj, bytes);
      return;
    }
    local_.AccountOwned(static_cast<int64_t>(bytes));
    Put(obj);
  }
  // PoolBase::Left()
  //
  // An object that owns `bytes` left the cache through a Get (a pool with `owned_bytes`).
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Left(uint64_t bytes) {
    local_.AccountOwned(-static_cast<int64_t>(bytes));
  }
  void Clear();
  Stats GetStats() const;
  bool uses_rseq() const { return local_.uses_rseq(); }
  // The cache's slow path of Get(), with the debug checks (out of line).
  void* GetSlow();

 private:
  // The cache's BlockReleaser (src/pool.cc), which calls the two below.
  class Releaser;
  void Release(void* const* blocks, size_t n);
  uint64_t OwnedBytes(const void* block) const;
  // The cache's slow paths, and the debug checks: with them on, local_ is a copy of the
  // cache's stacks that never open (BlockCache::ClosedLocal()), so that every call comes here
  // and the inline paths test nothing.
  void PutSlow(void* obj);
  // PutOwning() of an object it does not cache: destroys it, counted as oversized or over
  // budget (out of line).
  ABSL_ATTRIBUTE_NOINLINE void DropOnPut(void* obj, uint64_t bytes);
  // Whether caching `bytes` more would take the pool or the process over its budget.
  bool OverBudget(uint64_t bytes) const;

  void (*const destroy_)(void*);
  uint64_t (*const owned_bytes_)(const void*);
  const uint64_t max_object_bytes_;  // No limit: the largest value.
  std::atomic<uint64_t> oversized_objects_{0};
  std::atomic<uint64_t> oversized_bytes_{0};
  const bool debug_;
  std::unique_ptr<DebugRegistry> registry_;  // Objects now in the pool, when debug_.
  const std::unique_ptr<Releaser> releaser_;
  const std::unique_ptr<BlockCache> cache_;  // Drained before the registry goes.
  const LocalCache local_;  // cache_->local(), for the inline paths.
  const std::unique_ptr<StatsReportEntry> report_;  // Last: unregisters first.
};

}  // namespace internal

template <typename T>
class Pool {
 public:
  // Makes a new object when the pool has none; may return nullptr. May throw: the exception
  // propagates out of Get() and the pool is unchanged.
  using NewFunction = std::function<std::unique_ptr<T>()>;
  // Runs on every object given back, on the thread giving it back, before it is cached (like
  // bytes.Buffer.Reset). If it throws, the object is destroyed and the exception propagates
  // out of Put(); it must not throw when a Handle is destroyed.
  using ResetFunction = std::function<void(T&)>;

  // Handle
  //
  // Owns an object from the pool and puts it back when it goes out of scope (or on reset()),
  // unless release() took it. Move-only. An empty Handle owns nothing.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept
        : obj_(std::exchange(other.obj_, nullptr)), pool_(other.pool_) {}
    Handle& operator=(Handle&& other) noexcept {
      if (this != &other) {
        reset();
        pool_ = other.pool_;
        obj_ = std::exchange(other.obj_, nullptr);
      }
      return *this;
    }
    ABSL_ATTRIBUTE_ALWAYS_INLINE ~Handle() { reset(); }

    T* get() const { return obj_; }
    T& operator*() const { return *obj_; }
    T* operator->() const { return obj_; }
    explicit operator bool() const { return obj_ != nullptr; }

    // Handle::release()
    //
    // Gives up ownership: the object will not return to the pool.
    std::unique_ptr<T> release() { return std::unique_ptr<T>(std::exchange(obj_, nullptr)); }

    // Handle::reset()
    //
    // Puts the object back now; the handle becomes empty.
    ABSL_ATTRIBUTE_ALWAYS_INLINE void reset() noexcept {
      if (obj_ != nullptr) pool_->PutOwned(std::exchange(obj_, nullptr));
    }

   private:
    friend class Pool;
    Handle(Pool* pool, T* obj) : obj_(obj) {
      // Where the handle lives in memory, GCC would otherwise merge the two member stores
      // into one 16-byte vector store, and the 8-byte loads of the destructor right after it
      // stall on store forwarding: about a nanosecond, as much as the whole Get. The empty
      // asm keeps the stores apart; it emits nothing.
      asm("" : "+r"(pool_) : : );
      pool_ = pool;
    }

    T* obj_ = nullptr;
    Pool* pool_ = nullptr;
  };

  // Throws std::invalid_argument for invalid options.
  explicit Pool(NewFunction new_fn = nullptr, ResetFunction reset = nullptr,
                const Options& options = {})
      : new_(std::move(new_fn)),
        reset_(std::move(reset)),
        base_(sizeof(T), &Destroy, kOwning ? &BytesOf : nullptr, options) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Pool::~Pool()
  //
  // Destroys every cached object on the calling thread. REQUIRES: no Handle from this pool
  // is alive and no other thread uses the pool.
  ~Pool() = default;

  // Pool::Get()
  //
  // A pooled object, else a new one from New, else (no New, or New returned nullptr) an empty
  // Handle.
  ABSL_ATTRIBUTE_ALWAYS_INLINE Handle Get() {
    // The slow path returns a pointer, not a Handle, so that no Handle is returned through
    // memory: a caller's Handle can live in registers.
    void* obj = base_.GetOr(
        [this](void* o) {
          if constexpr (kOwning) base_.Left(BytesOf(o));
          static_cast<void>(this);
          return o;
        },
        [this] { return GetSlow(); });
    return Handle(this, static_cast<T*>(obj));
  }

  // Pool::Put()
  //
  // Runs the reset hook and caches `obj` (destroying it at once when this CPU's cache is
  // full). Put(nullptr) does nothing.
  void Put(std::unique_ptr<T> obj) {
    if (obj != nullptr) PutOwned(obj.release());
  }

  // Pool::Put(Handle&&)
  //
  // Go's symmetry: `pool.Put(std::move(handle))` caches the handle's object in this pool now
  // (what destroying the handle would do, for a handle of this pool) and leaves it empty.
  void Put(Handle&& handle) { Put(handle.release()); }

  // Pool::Clear()
  //
  // Destroys every cached object now, on the calling thread.
  void Clear() { base_.Clear(); }

  // Pool::GetStats()
  //
  // Bytes are what the objects own where OwnedBytes<T> knows it (syncpool/owned_bytes.h),
  // else sizeof(T) per object.
  Stats GetStats() const { return base_.GetStats(); }

  // Pool::uses_rseq()
  //
  // Whether the per-CPU caches run as restartable sequences (GetStats().mode names the mode).
  bool uses_rseq() const { return base_.uses_rseq(); }

 private:
  // Whether the pool counts what its objects own (decided at compile time: a pool of other
  // types has no code for it).
  static constexpr bool kOwning = kKnowsOwnedBytes<T>;

  static void Destroy(void* obj) { delete static_cast<T*>(obj); }
  static uint64_t BytesOf(const void* obj) {
    if constexpr (kOwning) {
      return OwnedBytes<T>::Of(*static_cast<const T*>(obj));
    } else {
      return sizeof(T);
    }
  }

  // Put() of an object the caller owns (not null).
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PutOwned(T* obj) {
    if (reset_) {
      std::unique_ptr<T> guard(obj);  // Destroys the object if the hook throws.
      reset_(*obj);
      guard.release();
    }
    if constexpr (kOwning) {
      base_.PutOwning(obj, BytesOf(obj));
    } else {
      base_.Put(obj);
    }
  }

  // Get() past the inline path: the cache's slow path, else New, else nullptr.
  ABSL_ATTRIBUTE_NOINLINE void* GetSlow() {
    if (void* obj = base_.GetSlow(); obj != nullptr) {
      if constexpr (kOwning) base_.Left(BytesOf(obj));
      return obj;
    }
    if (!new_) return nullptr;
    return new_().release();
  }

  const NewFunction new_;
  const ResetFunction reset_;
  internal::PoolBase base_;
};

}  // namespace syncpool

#endif  // SYNCPOOL_POOL_H_
