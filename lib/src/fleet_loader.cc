#include "internal/fleet_loader.h"

#include <functional>
#include <utility>

#include "absl/random/distributions.h"
#include "absl/strings/str_format.h"

namespace flightcache {
namespace {

absl::Status ShuttingDown() { return absl::CancelledError("shutting down"); }

}  // namespace

struct FleetLoader::Flight {
  explicit Flight(std::unique_ptr<FleetLoad> l) : load(std::move(l)), key(load->key()) {}

  const std::unique_ptr<FleetLoad> load;
  const std::string key;
  // Guarded by the loader's mu_ (a lock of another object, so not annotated):
  // The lease token, new each time the flight starts at the top, so that a lease an earlier round
  // took can be told apart from the current one.
  std::string token;
  Phase phase = Phase::kReading;
  uint64_t epoch = 0;
  bool registered = false;    // in waiting_
  bool counted_wait = false;  // counted in lease_waits_
  TimerId takeover_timer = kNoTimer;
  TimerId renew_timer = kNoTimer;
  // Last, so destroyed first: a stop callback running on another thread ends before the rest goes.
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
};

FleetLoader::FleetLoader(Options options, FleetStore& store, TimerQueue& timers)
    : options_(options), store_(store), timers_(timers) {}

FleetLoader::~FleetLoader() { Shutdown(); }

void FleetLoader::Shutdown() {
  std::vector<TimerId> timers;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    mu_.Await(absl::Condition(
        +[](int64_t* n) { return *n == 0; }, &active_));
    for (auto& [key, flights] : waiting_) {
      for (const FlightPtr& f : flights) {
        timers.push_back(std::exchange(f->takeover_timer, kNoTimer));
      }
    }
  }
  for (TimerId t : timers) {
    if (t != kNoTimer) timers_.Cancel(t);
  }
}

std::string FleetLoader::NewTokenLocked() {
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(random_),
                         absl::Uniform<uint64_t>(random_));
}

bool FleetLoader::Enter() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  ++active_;
  return true;
}

void FleetLoader::Exit() {
  absl::MutexLock lock(&mu_);
  --active_;
}

void FleetLoader::CountError(const absl::Status& status) {
  if (!status.ok()) errors_.fetch_add(1, std::memory_order_relaxed);
}

void FleetLoader::Unregister(Flight& f) {
  if (f.takeover_timer != kNoTimer) timers_.Cancel(std::exchange(f.takeover_timer, kNoTimer));
  if (!f.registered) return;
  f.registered = false;
  auto it = waiting_.find(f.key);
  if (it == waiting_.end()) return;
  std::vector<FlightPtr>& flights = it->second;
  for (size_t i = 0; i < flights.size(); ++i) {
    if (flights[i].get() == &f) {
      flights[i] = std::move(flights.back());
      flights.pop_back();
      break;
    }
  }
  if (flights.empty()) waiting_.erase(it);
}

bool FleetLoader::Transition(Flight& f, uint64_t epoch, Phase next) {
  if (f.phase == Phase::kDone || f.epoch != epoch) return false;
  Unregister(f);
  if (next != Phase::kHolding && f.renew_timer != kNoTimer) {
    timers_.Cancel(std::exchange(f.renew_timer, kNoTimer));
  }
  f.phase = next;
  ++f.epoch;
  return true;
}

FleetLoader::Step FleetLoader::BeginLocked(Flight& f, uint64_t epoch, std::optional<Phase> next,
                                           bool counts) {
  if (f.phase == Phase::kDone || f.epoch != epoch) return Step::kStale;
  if (shut_down_) {
    Transition(f, epoch, Phase::kDone);
    return Step::kShutDown;
  }
  if (next.has_value()) Transition(f, epoch, *next);
  if (counts) ++active_;
  return Step::kGo;
}

void FleetLoader::Start(std::unique_ptr<FleetLoad> load) {
  bool shut_down;
  {
    absl::MutexLock lock(&mu_);
    shut_down = shut_down_;
  }
  if (shut_down) return load->AnswerFailure(ShuttingDown());
  auto f = std::make_shared<Flight>(std::move(load));
  // Runs inline if the flight is already cancelled. Holds no strong reference to the flight, so
  // the flight (which owns this callback) is never kept alive by it. OnStopped() may drop the last
  // reference, destroying this stop_callback from inside its own callback: std::stop_callback
  // allows that on the calling thread, and nothing of the lambda is touched after the call.
  f->on_stop.emplace(f->load->stop_token(),
                     [weak_self = weak_from_this(), weak = std::weak_ptr<Flight>(f)] {
                       std::shared_ptr<FleetLoader> self = weak_self.lock();
                       FlightPtr flight = weak.lock();
                       if (self != nullptr && flight != nullptr) self->OnStopped(flight);
                     });
  ReadFirst(f, 0);
}

void FleetLoader::ReadFirst(const FlightPtr& f, uint64_t epoch) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    step = BeginLocked(*f, epoch, Phase::kReading, /*counts=*/true);
    if (step == Step::kGo) f->token = NewTokenLocked();
    epoch = f->epoch;
  }
  if (step == Step::kShutDown) f->load->AnswerFailure(ShuttingDown());
  if (step != Step::kGo) return;
  store_.Read(f->key, [self = shared_from_this(), f,
                       epoch](absl::StatusOr<std::optional<FleetEntry>> read) mutable {
    self->OnFirstRead(f, epoch, std::move(read));
    self->Exit();
  });
}

void FleetLoader::OnFirstRead(const FlightPtr& f, uint64_t epoch,
                              absl::StatusOr<std::optional<FleetEntry>> read) {
  CountError(read.status());
  if (!read.ok()) return FetchAlone(f, epoch, /*fallback=*/true);
  if (read->has_value()) return AnswerHit(f, epoch, std::move(**read));
  TakeLease(f, epoch, /*takeover=*/false);
}

void FleetLoader::TakeLease(const FlightPtr& f, uint64_t epoch, bool takeover) {
  Step step;
  std::string token;
  {
    absl::MutexLock lock(&mu_);
    // A take-over keeps the flight waiting (and registered) until the lease is taken.
    step =
        BeginLocked(*f, epoch, takeover ? std::nullopt : std::optional<Phase>(Phase::kTakingLease),
                    /*counts=*/true);
    epoch = f->epoch;
    token = f->token;
  }
  if (step == Step::kShutDown) f->load->AnswerFailure(ShuttingDown());
  if (step != Step::kGo) return;
  store_.TakeLease(
      f->key, token, options_.lease_ttl,
      [self = shared_from_this(), f, epoch, takeover, token](absl::StatusOr<bool> taken) {
        self->OnLeaseAnswer(f, epoch, takeover, token, std::move(taken));
        self->Exit();
      });
}

void FleetLoader::OnLeaseAnswer(const FlightPtr& f, uint64_t epoch, bool takeover,
                                const std::string& token, absl::StatusOr<bool> taken) {
  CountError(taken.status());
  if (!taken.ok()) return FetchAlone(f, epoch, /*fallback=*/true);
  if (*taken) {
    // Taken by a round of the flight that is over (answered, cancelled, started over): give the
    // lease back rather than leave the key locked for a lease_ttl.
    if (!Hold(f, epoch, takeover)) ReleaseLease(f->key, token);
    return;
  }
  if (!takeover) {
    // Waiting needs announcements; without them, go alone rather than wait for a lease_ttl.
    if (!store_.CanWait()) return FetchAlone(f, epoch, /*fallback=*/true);
    return Wait(f, epoch);
  }
  // The holder is alive (it renewed): wait on, and Read in case its announcement was missed.
  {
    absl::MutexLock lock(&mu_);
    if (f->phase != Phase::kWaiting || f->epoch != epoch || shut_down_) return;
    if (f->takeover_timer == kNoTimer) f->takeover_timer = ArmTakeover(f);
  }
  ReadWhileWaiting(f, epoch, /*miss_starts_over=*/false);
}

bool FleetLoader::Hold(const FlightPtr& f, uint64_t epoch, bool takeover) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    step = BeginLocked(*f, epoch, Phase::kHolding, /*counts=*/false);
    if (step == Step::kGo) f->renew_timer = ArmRenewal(f);
  }
  if (step == Step::kStale) return false;
  if (step == Step::kShutDown) {
    f->load->AnswerFailure(ShuttingDown());
    return true;  // a dying sidecar's lease is left to expire
  }
  leases_won_.fetch_add(1, std::memory_order_relaxed);
  if (takeover) takeovers_.fetch_add(1, std::memory_order_relaxed);
  f->load->FetchFromOrigin([self = shared_from_this(), f](FleetPublication publication) {
    self->OnHolderFetched(f, std::move(publication));
  });
  return true;
}

void FleetLoader::ReleaseLease(const std::string& key, const std::string& token) {
  if (!Enter()) return;
  // Nothing stored; kLoaded tells the waiters to look again: they Read, and start over on a miss.
  store_.Publish(key, token, std::nullopt,
                 FleetAnnouncement{.kind = FleetAnnouncement::Kind::kLoaded, .key = key},
                 [self = shared_from_this()](const absl::StatusOr<bool>& published) {
                   self->CountError(published.status());
                   self->Exit();
                 });
}

void FleetLoader::OnHolderFetched(const FlightPtr& f, FleetPublication publication) {
  std::string token;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;  // a dying sidecar publishes nothing: its lease expires
    ++active_;
    token = f->token;
    if (f->renew_timer != kNoTimer) timers_.Cancel(std::exchange(f->renew_timer, kNoTimer));
    if (f->phase != Phase::kDone) {
      f->phase = Phase::kDone;
      ++f->epoch;
    }
  }
  if (publication.kind == FleetAnnouncement::Kind::kLoaded && publication.entry.has_value() &&
      static_cast<int64_t>(publication.entry->value.size()) > options_.max_value_bytes) {
    publication.entry.reset();
    publication.kind = FleetAnnouncement::Kind::kNotShared;
  }
  if (publication.kind != FleetAnnouncement::Kind::kLoaded) publication.entry.reset();
  FleetAnnouncement announcement{
      .kind = publication.kind, .key = f->key, .failure = std::move(publication.failure)};
  // False: the lease was voided (invalidated, or expired and taken over): nothing was stored.
  store_.Publish(f->key, token, std::move(publication.entry), std::move(announcement),
                 [self = shared_from_this()](const absl::StatusOr<bool>& published) {
                   self->CountError(published.status());
                   self->Exit();
                 });
}

void FleetLoader::Renew(const std::weak_ptr<Flight>& weak) {
  FlightPtr f = weak.lock();
  if (f == nullptr) return;
  std::string token;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_ || f->phase != Phase::kHolding) return;
    f->renew_timer = kNoTimer;
    ++active_;
    token = f->token;
  }
  store_.RenewLease(f->key, token, options_.lease_ttl,
                    [self = shared_from_this(), weak](absl::StatusOr<bool> renewed) {
                      self->OnRenewed(weak, std::move(renewed));
                      self->Exit();
                    });
}

void FleetLoader::OnRenewed(const std::weak_ptr<Flight>& weak, absl::StatusOr<bool> renewed) {
  CountError(renewed.status());
  // Not renewed: the lease is gone (voided or taken over); the load goes on for the local callers
  // and its Publish will be refused.
  if (!renewed.ok() || !*renewed) return;
  FlightPtr f = weak.lock();
  if (f == nullptr) return;
  absl::MutexLock lock(&mu_);
  if (!shut_down_ && f->phase == Phase::kHolding && f->renew_timer == kNoTimer) {
    f->renew_timer = ArmRenewal(f);
  }
}

void FleetLoader::Wait(const FlightPtr& f, uint64_t epoch) {
  {
    absl::MutexLock lock(&mu_);
    const Step step = BeginLocked(*f, epoch, Phase::kWaiting, /*counts=*/false);
    if (step == Step::kStale) return;
    if (step == Step::kGo) {
      waiting_[f->key].push_back(f);
      f->registered = true;
      f->takeover_timer = ArmTakeover(f);
      if (!std::exchange(f->counted_wait, true)) {
        lease_waits_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    epoch = f->epoch;
  }
  // Registered first, then Read: an announcement that came before the registration is not lost.
  ReadWhileWaiting(f, epoch, /*miss_starts_over=*/false);
}

void FleetLoader::ReadWhileWaiting(const FlightPtr& f, uint64_t epoch, bool miss_starts_over) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    step = BeginLocked(*f, epoch, std::nullopt, /*counts=*/true);
  }
  if (step == Step::kShutDown) f->load->AnswerFailure(ShuttingDown());
  if (step != Step::kGo) return;
  store_.Read(f->key, [self = shared_from_this(), f, epoch,
                       miss_starts_over](absl::StatusOr<std::optional<FleetEntry>> read) mutable {
    self->CountError(read.status());
    if (!read.ok()) {
      self->FetchAlone(f, epoch, /*fallback=*/true);
    } else if (read->has_value()) {
      self->AnswerHit(f, epoch, std::move(**read));
    } else if (miss_starts_over) {
      // Announced but gone already (invalidated, evicted): take it from the top.
      self->ReadFirst(f, epoch);
    }
    self->Exit();
  });
}

void FleetLoader::OnTakeoverTimer(const std::weak_ptr<Flight>& weak) {
  FlightPtr f = weak.lock();
  if (f == nullptr || !Enter()) return;
  uint64_t epoch = 0;
  bool waiting = false;
  {
    absl::MutexLock lock(&mu_);
    if (f->phase == Phase::kWaiting) {
      waiting = true;
      f->takeover_timer = kNoTimer;
      epoch = f->epoch;
    }
  }
  if (waiting) TakeLease(f, epoch, /*takeover=*/true);
  Exit();
}

void FleetLoader::AnswerHit(const FlightPtr& f, uint64_t epoch, FleetEntry entry) {
  {
    absl::MutexLock lock(&mu_);
    if (!Transition(*f, epoch, Phase::kDone)) return;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  f->load->AnswerFromFleet(std::move(entry));
}

void FleetLoader::AnswerFailure(const FlightPtr& f, uint64_t epoch, absl::Status failure) {
  {
    absl::MutexLock lock(&mu_);
    if (!Transition(*f, epoch, Phase::kDone)) return;
  }
  f->load->AnswerFailure(std::move(failure));
}

void FleetLoader::FetchAlone(const FlightPtr& f, uint64_t epoch, bool fallback) {
  Step step;
  {
    absl::MutexLock lock(&mu_);
    step = BeginLocked(*f, epoch, Phase::kFetchingAlone, /*counts=*/false);
  }
  if (step == Step::kShutDown) f->load->AnswerFailure(ShuttingDown());
  if (step != Step::kGo) return;
  if (fallback) fallbacks_.fetch_add(1, std::memory_order_relaxed);
  f->load->FetchFromOrigin(nullptr);
}

void FleetLoader::OnStopped(const FlightPtr& f) {
  absl::MutexLock lock(&mu_);
  // A holder's fetch is being stopped too; its result (CANCELLED or a timeout) is still
  // published, which ends the lease.
  Transition(*f, f->epoch, Phase::kDone);
}

TimerId FleetLoader::ArmTakeover(const FlightPtr& f) {
  return timers_.RunAfter(options_.lease_ttl,
                          [weak_self = weak_from_this(), weak = std::weak_ptr<Flight>(f)] {
                            if (auto self = weak_self.lock()) self->OnTakeoverTimer(weak);
                          });
}

TimerId FleetLoader::ArmRenewal(const FlightPtr& f) {
  return timers_.RunAfter(options_.lease_ttl / 3,
                          [weak_self = weak_from_this(), weak = std::weak_ptr<Flight>(f)] {
                            if (auto self = weak_self.lock()) self->Renew(weak);
                          });
}

void FleetLoader::OnAnnouncement(const FleetAnnouncement& announcement) {
  std::vector<std::pair<FlightPtr, uint64_t>> flights;
  {
    absl::MutexLock lock(&mu_);
    auto it = waiting_.find(announcement.key);
    if (it == waiting_.end()) return;
    for (const FlightPtr& f : it->second) flights.emplace_back(f, f->epoch);
  }
  for (auto& [f, epoch] : flights) {
    switch (announcement.kind) {
      case FleetAnnouncement::Kind::kLoaded:
        ReadWhileWaiting(f, epoch, /*miss_starts_over=*/true);
        break;
      case FleetAnnouncement::Kind::kNotShared:
        FetchAlone(f, epoch, /*fallback=*/false);
        break;
      case FleetAnnouncement::Kind::kFailed:
        AnswerFailure(f, epoch,
                      announcement.failure.ok()
                          ? absl::UnavailableError("another sidecar's load failed")
                          : announcement.failure);
        break;
      case FleetAnnouncement::Kind::kInvalidated:
        ReadFirst(f, epoch);
        break;
    }
  }
}

void FleetLoader::OnResubscribed() {
  std::vector<std::pair<FlightPtr, uint64_t>> flights;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, waiting] : waiting_) {
      for (const FlightPtr& f : waiting) flights.emplace_back(f, f->epoch);
    }
  }
  for (auto& [f, epoch] : flights) ReadFirst(f, epoch);
}

void FleetLoader::Invalidate(std::vector<std::string> keys) {
  if (!Enter()) return;
  store_.Invalidate(std::move(keys), [self = shared_from_this()](const absl::Status& status) {
    self->CountError(status);
    self->Exit();
  });
}

FleetLoaderStats FleetLoader::stats() const {
  auto load = [](const std::atomic<int64_t>& v) { return v.load(std::memory_order_relaxed); };
  return {.hits = load(hits_),
          .leases_won = load(leases_won_),
          .lease_waits = load(lease_waits_),
          .errors = load(errors_),
          .takeovers = load(takeovers_),
          .fallbacks = load(fallbacks_)};
}

size_t FleetLoader::waiting() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [key, flights] : waiting_) n += flights.size();
  return n;
}

}  // namespace flightcache
