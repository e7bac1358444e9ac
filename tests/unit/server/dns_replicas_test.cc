// server/dns_replicas.cc: a ReplicaSet kept equal to what a DNS name resolves to.
#include "server/dns_replicas.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"

namespace flightcache {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using testing::FakeOrigin;
using ::testing::HasSubstr;

// A resolver whose answer the test sets; counts its calls.
class ScriptedResolver {
 public:
  void Answer(absl::StatusOr<std::vector<std::string>> next) {
    absl::MutexLock lock(&mu_);
    next_ = std::move(next);
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  auto AsFunction() {
    return [this](const std::string& name, int port) {
      absl::MutexLock lock(&mu_);
      ++calls_;
      EXPECT_EQ(name, "origin.svc");
      EXPECT_EQ(port, 9000);
      return next_;
    };
  }

 private:
  mutable absl::Mutex mu_;
  absl::StatusOr<std::vector<std::string>> next_ ABSL_GUARDED_BY(mu_) =
      absl::UnavailableError("not answered yet");
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class DnsReplicaWatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<DnsReplicaWatcher> Make(absl::Duration refresh = absl::Hours(1)) {
    return std::make_unique<DnsReplicaWatcher>(
        DnsReplicaOptions{.name = "origin.svc",
                          .port = 9000,
                          .refresh = refresh,
                          .resolve = resolver_.AsFunction(),
                          .on_change =
                              [this](const std::vector<std::string>& names) {
                                changes_.push_back(names);
                                if (!changed_.HasBeenNotified()) changed_.Notify();
                              }},
        set_, [this](const std::string& address) {
          ++made_;
          return std::make_unique<FakeOrigin>("fake://" + address);
        });
  }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const ReplicaStats& r : set_.stats()) names.push_back(r.name);
    return names;
  }

  testing::FakeClock clock_;
  ReplicaSet set_{{}, clock_, {}};
  ScriptedResolver resolver_;
  std::vector<std::vector<std::string>> changes_;
  absl::Notification changed_;  // the first change
  int made_ = 0;
};

TEST_F(DnsReplicaWatcherTest, TheMembersFollowTheAddressesTheNameResolvesTo) {
  auto watcher = Make();
  resolver_.Answer(std::vector<std::string>{"10.0.0.1:9000", "10.0.0.2:9000"});
  EXPECT_THAT(watcher->ResolveNow(), ElementsAre("10.0.0.1:9000", "10.0.0.2:9000"));
  EXPECT_THAT(Names(), ElementsAre("fake://10.0.0.1:9000", "fake://10.0.0.2:9000"));
  EXPECT_THAT(changes_, ElementsAre(ElementsAre("fake://10.0.0.1:9000", "fake://10.0.0.2:9000")));

  // A replica goes, another comes: the one that stays is not made again.
  resolver_.Answer(std::vector<std::string>{"10.0.0.2:9000", "10.0.0.3:9000"});
  watcher->ResolveNow();
  EXPECT_THAT(Names(), ElementsAre("fake://10.0.0.2:9000", "fake://10.0.0.3:9000"));
  EXPECT_EQ(made_, 3);
  // The same answer again changes nothing and reports nothing.
  watcher->ResolveNow();
  EXPECT_EQ(changes_.size(), 2u);
  EXPECT_EQ(watcher->resolutions(), 3);
}

TEST_F(DnsReplicaWatcherTest, AFailedOrEmptyResolutionKeepsTheMembers) {
  auto watcher = Make();
  resolver_.Answer(std::vector<std::string>{"10.0.0.1:9000"});
  watcher->ResolveNow();
  resolver_.Answer(absl::UnavailableError("Temporary failure in name resolution"));
  EXPECT_THAT(watcher->ResolveNow(), ElementsAre("10.0.0.1:9000"));
  resolver_.Answer(std::vector<std::string>{});
  EXPECT_THAT(watcher->ResolveNow(), ElementsAre("10.0.0.1:9000"));
  EXPECT_THAT(Names(), ElementsAre("fake://10.0.0.1:9000"));
  EXPECT_EQ(watcher->failures(), 2);
  EXPECT_EQ(changes_.size(), 1u);
}

TEST_F(DnsReplicaWatcherTest, BeforeTheFirstResolutionFetchesFailUnavailable) {
  auto watcher = Make();
  watcher->Start();  // the resolver fails: still started
  absl::Status result;
  set_.Fetch({.key = "k"}, std::stop_token(),
             [&](absl::StatusOr<FetchResult> r) { result = r.status(); });
  EXPECT_TRUE(absl::IsUnavailable(result)) << result;
  EXPECT_THAT(std::string(result.message()), HasSubstr("no origin replica"));
}

// Real time: the refresh thread resolves again on its own, and the destructor stops it.
TEST_F(DnsReplicaWatcherTest, TheNameIsResolvedAgainEveryRefresh) {
  auto watcher = Make(absl::Milliseconds(20));
  watcher->Start();
  EXPECT_EQ(resolver_.calls(), 1) << "Start() resolves once at once";
  resolver_.Answer(std::vector<std::string>{"10.0.0.9:9000"});
  ASSERT_TRUE(changed_.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "no re-resolution applied within 30 s (" << resolver_.calls() << " calls)";
  EXPECT_THAT(Names(), ElementsAre("fake://10.0.0.9:9000"));
  watcher.reset();
  const int calls = resolver_.calls();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(resolver_.calls(), calls) << "resolving went on after the watcher was destroyed";
}

TEST(ResolveAddressesTest, NumericAndLocalNamesResolveToAddressWithPort) {
  EXPECT_THAT(*ResolveAddresses("127.0.0.1", 80), ElementsAre("127.0.0.1:80"));
  EXPECT_THAT(*ResolveAddresses("::1", 81), ElementsAre("[::1]:81"));
  absl::StatusOr<std::vector<std::string>> local = ResolveAddresses("localhost", 82);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_THAT(*local, Contains("127.0.0.1:82"));
  // RFC 6761: .invalid never resolves.
  absl::StatusOr<std::vector<std::string>> none = ResolveAddresses("no-such-host.invalid", 1);
  EXPECT_TRUE(absl::IsUnavailable(none.status())) << none.status();
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("no-such-host.invalid"));
}

}  // namespace
}  // namespace flightcache
