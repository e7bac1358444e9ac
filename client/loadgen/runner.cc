#include "client/loadgen/runner.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flightcache::loadgen {
namespace {

// Phases of a closed-loop slot, for the trampoline in IssueFrom()/SlotDone().
constexpr int kIdle = 0;            // no Start() of this slot on any stack
constexpr int kStarting = 1;        // inside target_.Start()
constexpr int kAnsweredInline = 2;  // answered before Start() returned: IssueFrom() loops

// A send later than this behind its schedule counts as late in the open-loop report.
constexpr absl::Duration kLateSend = absl::Milliseconds(1);

// --max-deadline's upper bound: far beyond any useful call, far below any overflow.
constexpr absl::Duration kMaxRandomDeadline = absl::Hours(1);

}  // namespace

struct Runner::Slot {
  // acq_rel on every transition: whoever continues the loop must see the other side's writes.
  std::atomic<int> phase{kIdle};
};

absl::Status RunnerOptions::Validate() const {
  if (deadline <= absl::ZeroDuration()) return absl::InvalidArgumentError("--deadline must be > 0");
  if (duration <= absl::ZeroDuration()) return absl::InvalidArgumentError("--duration must be > 0");
  if (max_requests < 0) return absl::InvalidArgumentError("--requests must be >= 0");
  if (max_deadline < absl::ZeroDuration() || max_deadline > kMaxRandomDeadline) {
    return absl::InvalidArgumentError(absl::StrCat("--max-deadline must be in [0, ",
                                                   absl::FormatDuration(kMaxRandomDeadline),
                                                   "] (0: every call gets --deadline)"));
  }
  switch (mode) {
    case LoopMode::kClosed:
      if (concurrency < 1) return absl::InvalidArgumentError("--concurrency must be at least 1");
      break;
    case LoopMode::kOpen:
      if (!(rate > 0) || !std::isfinite(rate) || rate > 1e7) {
        return absl::InvalidArgumentError("--rate must be in (0, 1e7] calls per second");
      }
      if (max_inflight < 1) return absl::InvalidArgumentError("--max-inflight must be at least 1");
      break;
    case LoopMode::kHerd:
      if (herd_size < 1) return absl::InvalidArgumentError("--herd-size must be at least 1");
      if (waves < 1) return absl::InvalidArgumentError("--waves must be at least 1");
      break;
  }
  return absl::OkStatus();
}

Runner::Runner(RunnerOptions options, Workload& workload, Target& target, LatencyRecorder& recorder,
               TimerQueue& timers)
    : options_(options),
      workload_(workload),
      target_(target),
      recorder_(recorder),
      timers_(timers),
      clock_(timers.clock()),
      rng_(options.seed) {}

Runner::~Runner() = default;

void Runner::Start() {
  start_ = clock_.Now();
  end_ = options_.duration == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                       : start_ + options_.duration;
  switch (options_.mode) {
    case LoopMode::kClosed: {
      for (int i = 0; i < options_.concurrency; ++i) slots_.push_back(std::make_unique<Slot>());
      {
        absl::MutexLock lock(&mu_);
        active_slots_ = options_.concurrency;
      }
      for (auto& slot : slots_) IssueFrom(*slot);
      break;
    }
    case LoopMode::kOpen: {
      absl::MutexLock lock(&mu_);
      next_time_ = start_;
      ScheduleTickLocked(start_);
      break;
    }
    case LoopMode::kHerd:
      timers_.RunAt(start_, [this] { StartWave(0); });
      break;
  }
}

RunResult Runner::Wait() {
  done_.WaitForNotification();
  absl::MutexLock lock(&mu_);
  RunResult result;
  result.elapsed = finished_at_ - start_;
  result.calls_sent = sent_.load(std::memory_order_relaxed);
  result.late_sends = late_sends_;
  result.max_send_lag = max_send_lag_;
  return result;
}

void Runner::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  // An open loop at a low rate may sleep until its next send: wake it now to notice the stop.
  if (tick_timer_ != kNoTimer && timers_.Cancel(tick_timer_)) {
    tick_timer_ = kNoTimer;
    ScheduleTickLocked(clock_.Now());
  }
}

bool Runner::MarkFinishedLocked() {
  if (finished_) return false;
  finished_ = true;
  finished_at_ = clock_.Now();
  return true;
}

bool Runner::ClaimCall() {
  if (stop_.load(std::memory_order_relaxed)) return false;
  if (clock_.Now() >= end_) return false;
  if (options_.max_requests > 0 &&
      claimed_.fetch_add(1, std::memory_order_relaxed) >= options_.max_requests) {
    return false;
  }
  return true;
}

CallSpec Runner::NextCall() {
  Operation op = workload_.NextOperation();
  CallSpec call;
  call.kind = op.kind;
  call.keys = std::move(op.keys);
  call.deadline = options_.deadline;
  if (options_.max_deadline > absl::ZeroDuration()) {
    absl::MutexLock lock(&mu_);
    call.deadline = absl::Nanoseconds(std::uniform_int_distribution<int64_t>(
        1, absl::ToInt64Nanoseconds(options_.max_deadline))(rng_));
  }
  inflight_.fetch_add(1, std::memory_order_relaxed);
  sent_.fetch_add(1, std::memory_order_relaxed);
  return call;
}

// ---- closed loop ----

void Runner::IssueFrom(Slot& slot) {
  while (true) {
    if (!ClaimCall()) {
      bool notify = false;
      {
        absl::MutexLock lock(&mu_);
        if (--active_slots_ == 0) notify = MarkFinishedLocked();
      }
      if (notify) done_.Notify();
      return;
    }
    CallSpec call = NextCall();
    const CallKind kind = call.kind;
    const absl::Time sent = clock_.Now();
    slot.phase.store(kStarting, std::memory_order_release);
    target_.Start(std::move(call),
                  [this, &slot, sent, kind](const std::vector<ItemResult>& results) {
                    SlotDone(slot, sent, kind, results);
                  });
    int expected = kStarting;
    if (slot.phase.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel)) {
      return;  // the answer is still to come; SlotDone() sends the next call
    }
    // Answered inline (or on another thread before Start() returned): loop instead of recursing.
  }
}

void Runner::SlotDone(Slot& slot, absl::Time sent, CallKind kind,
                      const std::vector<ItemResult>& results) {
  recorder_.Record(clock_.Now() - sent, results, kind);
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  int expected = kStarting;
  if (slot.phase.compare_exchange_strong(expected, kAnsweredInline, std::memory_order_acq_rel)) {
    return;  // IssueFrom() is still inside Start() and will send the next call
  }
  IssueFrom(slot);
}

// ---- open loop ----

void Runner::ScheduleTickLocked(absl::Time when) {
  tick_timer_ = timers_.RunAt(when, [this] { Tick(); });
}

void Runner::AdvanceScheduleLocked() {
  ++next_index_;
  if (options_.poisson_arrivals) {
    std::exponential_distribution<double> gap(options_.rate);
    next_time_ += absl::Nanoseconds(std::llround(gap(rng_) * 1e9));
  } else {
    // From the index, not by adding gaps, so rounding never accumulates into drift.
    next_time_ = start_ + absl::Nanoseconds(
                              std::llround(static_cast<double>(next_index_) * 1e9 / options_.rate));
  }
}

void Runner::Tick() {
  {
    absl::MutexLock lock(&mu_);
    tick_timer_ = kNoTimer;  // this tick is running; it schedules the next one itself
  }
  while (true) {
    std::optional<absl::Time> scheduled;  // set when a call is to be sent now
    bool notify = false;
    {
      absl::MutexLock lock(&mu_);
      if (sending_done_) return;
      const absl::Time now = clock_.Now();
      if (stop_.load(std::memory_order_relaxed) || next_time_ >= end_ ||
          (options_.max_requests > 0 && next_index_ >= options_.max_requests)) {
        sending_done_ = true;
        if (open_inflight_ == 0) notify = MarkFinishedLocked();
      } else if (next_time_ > now) {
        ScheduleTickLocked(next_time_);
        return;
      } else if (open_inflight_ >= options_.max_inflight) {
        blocked_on_cap_ = true;  // the next answer schedules a tick
        return;
      } else {
        scheduled = next_time_;
        const absl::Duration lag = now - *scheduled;
        if (lag > kLateSend) ++late_sends_;
        max_send_lag_ = std::max(max_send_lag_, lag);
        AdvanceScheduleLocked();
        ++open_inflight_;
      }
    }
    if (!scheduled.has_value()) {  // sending is over
      if (notify) done_.Notify();
      return;
    }
    CallSpec call = NextCall();
    const CallKind kind = call.kind;
    target_.Start(std::move(call),
                  [this, at = *scheduled, kind](const std::vector<ItemResult>& results) {
                    OpenDone(at, kind, results);
                  });
  }
}

void Runner::OpenDone(absl::Time scheduled, CallKind kind, const std::vector<ItemResult>& results) {
  const absl::Time now = clock_.Now();
  // From the scheduled time, not the actual send: the heart of avoiding coordinated omission.
  recorder_.Record(now - scheduled, results, kind);
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  bool notify = false;
  {
    absl::MutexLock lock(&mu_);
    --open_inflight_;
    if (blocked_on_cap_) {
      blocked_on_cap_ = false;
      ScheduleTickLocked(now);
    }
    if (sending_done_ && open_inflight_ == 0) notify = MarkFinishedLocked();
  }
  if (notify) done_.Notify();
}

// ---- herd ----

void Runner::StartWave(int wave) {
  if (stop_.load(std::memory_order_relaxed) || wave >= options_.waves) {
    bool notify = false;
    {
      absl::MutexLock lock(&mu_);
      notify = MarkFinishedLocked();
    }
    if (notify) done_.Notify();
    return;
  }
  const std::string key = workload_.HerdKey(wave);
  const absl::Time wave_start = clock_.Now();
  herd_remaining_.store(options_.herd_size, std::memory_order_relaxed);
  for (int i = 0; i < options_.herd_size; ++i) {
    CallSpec call;
    call.keys = {key};
    call.deadline = options_.deadline;
    inflight_.fetch_add(1, std::memory_order_relaxed);
    sent_.fetch_add(1, std::memory_order_relaxed);
    target_.Start(std::move(call),
                  [this, wave, wave_start](const std::vector<ItemResult>& results) {
                    HerdDone(wave, wave_start, results);
                  });
  }
}

void Runner::HerdDone(int wave, absl::Time wave_start, const std::vector<ItemResult>& results) {
  recorder_.Record(clock_.Now() - wave_start, results);
  inflight_.fetch_sub(1, std::memory_order_relaxed);
  if (herd_remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // From the timer thread, not here: the next wave's sends must not run on (and recurse
    // through) a completion callback.
    timers_.RunAfter(absl::ZeroDuration(), [this, wave] { StartWave(wave + 1); });
  }
}

}  // namespace flightcache::loadgen
