// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// CPU identity, the rseq area the restartable sequences use, and the fake-CPU seam for tests.

// The one translation unit that writes g_rseq_area_offset (see cpu.h).
#define SYNCPOOL_RSEQ_AREA_OFFSET_WRITABLE 1

#include <dlfcn.h>
#include <sched.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "src/cpu.h"
#include "src/fake_cpu.h"

#if SYNCPOOL_HAVE_GLIBC_RSEQ && __has_include(<sys/rseq.h>)
// Only to check the ABI constants of cpu.h against glibc's (2.35 and later), where it has them.
#include <sys/rseq.h>
static_assert(offsetof(struct rseq, cpu_id) == syncpool::internal::kRseqCpuIdOffset);
static_assert(offsetof(struct rseq, rseq_cs) == syncpool::internal::kRseqCsOffset);
static_assert(RSEQ_SIG == SYNCPOOL_RSEQ_SIG);
#endif

namespace syncpool {
namespace internal {
namespace {

int ComputeNumCpus() {
  const long configured = sysconf(_SC_NPROCESSORS_CONF);
  return configured > 0 ? static_cast<int>(configured) : 1;
}

thread_local int tls_fake_cpu = -1;

#if SYNCPOOL_HAVE_GLIBC_RSEQ
// glibc's description of the rseq area it manages: `__rseq_offset` and `__rseq_size`, defined
// by the dynamic loader from glibc 2.35 on (version GLIBC_2.35). This is the only place in
// syncpool that names them, and it does not link them: it looks them up when the process
// starts, so that one build loads on glibc 2.34 too, where they are absent and the lookup
// gives a null address. A link-time reference, even a weak one, would not do: wherever the
// object it is linked into needs anything else from the dynamic loader (libsyncpool.so does:
// __tls_get_addr, for libstdc++'s thread-locals behind std::call_once), the linker versions it
// GLIBC_2.35, and the loader of glibc 2.34 refuses to load an object that needs that version.
// (tests/dynamic_symbols_test.sh checks libsyncpool.so for that.) A fully static executable has
// no dynamic loader to ask: it runs without glibc's area, in the per-thread mode.
template <typename T>
const T* GlibcRseqSymbol(const char* name) {
  return static_cast<const T*>(dlvsym(RTLD_DEFAULT, name, "GLIBC_2.35"));
}
#endif

// Serializes the updates of g_fake_cpu_users and g_rseq_cpu_limit, so that the limit always
// matches both (a ScopedFakeCpu ending on one thread while another begins).
std::mutex& LimitMutex() {
  static std::mutex* const mu = new std::mutex;
  return *mu;
}
bool g_rseq_cpus_allowed = false;  // Guarded by LimitMutex().

// REQUIRES: LimitMutex() held.
void UpdateRseqCpuLimit() {
  const bool open = g_rseq_cpus_allowed && g_fake_cpu_users.load(std::memory_order_relaxed) == 0;
  g_rseq_cpu_limit.store(open ? static_cast<uint32_t>(NumCpus()) : 0, std::memory_order_relaxed);
}

}  // namespace

std::atomic<int> g_fake_cpu_users{0};
std::atomic<uint32_t> g_rseq_cpu_limit{0};
std::atomic<bool> g_rseq_registered{false};

#if SYNCPOOL_HAVE_GLIBC_RSEQ
ptrdiff_t g_rseq_area_offset = 0;
ptrdiff_t g_rseq_id_offset = kRseqCpuIdOffset;
namespace {
// Set once by IndexRseqByConcurrencyId(), before any sequence can pass its bound.
std::atomic<bool> g_rseq_by_cid{false};
// Whether g_rseq_area_offset is glibc's area and glibc registered it (InitRseqArea()).
bool g_glibc_area_registered = false;
}  // namespace

// syncpool's own rseq area, for a glibc without one (see g_rseq_area_offset in cpu.h). The
// layout of the kernel's struct rseq, 32-byte aligned as the ABI wants; the kernel never sees
// it. cpu_id is RSEQ_CPU_ID_REGISTRATION_FAILED forever (nothing writes it), so every sequence
// fails its CPU bound (any id at or above g_rseq_cpu_limit) right after it stores its
// descriptor into rseq_cs, the only field anything writes.
// Initial-exec: the module's thread-locals then live in the static TLS block, at an offset from
// the thread pointer fixed when the module is loaded, the same in every thread.
// A hidden symbol, not one of the anonymous namespace: in a shared object, gold (binutils 2.40)
// resolves the initial-exec offset of a local thread-local wrongly when the same object also
// reaches another local one through __tls_get_addr (tls_fake_cpu, without optimization): the
// offset then points at tls_fake_cpu. InitRseqArea() checks the area before it uses it.
struct alignas(32) UnregisteredRseqArea {
  uint32_t cpu_id_start;
  uint32_t cpu_id;
  uint64_t rseq_cs;
  uint32_t flags;
};
static_assert(offsetof(UnregisteredRseqArea, cpu_id) == kRseqCpuIdOffset);
static_assert(offsetof(UnregisteredRseqArea, rseq_cs) == kRseqCsOffset);
inline constexpr uint32_t kUnregisteredCpuId = 0xFFFFFFFEu;  // RSEQ_CPU_ID_REGISTRATION_FAILED
__attribute__((tls_model("initial-exec"), visibility("hidden"))) __thread UnregisteredRseqArea
    tls_unregistered_rseq_area = {0, kUnregisteredCpuId, 0, 0};

ptrdiff_t UnregisteredRseqAreaOffset() {
  return reinterpret_cast<char*>(&tls_unregistered_rseq_area) -
         static_cast<char*>(__builtin_thread_pointer());
}
#endif

void InitRseqArea() {
  // A function-local static: thread-safe, and computed once. The offset is stored before the
  // release store of g_rseq_registered that RealCurrentCpu() reads it after.
  [[maybe_unused]] static const bool done = [] {
#if SYNCPOOL_HAVE_GLIBC_RSEQ
    // glibc's area where glibc has one, registered or not (a null address: none, size 0). Its
    // offset is never 0, where the thread control block is: a 0 counts as no area too.
    const ptrdiff_t* const rseq_offset = GlibcRseqSymbol<ptrdiff_t>("__rseq_offset");
    const unsigned int* const rseq_size = GlibcRseqSymbol<unsigned int>("__rseq_size");
    const ptrdiff_t glibc_offset = rseq_offset != nullptr ? *rseq_offset : 0;
    const unsigned int glibc_size = rseq_size != nullptr ? *rseq_size : 0;
    if (glibc_offset != 0) {
      g_rseq_area_offset = glibc_offset;
      g_rseq_id_offset = glibc_offset + kRseqCpuIdOffset;
      g_glibc_area_registered = glibc_size != 0;
      g_rseq_registered.store(glibc_size != 0, std::memory_order_release);
    } else {
      // The area the offset leads to must be syncpool's own (see above): a wrong offset would
      // let every sequence store over some other thread-local, so that is fatal.
      const ptrdiff_t own = UnregisteredRseqAreaOffset();
      char* const area = static_cast<char*>(__builtin_thread_pointer()) + own;
      if (reinterpret_cast<uintptr_t>(area) % alignof(UnregisteredRseqArea) != 0 ||
          *reinterpret_cast<volatile uint32_t*>(area + kRseqCpuIdOffset) != kUnregisteredCpuId) {
        std::fprintf(stderr,
                     "syncpool: the thread-pointer offset of its rseq area (%td) does not lead "
                     "to it: the object was linked wrongly\n",
                     own);
        std::abort();
      }
      g_rseq_area_offset = own;
      g_rseq_id_offset = own + kRseqCpuIdOffset;
      g_rseq_registered.store(false, std::memory_order_release);
    }
#endif
    return true;
  }();
}

#if SYNCPOOL_HAVE_GLIBC_RSEQ
bool KernelPublishesMmCid() {
  InitRseqArea();
  // AT_RSEQ_FEATURE_SIZE (27; Linux 6.3): the size of the part of struct rseq the kernel
  // writes. glibc's area has room for mm_cid from 2.35 on (it registers 32 bytes), whatever
  // its __rseq_size says (2.35 to 2.39 publish 20).
  constexpr unsigned long kAtRseqFeatureSize = 27;
  return g_glibc_area_registered &&
         getauxval(kAtRseqFeatureSize) >= static_cast<unsigned long>(kRseqMmCidOffset) + 4;
}

void IndexRseqByConcurrencyId() {
  g_rseq_id_offset = g_rseq_area_offset + kRseqMmCidOffset;
  g_rseq_by_cid.store(true, std::memory_order_release);
}

bool RseqIndexedByConcurrencyId() { return g_rseq_by_cid.load(std::memory_order_acquire); }
#else
bool KernelPublishesMmCid() { return false; }
void IndexRseqByConcurrencyId() {}
bool RseqIndexedByConcurrencyId() { return false; }
#endif

bool RseqAvailable() {
  InitRseqArea();
  return RseqRegistered();
}

void AllowRseqCpus() {
  std::lock_guard<std::mutex> l(LimitMutex());
  g_rseq_cpus_allowed = true;
  UpdateRseqCpuLimit();
}

int NumCpus() {
  static const int num_cpus = ComputeNumCpus();
  return num_cpus;
}

int FakeCpuOfThisThread() { return tls_fake_cpu; }

int SchedCurrentCpu() {
  const int cpu = sched_getcpu();
  // sched_getcpu() can fail (ENOSYS on exotic kernels): every thread then shares cache 0.
  if (cpu < 0) return 0;
  return cpu < NumCpus() ? cpu : cpu % NumCpus();
}

// Before main(), and before the constructors of everything that links syncpool (they run after
// those of the objects they depend on; within one object, priority 101 comes before C++'s
// static initializers), so that the offset is set before any thread can run a sequence.
__attribute__((constructor(101))) static void InitRseqAreaAtLoad() { InitRseqArea(); }

}  // namespace internal

namespace testing {

ScopedFakeCpu::ScopedFakeCpu(int cpu) {
  if (cpu < 0 || cpu >= internal::NumCpus()) {
    throw std::out_of_range("syncpool::testing::ScopedFakeCpu: cpu " + std::to_string(cpu) +
                            " is outside [0, " + std::to_string(internal::NumCpus()) + ")");
  }
  previous_ = internal::tls_fake_cpu;
  internal::tls_fake_cpu = cpu;
  std::lock_guard<std::mutex> l(internal::LimitMutex());
  internal::g_fake_cpu_users.fetch_add(1, std::memory_order_relaxed);
  internal::UpdateRseqCpuLimit();
}

ScopedFakeCpu::~ScopedFakeCpu() {
  internal::tls_fake_cpu = previous_;
  std::lock_guard<std::mutex> l(internal::LimitMutex());
  internal::g_fake_cpu_users.fetch_sub(1, std::memory_order_relaxed);
  internal::UpdateRseqCpuLimit();
}

int ScopedFakeCpu::NumCpus() { return internal::NumCpus(); }

}  // namespace testing
}  // namespace syncpool
