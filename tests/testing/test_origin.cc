#include "tests/testing/test_origin.h"

#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/time/clock.h"
#include "flightcache/v1/origin.grpc.pb.h"
#include "server/grpc_listener.h"

namespace flightcache::testing {

struct TestOrigin::Call {
  FetchReactor* reactor = nullptr;
  std::string key;
  OriginBehavior behavior;
  int64_t nth = 0;
  size_t record = 0;  // index into records_
  TimerId timer = kNoTimer;
};

// One Fetch call. Finished exactly once, by whichever of Answer/OnCancel/Stop takes it out of
// `calls_`; deletes itself when gRPC is done with it.
class TestOrigin::FetchReactor final : public grpc::ServerUnaryReactor {
 public:
  FetchReactor(TestOrigin& origin, v1::FetchResponse* response)
      : response_(response), origin_(origin) {}

  void OnCancel() override { origin_.OnCancel(this); }
  void OnDone() override { delete this; }

  uint64_t id = 0;  // set under origin_.mu_ before the handler returns
  v1::FetchResponse* const response_;

 private:
  TestOrigin& origin_;
};

class TestOrigin::Service final : public v1::Origin::CallbackService {
 public:
  explicit Service(TestOrigin& origin) : origin_(origin) {}

  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* context,
                                  const v1::FetchRequest* request,
                                  v1::FetchResponse* response) override {
    auto* reactor = new FetchReactor(origin_, response);
    origin_.OnFetch(reactor, request->key(), request->attempt(),
                    absl::FromChrono(context->deadline()));
    return reactor;
  }

 private:
  TestOrigin& origin_;
};

TestOrigin::TestOrigin() = default;

std::unique_ptr<TestOrigin> TestOrigin::Start(int port,
                                              std::shared_ptr<grpc::ServerCredentials> credentials,
                                              const std::string& host) {
  std::unique_ptr<TestOrigin> origin(new TestOrigin());
  origin->timers_ = std::make_unique<ThreadTimerQueue>();
  origin->service_ = std::make_unique<Service>(*origin);
  grpc::ServerBuilder builder;
  builder.RegisterService(origin->service_.get());
  builder.SetMaxSendMessageSize(-1);
  absl::StatusOr<GrpcServer> server =
      StartGrpcServer(builder, host + ":" + std::to_string(port), std::move(credentials));
  if (!server.ok()) {
    std::fprintf(stderr, "TestOrigin: %s\n", std::string(server.status().message()).c_str());
    std::abort();
  }
  origin->server_ = std::move(server->server);
  origin->host_ = host;
  origin->port_ = server->port;
  return origin;
}

TestOrigin::~TestOrigin() {
  Stop();
  timers_.reset();  // joins the timer thread before anything it could touch goes away
}

void TestOrigin::SetDefaultBehavior(OriginBehavior behavior) {
  absl::MutexLock lock(&mu_);
  default_behavior_ = std::move(behavior);
}

void TestOrigin::SetBehavior(const std::string& key, OriginBehavior behavior) {
  absl::MutexLock lock(&mu_);
  behaviors_[key] = std::move(behavior);
}

void TestOrigin::SetScript(Script script) {
  absl::MutexLock lock(&mu_);
  script_ = std::move(script);
}

void TestOrigin::ClearBehaviors() {
  absl::MutexLock lock(&mu_);
  default_behavior_ = OriginBehavior{};
  behaviors_.clear();
  script_ = nullptr;
}

void TestOrigin::OnFetch(FetchReactor* reactor, const std::string& key, uint32_t attempt,
                         absl::Time deadline) {
  int64_t nth = 0;
  Script script;
  OriginBehavior behavior;
  {
    absl::MutexLock lock(&mu_);
    nth = ++nth_[key];
    ++fetches_;
    ++key_fetches_[key];
    script = script_;
    if (!script) {
      auto it = behaviors_.find(key);
      behavior = it != behaviors_.end() ? it->second : default_behavior_;
    }
  }
  // The script runs without our lock, so it may call back into the TestOrigin.
  if (script) behavior = script(key, attempt, nth);

  bool answer_now = false;
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    records_.push_back(
        FetchRecord{.key = key, .attempt = attempt, .nth = nth, .deadline = deadline});
    if (stopped_) {
      records_.back().end = FetchRecord::End::kStopped;
    } else {
      id = next_id_++;
      reactor->id = id;
      Call call{.reactor = reactor,
                .key = key,
                .behavior = behavior,
                .nth = nth,
                .record = records_.size() - 1};
      if (behavior.hold) {
        // Parked until Release().
      } else if (behavior.latency > absl::ZeroDuration()) {
        call.timer = timers_->RunAfter(behavior.latency, [this, id] { Answer(id); });
      } else {
        answer_now = true;
      }
      calls_.emplace(id, std::move(call));
      peak_ = std::max<int64_t>(peak_, static_cast<int64_t>(calls_.size()));
    }
  }
  if (id == 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "test origin stopped"));
  } else if (answer_now) {
    Answer(id);
  }
}

void TestOrigin::Answer(uint64_t id) {
  FetchReactor* reactor = nullptr;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;  // cancelled or stopped meanwhile
    Call call = std::move(it->second);
    calls_.erase(it);
    reactor = call.reactor;
    status = call.behavior.status;
    FetchRecord& record = records_[call.record];
    record.end = FetchRecord::End::kAnswered;
    record.code = status.error_code();
    if (status.ok()) {
      reactor->response_->set_value(call.behavior.value.has_value()
                                        ? *call.behavior.value
                                        : DefaultValue(call.key, call.nth));
      reactor->response_->set_ttl_ms(call.behavior.ttl_ms);
    }
  }
  reactor->Finish(status);
}

void TestOrigin::OnCancel(FetchReactor* reactor) {
  {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(reactor->id);
    if (it == calls_.end()) return;  // already answered: a late cancellation changes nothing
    Call call = std::move(it->second);
    calls_.erase(it);
    if (call.timer != kNoTimer) timers_->Cancel(call.timer);
    ++cancellations_;
    ++key_cancellations_[call.key];
    records_[call.record].end = FetchRecord::End::kCancelled;
    records_[call.record].code = grpc::StatusCode::CANCELLED;
  }
  reactor->Finish(grpc::Status::CANCELLED);
}

int TestOrigin::Release(const std::string& key) {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, call] : calls_) {
      if (call.behavior.hold && call.key == key) ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());  // in arrival order
  for (uint64_t id : ids) Answer(id);
  return static_cast<int>(ids.size());
}

int TestOrigin::ReleaseAll() {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, call] : calls_) {
      if (call.behavior.hold) ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) Answer(id);
  return static_cast<int>(ids.size());
}

void TestOrigin::Stop() {
  std::vector<FetchReactor*> pending;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [id, call] : calls_) {
      if (call.timer != kNoTimer) timers_->Cancel(call.timer);
      records_[call.record].end = FetchRecord::End::kStopped;
      pending.push_back(call.reactor);
    }
    calls_.clear();
  }
  for (FetchReactor* reactor : pending) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "test origin stopped"));
  }
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
}

int64_t TestOrigin::fetches() const {
  absl::MutexLock lock(&mu_);
  return fetches_;
}

int64_t TestOrigin::fetches(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = key_fetches_.find(key);
  return it == key_fetches_.end() ? 0 : it->second;
}

int64_t TestOrigin::cancellations() const {
  absl::MutexLock lock(&mu_);
  return cancellations_;
}

int64_t TestOrigin::cancellations(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = key_cancellations_.find(key);
  return it == key_cancellations_.end() ? 0 : it->second;
}

int64_t TestOrigin::concurrent() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(calls_.size());
}

int64_t TestOrigin::peak_concurrent() const {
  absl::MutexLock lock(&mu_);
  return peak_;
}

int64_t TestOrigin::held(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [id, call] : calls_) {
    if (call.behavior.hold && call.key == key) ++n;
  }
  return n;
}

std::vector<FetchRecord> TestOrigin::records() const {
  absl::MutexLock lock(&mu_);
  return records_;
}

void TestOrigin::ResetCounters() {
  absl::MutexLock lock(&mu_);
  fetches_ = 0;
  cancellations_ = 0;
  key_fetches_.clear();
  key_cancellations_.clear();
  peak_ = static_cast<int64_t>(calls_.size());
}

bool TestOrigin::WaitFor(absl::Duration timeout, std::function<bool()> condition) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](std::function<bool()>* c) { return (*c)(); }, &condition),
                              timeout);
}

bool TestOrigin::WaitForFetches(int64_t n, absl::Duration timeout) const {
  return WaitFor(timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return fetches_ >= n; });
}

bool TestOrigin::WaitForFetches(const std::string& key, int64_t n, absl::Duration timeout) const {
  return WaitFor(timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = key_fetches_.find(key);
    return it != key_fetches_.end() && it->second >= n;
  });
}

bool TestOrigin::WaitForHeld(const std::string& key, int64_t n, absl::Duration timeout) const {
  return WaitFor(timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    int64_t held = 0;
    for (const auto& [id, call] : calls_) {
      if (call.behavior.hold && call.key == key) ++held;
    }
    return held >= n;
  });
}

bool TestOrigin::WaitForCancellations(int64_t n, absl::Duration timeout) const {
  return WaitFor(timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return cancellations_ >= n; });
}

bool TestOrigin::WaitForIdle(absl::Duration timeout) const {
  return WaitFor(timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return calls_.empty(); });
}

}  // namespace flightcache::testing
