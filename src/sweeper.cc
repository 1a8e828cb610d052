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

#include "syncpool/sweeper.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "syncpool/internal/env.h"
#include "syncpool/internal/mutex.h"

namespace syncpool {

struct Sweeper::State {
  explicit State(Options o)
      : options(std::move(o)),
        pressure(options.pressure != nullptr ? options.pressure : &SystemMemoryPressure()),
        last_epoch(Now()) {}

  std::chrono::steady_clock::time_point Now() const {
    return options.clock ? options.clock() : std::chrono::steady_clock::now();
  }

  const Options options;
  PressureSource* const pressure;

  internal::Mutex sweep_mu;  // Held for a whole sweep; see the protocol above.
  std::chrono::steady_clock::time_point last_epoch ABSL_GUARDED_BY(sweep_mu);

  internal::Mutex mu;
  std::condition_variable changed;  // Signalled when `stopped` or `visiting` changes.
  absl::flat_hash_set<Sweepable*> caches ABSL_GUARDED_BY(mu);
  Sweepable* visiting ABSL_GUARDED_BY(mu) = nullptr;
  bool thread_running ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;  // Stop() was called: never start the thread again.
  std::thread thread ABSL_GUARDED_BY(mu);

  std::atomic<uint64_t> epochs{0};
};

namespace {

// A non-positive interval would make the thread spin: it is raised to 1 ms.
Sweeper::Options Normalized(Sweeper::Options options) {
  if (options.interval.count() <= 0) options.interval = std::chrono::milliseconds(1);
  return options;
}

}  // namespace

Sweeper::Sweeper(Options options)
    : state_(std::make_unique<State>(Normalized(std::move(options)))) {}

Sweeper::~Sweeper() { Stop(); }

namespace {

Sweeper::Options DefaultSweeperOptions() {
  Sweeper::Options options;
  options.interval = std::chrono::milliseconds(internal::EnvInteger(
      "SYNCPOOL_SWEEP_INTERVAL_MS", static_cast<uint64_t>(options.interval.count()), 1,
      uint64_t{24} * 3600 * 1000));
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

void Sweeper::SweepNow(const Epoch& epoch) {
  internal::MutexLock serial(&state_->sweep_mu);
  state_->last_epoch = state_->Now();
  std::vector<Sweepable*> snapshot;
  {
    internal::MutexLock l(&state_->mu);
    snapshot.assign(state_->caches.begin(), state_->caches.end());
  }
  for (Sweepable* cache : snapshot) {
    {
      internal::MutexLock l(&state_->mu);
      if (!state_->caches.contains(cache)) continue;  // Unregistered since the snapshot.
      state_->visiting = cache;
    }
    cache->SweepEpoch(epoch);
    internal::MutexLock l(&state_->mu);
    state_->visiting = nullptr;
    state_->changed.notify_all();
  }
  state_->epochs.fetch_add(1, std::memory_order_relaxed);
}

bool Sweeper::Tick() {
  State& s = *state_;
  const std::chrono::steady_clock::time_point now = s.Now();
  std::chrono::steady_clock::duration since_last;
  {
    internal::MutexLock serial(&s.sweep_mu);
    since_last = now - s.last_epoch;
  }
  // Pressure is only asked once a pressure epoch could run: reading it costs a file read.
  if (since_last < s.options.interval / 4) return false;
  if (s.pressure->UnderPressure()) {
    Epoch epoch;
    epoch.pressure = true;
    SweepNow(epoch);
    return true;
  }
  if (since_last < s.options.interval) return false;
  SweepNow();
  return true;
}

void Sweeper::Register(Sweepable* cache) {
  State& s = *state_;
  internal::MutexLock l(&s.mu);
  s.caches.insert(cache);
  if (!s.options.background || s.thread_running || s.stopped) return;
  // If the thread cannot be created, std::thread throws and a later Register() tries again.
  // The thread wakes four times per interval: Tick() decides whether an epoch is due (one
  // per interval, or one per wake-up while the system is short of memory).
  s.thread = std::thread([this] {
    State& st = *state_;
    const auto wake = std::max<std::chrono::milliseconds>(st.options.interval / 4,
                                                          std::chrono::milliseconds(1));
    st.mu.Lock();
    while (!st.stopped) {
      if (st.mu.AwaitWithTimeout(st.changed, wake,
                                 [&st]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return st.stopped; })) {
        break;
      }
      st.mu.Unlock();
      Tick();
      st.mu.Lock();
    }
    st.mu.Unlock();
  });
  s.thread_running = true;
}

void Sweeper::Unregister(Sweepable* cache) {
  State& s = *state_;
  internal::MutexLock l(&s.mu);
  s.caches.erase(cache);
  // The predicate runs with `mu` held (inside Await), which the analysis cannot see.
  s.mu.Await(s.changed, [&s, cache]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return s.visiting != cache;
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

std::chrono::milliseconds Sweeper::interval() const { return state_->options.interval; }

uint64_t Sweeper::epochs() const { return state_->epochs.load(std::memory_order_relaxed); }

bool Sweeper::thread_running() const {
  internal::MutexLock l(&state_->mu);
  return state_->thread_running;
}

}  // namespace syncpool
