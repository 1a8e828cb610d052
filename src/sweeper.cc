// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The sweeper driver: a registry of caches, the background thread and SweepNow().
//
// Protocol:
//   - `mu` guards the registry, the thread's state and `visiting`.
//   - `sweep_mu` serializes whole sweeps (the thread's and SweepNow()'s). It is held while
//     caches run SweepEpoch() but `mu` is not, so a cache may be registered or unregistered from
//     inside a sweep (for example by the destructor of a pooled object).
//   - Before a cache is visited, the sweep checks under `mu` that it is still registered and
//     records it in `visiting`; Unregister() removes the cache and then waits under `mu` until
//     `visiting` is no longer that cache. So once Unregister() returns, no sweep touches it.
//   - `last_epoch` (the clock's reading when the last epoch began) is written under
//     `sweep_mu` by every epoch and read by Tick() under it too.
//   - Parking (ParkIfIdle(), under `sweep_mu`, visiting caches as a sweep does): `parked_` is
//     set first, then every cache parks (closes its columns under their locks, fenced, and
//     checks that they hold nothing), then `parked_` is read again. A cache operation that
//     began before a column was closed left its block there, and the park sees it and fails;
//     one that begins after finds the column closed, takes the slow path, reopens the column
//     under the same lock and so reads `parked_` set, and wakes the sweeper (Wake(): clears
//     `parked_` under `mu` and notifies). The thread waits under `mu` for `parked_` to clear
//     (or `stopped`), so no wake-up is lost.
//
// fork(): the sweepers are two layers of the fork registry (fork.h has the protocol):
// kSweeps takes the list of sweepers' mutex and every `sweep_mu`, kSweepers every `mu` and the
// locks of each registered cache. In the child the background thread does not exist: its
// std::thread is moved to storage that is never destroyed (neither joined nor detached: there
// is nothing to join), the condition variable it may have been waiting on is made anew, and
// the thread is started again by RestartAfterFork().

#include "syncpool/sweeper.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "src/fork.h"
#include "src/mutex.h"
#include "src/sweeper_access.h"
#include "src/option_table.h"

namespace syncpool {
namespace internal {

// The sweeper's state, and the registry its caches join (SweepRegistry, sweepable.h).
struct SweeperState final : public SweepRegistry {
  using Options = Sweeper::Options;

  SweeperState(Options o, Sweeper* sweeper)
      : owner(sweeper),
        options(std::move(o)),
        pressure(options.pressure != nullptr ? options.pressure : &SystemMemoryPressure()),
        last_epoch(Now()) {}

  std::chrono::steady_clock::time_point Now() const {
    return options.clock ? options.clock() : std::chrono::steady_clock::now();
  }

  // SweepRegistry: Register() adds a cache to the epochs and starts the background thread if
  // it is not running (throws std::system_error when the thread cannot be started; the cache
  // stays registered and a later Register() tries again). Unregister() removes a cache, waiting
  // while a sweep visits it on another thread; after it returns no sweep touches `cache`.
  // RestartAfterFork(): in a child, starts the thread again if the sweeper had one (and some
  // cache is registered); at any other time, or a second time, it does nothing. Wake() clears
  // parked_ (set by ParkIfIdle() before it parks the caches, so that a park never misses the
  // use that ends it) and wakes the thread.
  void Register(Sweepable* cache) override;
  void Unregister(Sweepable* cache) override;
  void RestartAfterFork() override;
  void Wake() override;

  // The background thread's step after an epoch (tests call it through SweeperAccess): when
  // no registered cache holds anything, parks them all (Sweepable::Park()), marks the sweeper
  // parked and returns true; the thread then waits, without a timeout, until a cache's slow
  // path calls WakeIfParked() (or a cache registers, or Stop()). Returns false, and leaves the
  // sweeper unparked, when some cache holds something.
  bool ParkIfIdle();

  // Whether the sweeper is parked now (ParkIfIdle() returned true and nothing woke it since;
  // not while a ParkIfIdle() is still looking at the caches). parked_ is read first:
  // ParkIfIdle() clears `settled` before it sets parked_, so a parked_ read true from a park
  // still looking is followed by a `settled` read false (read the other way round, a `settled`
  // left true by an earlier park, a wake since, and a new park's parked_ read true would make a
  // park still looking read as parked).
  bool parked() const {
    return parked_.load(std::memory_order_seq_cst) && settled.load(std::memory_order_seq_cst);
  }

  Sweeper* const owner;
  const Options options;
  PressureSource* const pressure;
  // Set when a ParkIfIdle() succeeded (for parked(): parked_ is set while it still looks).
  std::atomic<bool> settled{false};

  internal::Mutex sweep_mu;  // Held for a whole sweep; see the protocol above.
  std::chrono::steady_clock::time_point last_epoch ABSL_GUARDED_BY(sweep_mu);

  internal::Mutex mu;
  std::condition_variable changed;  // Signalled when `stopped` or `visiting` changes.
  // A node-based set: a single insertion that throws (std::bad_alloc) leaves it unchanged.
  // Abseil's flat sets of the packaged version do not give that guarantee (a failed growth
  // leaves the table inconsistent), and these sets grow on paths that must survive it.
  std::unordered_set<internal::Sweepable*> caches ABSL_GUARDED_BY(mu);
  internal::Sweepable* visiting ABSL_GUARDED_BY(mu) = nullptr;
  bool thread_running ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;  // Stop() was called: never start the thread again.
  std::thread thread ABSL_GUARDED_BY(mu);

  std::atomic<uint64_t> epochs{0};
  std::atomic<uint64_t> pauses{0};

  // Set in a fork child whose parent ran the thread: RestartAfterFork() starts it again.
  bool restart_after_fork ABSL_GUARDED_BY(mu) = false;
  // Where a fork child puts the thread object of a thread it does not have.
  alignas(std::thread) unsigned char orphan[sizeof(std::thread)];

  // Starts the background thread unless it runs, is not wanted, or Stop() was called.
  // REQUIRES: `mu` held. Throws std::system_error when the thread cannot be created.
  void StartThreadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

}  // namespace internal

namespace {

// Every live sweeper, for the fork layers.
struct SweeperList {
  internal::Mutex mu;
  std::vector<internal::SweeperState*> sweepers ABSL_GUARDED_BY(mu);
};

SweeperList& GetSweeperList() {
  static SweeperList* const list = new SweeperList();  // Never destroyed.
  return *list;
}

// The two fork layers (fork.h): the locks are taken in one function and released in another,
// beyond what the analysis follows. The list's mutex is held from the first to the last.
void LockSweeps() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  SweeperList& list = GetSweeperList();
  list.mu.Lock();
  for (internal::SweeperState* st : list.sweepers) st->sweep_mu.Lock();
}

void UnlockSweeps(bool /*child*/) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  SweeperList& list = GetSweeperList();
  for (auto it = list.sweepers.rbegin(); it != list.sweepers.rend(); ++it) (*it)->sweep_mu.Unlock();
  list.mu.Unlock();
}

void LockSweepers() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (internal::SweeperState* st : GetSweeperList().sweepers) {
    st->mu.Lock();
    for (internal::Sweepable* cache : st->caches) cache->LockForFork();
  }
}

void UnlockSweepers(bool child) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  SweeperList& list = GetSweeperList();
  for (auto it = list.sweepers.rbegin(); it != list.sweepers.rend(); ++it) {
    internal::SweeperState* st = *it;
    for (internal::Sweepable* cache : st->caches) cache->UnlockAfterFork();
    if (child) {
      // The parent's thread may have been waiting on `changed`: in the child the condition
      // variable would wait for that waiter forever. Make it anew (the old one is not
      // destroyed: destroying one with waiters is not allowed, and it owns no resources).
      new (&st->changed) std::condition_variable();
      if (st->thread_running) {
        new (st->orphan) std::thread(std::move(st->thread));  // Never destroyed (see above).
        st->thread_running = false;
        st->restart_after_fork = true;
      }
    }
    st->mu.Unlock();
  }
}

internal::ForkLayer sweeps_fork(internal::ForkRank::kSweeps, &LockSweeps, &UnlockSweeps);
internal::ForkLayer sweepers_fork(internal::ForkRank::kSweepers, &LockSweepers, &UnlockSweepers);

}  // namespace

namespace {

// The accepted values are those of SYNCPOOL_SWEEP_INTERVAL_MS (internal/option_table.h).
Sweeper::Options Validated(Sweeper::Options options) {
  const internal::OptionSpec& spec = internal::kOptionTable[internal::kOptSweepIntervalMs];
  auto fail = [](const char* field, long long value, const char* unit, const std::string& expected) {
    throw std::invalid_argument("syncpool::Sweeper: Sweeper::Options::" + std::string(field) +
                                " is " + std::to_string(value) + unit + "; expected " + expected);
  };
  const long long interval = options.interval.count();
  if (interval < static_cast<long long>(spec.min) || interval > static_cast<long long>(spec.max)) {
    fail("interval", interval, " ms", internal::OptionRangeText(spec));
  }
  if (options.slice.count() < 0) fail("slice", options.slice.count(), " us", "0 (no slices) or more");
  if (options.pause.count() < 0) fail("pause", options.pause.count(), " us", "0 (a yield) or more");
  return options;
}

}  // namespace

Sweeper::Sweeper(Options options)
    : state_(std::make_unique<internal::SweeperState>(Validated(std::move(options)), this)) {
  internal::InstallForkHandlers();
  SweeperList& list = GetSweeperList();
  internal::MutexLock l(&list.mu);
  list.sweepers.push_back(state_.get());
}

Sweeper::~Sweeper() {
  Stop();
  SweeperList& list = GetSweeperList();
  internal::MutexLock l(&list.mu);
  list.sweepers.erase(std::find(list.sweepers.begin(), list.sweepers.end(), state_.get()));
}

namespace {

Sweeper::Options DefaultSweeperOptions() {
  Sweeper::Options options;
  options.interval =
      std::chrono::milliseconds(internal::ProcessOption(internal::kOptSweepIntervalMs));
  return options;
}

}  // namespace

Sweeper& Sweeper::Default() {
  // Never destroyed, so that caches destroyed during static destruction can still unregister.
  // Its thread is stopped at exit, before static objects that might still be swept go away.
  static Sweeper* const instance = [] {
    auto* s = new Sweeper(DefaultSweeperOptions());
    std::atexit([] { Sweeper::Default().Stop(); });
    return s;
  }();
  return *instance;
}

namespace {

// `visit(cache)` for every registered cache, marked `visiting` meanwhile (see the protocol);
// between two visits, with only `sweep_mu` held, `pacer` may let the CPU go.
// REQUIRES: `s.sweep_mu` held.
template <typename Visit>
void VisitCaches(internal::SweeperState& s, Visit visit, internal::SweepPacer* pacer = nullptr) {
  std::vector<internal::Sweepable*> snapshot;
  try {
    internal::MutexLock l(&s.mu);
    snapshot.assign(s.caches.begin(), s.caches.end());
  } catch (const std::bad_alloc&) {
    // No memory for the list (the process is at its limit): no cache is visited this time;
    // what they cache stays until an epoch finds the memory.
    return;
  }
  for (internal::Sweepable* cache : snapshot) {
    {
      internal::MutexLock l(&s.mu);
      if (!s.caches.contains(cache)) continue;  // Unregistered since the snapshot.
      s.visiting = cache;
    }
    visit(cache);
    {
      internal::MutexLock l(&s.mu);
      s.visiting = nullptr;
      s.changed.notify_all();
    }
    if (pacer != nullptr) pacer->Pause();
  }
}

}  // namespace

void Sweeper::SweepNow(bool pressure) {
  internal::MutexLock serial(&state_->sweep_mu);
  state_->last_epoch = state_->Now();
  // The epoch in slices (SweepPacer): the caches pause between pieces of their work, this
  // loop between caches. Pausing holds `sweep_mu` (the next sweep waits, as it would for an
  // unsliced one) and marks the cache `visiting` (an Unregister() of it waits too), and
  // nothing else: no cache lock, no cache closed.
  internal::SweepPacer pacer(state_->options.slice, state_->options.pause, state_->options.clock);
  const internal::Epoch paced{.pressure = pressure, .pacer = &pacer};
  VisitCaches(
      *state_, [&paced](internal::Sweepable* cache) { cache->SweepEpoch(paced); }, paced.pacer);
  state_->pauses.fetch_add(pacer.pauses(), std::memory_order_relaxed);
  state_->epochs.fetch_add(1, std::memory_order_relaxed);
  // An epoch's remote operations reopen the columns a park closed: a parked thread must then
  // wake, or a Put into a reopened column would go unseen (it parks again after its next epoch
  // if nothing is cached).
  state_->WakeIfParked();
}

bool internal::SweeperState::ParkIfIdle() {
  internal::MutexLock serial(&sweep_mu);
  settled.store(false, std::memory_order_seq_cst);
  parked_.store(true, std::memory_order_seq_cst);
  bool idle = true;
  VisitCaches(*this, [&idle](internal::Sweepable* cache) {
    if (idle && !cache->Park()) idle = false;
  });
  if (!idle) {
    // Caches parked before the one that held something stay closed until their next
    // operation, whose slow path reopens them (and finds the sweeper not parked).
    parked_.store(false, std::memory_order_seq_cst);
    return false;
  }
  settled.store(true, std::memory_order_seq_cst);
  return parked_.load(std::memory_order_seq_cst);  // False if a slow path woke it already.
}

void internal::SweeperState::Wake() {
  internal::MutexLock l(&mu);
  parked_.store(false, std::memory_order_seq_cst);
  changed.notify_all();
}

bool Sweeper::Tick() {
  internal::SweeperState& s = *state_;
  const std::chrono::steady_clock::time_point now = s.Now();
  std::chrono::steady_clock::duration since_last;
  {
    internal::MutexLock serial(&s.sweep_mu);
    since_last = now - s.last_epoch;
  }
  // Pressure is only asked once a pressure epoch could run: reading it costs a file read.
  if (since_last < s.options.interval / 4) return false;
  if (s.pressure->UnderPressure()) {
    SweepNow(/*pressure=*/true);
    return true;
  }
  if (since_last < s.options.interval) return false;
  SweepNow();
  return true;
}

void internal::SweeperState::Register(internal::Sweepable* cache) {
  internal::MutexLock l(&mu);
  caches.insert(cache);
  // A new cache ends a park (it is about to cache something).
  parked_.store(false, std::memory_order_seq_cst);
  changed.notify_all();
  StartThreadLocked();
}

void internal::SweeperState::RestartAfterFork() {
  internal::MutexLock l(&mu);
  if (!restart_after_fork) return;
  restart_after_fork = false;
  if (!caches.empty()) StartThreadLocked();
}

void internal::SweeperState::StartThreadLocked() {
  if (!options.background || thread_running || stopped) return;
  // If the thread cannot be created, std::thread throws and a later Register() tries again.
  // The schedule (sweeper.h): while anything is cached the thread wakes four times per
  // interval and Tick() decides whether an epoch is due (one per interval, or one per wake-up
  // while the system is short of memory); after an epoch that left nothing cached it parks and
  // waits without a timeout until a cache's slow path (or a new cache, or Stop()) wakes it.
  parked_.store(false, std::memory_order_seq_cst);
  thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "syncpool-sweep");  // For ps, top and tests.
    const auto wake =
        std::max<std::chrono::milliseconds>(options.interval / 4, std::chrono::milliseconds(1));
    mu.Lock();
    while (!stopped) {
      if (mu.AwaitWithTimeout(changed, wake, [this] {
            mu.AssertHeld();  // Await() runs it under `mu`.
            return stopped;
          })) {
        break;
      }
      mu.Unlock();
      bool parked = false;
      try {
        parked = owner->Tick() && ParkIfIdle();
      } catch (const std::bad_alloc&) {
        // Out of memory in this wake-up (every lock it took is released by now): try again at
        // the next one, rather than end the process from a thread the user never made.
      }
      mu.Lock();
      if (parked) {
        mu.Await(changed, [this] {
          mu.AssertHeld();  // Await() runs it under `mu`.
          return stopped || !parked_.load(std::memory_order_seq_cst);
        });
      }
    }
    mu.Unlock();
  });
  thread_running = true;
}

void internal::SweeperState::Unregister(internal::Sweepable* cache) {
  internal::MutexLock l(&mu);
  caches.erase(cache);
  mu.Await(changed, [this, cache] {
    mu.AssertHeld();  // Await() runs it under `mu`.
    return visiting != cache;
  });
}

void Sweeper::Stop() {
  std::thread thread;
  {
    internal::MutexLock l(&state_->mu);
    state_->stopped = true;
    state_->changed.notify_all();
    thread = std::move(state_->thread);
    state_->thread_running = false;
  }
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    thread.detach();  // Stop() from a sweep (exit() in a destructor): cannot join itself.
  } else {
    thread.join();
  }
}

namespace internal {

SweepRegistry* SweeperAccess::Registry(Sweeper& s) { return s.state_.get(); }
bool SweeperAccess::ParkIfIdle(Sweeper& s) { return s.state_->ParkIfIdle(); }
bool SweeperAccess::parked(const Sweeper& s) { return s.state_->parked(); }

}  // namespace internal

std::chrono::milliseconds Sweeper::interval() const { return state_->options.interval; }

uint64_t Sweeper::epochs() const { return state_->epochs.load(std::memory_order_relaxed); }

uint64_t Sweeper::pauses() const { return state_->pauses.load(std::memory_order_relaxed); }

bool Sweeper::thread_running() const {
  internal::MutexLock l(&state_->mu);
  return state_->thread_running;
}

}  // namespace syncpool
