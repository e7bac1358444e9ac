#include "flightcache/replica_set.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/fake_origin.h"

namespace flightcache {
namespace {

using ::testing::ElementsAre;
using testing::FakeClock;
using testing::FakeOrigin;
using ::testing::HasSubstr;

// N fake replicas behind a ReplicaSet; the fakes stay reachable through raw pointers.
class ReplicaSetTest : public ::testing::Test {
 protected:
  void Make(size_t n, ReplicaSetOptions options = {}) {
    std::vector<std::unique_ptr<Origin>> replicas;
    for (size_t i = 0; i < n; ++i) {
      auto fake = std::make_unique<FakeOrigin>(absl::StrCat("r", i));
      fakes_.push_back(fake.get());
      replicas.push_back(std::move(fake));
    }
    ASSERT_TRUE(options.Validate().ok()) << options.Validate();
    set_ =
        std::make_unique<ReplicaSet>(std::move(replicas), clock_, options,
                                     [this](const std::string& replica, absl::Duration,
                                            const absl::Status&) { observed_.push_back(replica); });
  }

  // Fetches `key` (attempt 1 or 2) and returns which replica got it.
  size_t FetchTo(const std::string& key, uint32_t attempt = 1) {
    std::vector<int64_t> before;
    for (FakeOrigin* f : fakes_) before.push_back(f->fetches());
    set_->Fetch({.key = key, .attempt = attempt}, stop_.get_token(),
                [this](absl::StatusOr<FetchResult> r) { results_.push_back(r.status()); });
    for (size_t i = 0; i < fakes_.size(); ++i) {
      if (fakes_[i]->fetches() != before[i]) return i;
    }
    ADD_FAILURE() << "no replica got the fetch of " << key;
    return fakes_.size();
  }

  // Every replica answers at once: OK for healthy ones, `failing` ones with UNAVAILABLE.
  void AnswerInline(const std::vector<bool>& failing) {
    for (size_t i = 0; i < fakes_.size(); ++i) {
      const bool fail = failing[i];
      fakes_[i]->set_auto_answer([fail](const FetchRequest&) -> absl::StatusOr<FetchResult> {
        if (fail) return absl::UnavailableError("replica down");
        return FetchResult{"v"};
      });
    }
  }

  FakeClock clock_;
  std::stop_source stop_;
  std::vector<FakeOrigin*> fakes_;
  std::unique_ptr<ReplicaSet> set_;
  std::vector<std::string> observed_;
  std::vector<absl::Status> results_;
};

TEST_F(ReplicaSetTest, OptionsAreChecked) {
  EXPECT_TRUE(ReplicaSetOptions{}.Validate().ok());
  EXPECT_THAT(ReplicaSetOptions{.eject_after = -1}.Validate().message(), HasSubstr("eject_after"));
  EXPECT_THAT(ReplicaSetOptions{.base_ejection = absl::ZeroDuration()}.Validate().message(),
              HasSubstr("base_ejection"));
  EXPECT_THAT((ReplicaSetOptions{.base_ejection = absl::Minutes(10)}.Validate().message()),
              HasSubstr("max_ejection"));
}

TEST_F(ReplicaSetTest, FetchesGoToTheReplicaWithTheFewestOutstanding) {
  Make(2);
  // Equals take turns.
  EXPECT_EQ(FetchTo("a"), 0u);
  EXPECT_EQ(FetchTo("b"), 1u);
  EXPECT_EQ(FetchTo("c"), 0u);
  EXPECT_EQ(FetchTo("d"), 1u);
  // Replica 0 answers both of its fetches; replica 1 is still busy (slow): the next two fetches go
  // to replica 0.
  ASSERT_TRUE(fakes_[0]->AnswerValue(0, "v"));
  ASSERT_TRUE(fakes_[0]->AnswerValue(1, "v"));
  EXPECT_EQ(FetchTo("e"), 0u);
  EXPECT_EQ(FetchTo("f"), 0u);
  const std::vector<ReplicaStats> stats = set_->stats();
  EXPECT_EQ(stats[0].fetches, 4);
  EXPECT_EQ(stats[0].outstanding, 2);
  EXPECT_EQ(stats[1].fetches, 2);
  EXPECT_EQ(stats[1].outstanding, 2);
  EXPECT_EQ(set_->Describe(), "r0,r1");
}

TEST_F(ReplicaSetTest, AHedgeNeverGoesToItsPrimarysReplica) {
  Make(3);
  for (int i = 0; i < 30; ++i) {
    const std::string key = absl::StrCat("k", i);
    const size_t primary = FetchTo(key, 1);
    EXPECT_NE(FetchTo(key, 2), primary) << key;
  }
}

TEST_F(ReplicaSetTest, WithoutHedgeToOtherReplicaAHedgeGoesToItsPrimarysReplica) {
  Make(2, {.hedge_to_other_replica = false});
  for (int i = 0; i < 10; ++i) {
    const std::string key = absl::StrCat("k", i);
    const size_t primary = FetchTo(key, 1);
    EXPECT_EQ(FetchTo(key, 2), primary) << key;
  }
}

// Least outstanding would pick the primary's replica (it is the idle one); the hedge still goes
// elsewhere.
TEST_F(ReplicaSetTest, AHedgeAvoidsThePrimaryEvenWhenItIsTheLeastBusy) {
  Make(2);
  FetchTo("x");  // replica 0
  FetchTo("y");  // replica 1
  FetchTo("z");  // replica 0: it has 2, replica 1 has 1
  ASSERT_TRUE(fakes_[1]->AnswerValue(0, "v"));
  EXPECT_EQ(FetchTo("k", 1), 1u);  // replica 1 is idle
  EXPECT_EQ(FetchTo("k", 2), 0u) << "the hedge goes to the busier replica, not the primary's";
}

TEST_F(ReplicaSetTest, WithOneHealthyReplicaTheHedgeGoesToIt) {
  Make(2, {.eject_after = 1});
  AnswerInline({false, true});
  FetchTo("a");
  ASSERT_EQ(FetchTo("b"), 1u);  // fails: replica 1 is ejected
  ASSERT_TRUE(set_->stats()[1].ejected);
  AnswerInline({false, false});
  fakes_[0]->set_auto_answer(nullptr);  // keep the primary in flight
  EXPECT_EQ(FetchTo("k", 1), 0u);
  EXPECT_EQ(FetchTo("k", 2), 0u) << "no other healthy replica: the hedge still goes out";
}

TEST_F(ReplicaSetTest, AFailingReplicaIsEjectedForTenSecondsThenTwentyAndComesBack) {
  Make(2, {.eject_after = 3});
  AnswerInline({false, true});
  int to_failing = 0;
  for (int i = 0; i < 20; ++i) to_failing += FetchTo(absl::StrCat("a", i)) == 1 ? 1 : 0;
  EXPECT_EQ(to_failing, 3) << "ejected after its third failure in a row";
  EXPECT_TRUE(set_->stats()[1].ejected);
  EXPECT_EQ(set_->stats()[1].ejections, 1);

  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(FetchTo("still-out"), 0u);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(set_->stats()[1].ejected) << "back after 10 s";
  to_failing = 0;
  for (int i = 0; i < 20; ++i) to_failing += FetchTo(absl::StrCat("b", i)) == 1 ? 1 : 0;
  EXPECT_EQ(to_failing, 3);
  EXPECT_EQ(set_->stats()[1].ejections, 2);

  clock_.Advance(absl::Seconds(19));
  EXPECT_TRUE(set_->stats()[1].ejected) << "the second ejection lasts 20 s";
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(set_->stats()[1].ejected);

  // Healthy again: a success resets its count of failures in a row.
  AnswerInline({false, false});
  for (int i = 0; i < 4; ++i) FetchTo(absl::StrCat("c", i));
  AnswerInline({false, true});
  to_failing = 0;
  for (int i = 0; i < 20; ++i) to_failing += FetchTo(absl::StrCat("d", i)) == 1 ? 1 : 0;
  EXPECT_EQ(to_failing, 3);
  EXPECT_EQ(set_->stats()[1].ejections, 3);
  clock_.Advance(absl::Seconds(39));
  EXPECT_TRUE(set_->stats()[1].ejected) << "the third lasts 40 s";
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(set_->stats()[1].ejected);
}

TEST_F(ReplicaSetTest, EjectionsDoubleUpToTheMaximum) {
  Make(2,
       {.eject_after = 1, .base_ejection = absl::Seconds(10), .max_ejection = absl::Seconds(30)});
  AnswerInline({false, true});
  for (absl::Duration expected :
       {absl::Seconds(10), absl::Seconds(20), absl::Seconds(30), absl::Seconds(30)}) {
    while (!set_->stats()[1].ejected) FetchTo("k");
    clock_.Advance(expected - absl::Milliseconds(1));
    EXPECT_TRUE(set_->stats()[1].ejected) << expected;
    clock_.Advance(absl::Milliseconds(1));
    EXPECT_FALSE(set_->stats()[1].ejected) << expected;
  }
}

TEST_F(ReplicaSetTest, TheLastHealthyReplicaIsNeverEjected) {
  Make(2, {.eject_after = 2});
  AnswerInline({true, true});
  for (int i = 0; i < 20; ++i) FetchTo(absl::StrCat("k", i));
  const std::vector<ReplicaStats> stats = set_->stats();
  EXPECT_NE(stats[0].ejected, stats[1].ejected) << "exactly one of the two is left out";
  EXPECT_EQ(stats[0].ejections + stats[1].ejections, 1);
  EXPECT_EQ(stats[0].failures + stats[1].failures, 20);
}

TEST_F(ReplicaSetTest, NotFoundAndCancellationsDoNotCountAsFailures) {
  Make(2, {.eject_after = 2});
  fakes_[1]->set_auto_answer([](const FetchRequest&) -> absl::StatusOr<FetchResult> {
    return absl::NotFoundError("no such key");
  });
  for (int i = 0; i < 10; ++i) FetchTo(absl::StrCat("k", i));
  // Fetches we cancel (a lost hedge race, a caller gone) are not the replica's fault.
  fakes_[1]->set_auto_answer(nullptr);
  std::stop_source stop;
  for (int i = 0; i < 4; ++i) {
    set_->Fetch({.key = absl::StrCat("c", i)}, stop.get_token(),
                [](absl::StatusOr<FetchResult>) {});
  }
  stop.request_stop();
  const std::vector<ReplicaStats> stats = set_->stats();
  EXPECT_FALSE(stats[1].ejected);
  EXPECT_EQ(stats[1].failures, 0);
  EXPECT_EQ(stats[1].outstanding, 0);
}

TEST_F(ReplicaSetTest, TheObserverSeesEveryFinishedFetchWithItsReplica) {
  Make(2);
  AnswerInline({false, false});
  FetchTo("a");
  FetchTo("b");
  FetchTo("c");
  EXPECT_THAT(observed_, ElementsAre("r0", "r1", "r0"));
  EXPECT_EQ(results_.size(), 3u);
}

// Membership changes (dns:/// re-resolving) while fetches run.
class ReplicaSetMembershipTest : public ReplicaSetTest {
 protected:
  // Makes `names` the members; new ones become fakes, kept in `made_` by name.
  void SetMembers(const std::vector<std::string>& names) {
    set_->SetMembers(names, [this](const std::string& name) {
      auto fake = std::make_unique<FakeOrigin>(name);
      made_[name] = fake.get();
      return fake;
    });
  }

  std::vector<std::string> Members() const {
    std::vector<std::string> names;
    for (const ReplicaStats& r : set_->stats()) names.push_back(r.name);
    return names;
  }

  absl::flat_hash_map<std::string, FakeOrigin*> made_;
};

TEST_F(ReplicaSetMembershipTest, WithNoReplicaFetchesFailUnavailableAtOnce) {
  set_ = std::make_unique<ReplicaSet>(std::vector<std::unique_ptr<Origin>>{}, clock_,
                                      ReplicaSetOptions{});
  set_->Fetch({.key = "k"}, stop_.get_token(),
              [this](absl::StatusOr<FetchResult> r) { results_.push_back(r.status()); });
  ASSERT_EQ(results_.size(), 1u);
  EXPECT_TRUE(absl::IsUnavailable(results_[0])) << results_[0];
  EXPECT_EQ(set_->Describe(), "no replica");
  SetMembers({"a:1"});
  EXPECT_EQ(set_->Describe(), "a:1");
  set_->Fetch({.key = "k"}, stop_.get_token(), [](absl::StatusOr<FetchResult>) {});
  EXPECT_EQ(made_["a:1"]->fetches(), 1);
}

TEST_F(ReplicaSetMembershipTest, AStayingReplicaKeepsItsStateAndALeavingOneFinishesItsFetches) {
  Make(2, {.eject_after = 1});
  AnswerInline({false, true});
  FetchTo("a");
  FetchTo("b");  // r1 fails once: ejected
  ASSERT_TRUE(set_->stats()[1].ejected);
  fakes_[0]->set_auto_answer(nullptr);
  ASSERT_EQ(FetchTo("slow"), 0u);  // in flight on r0, which is about to leave

  SetMembers({"r1", "r2", "r2"});  // r0 leaves, r1 stays, r2 joins once
  EXPECT_THAT(Members(), ElementsAre("r1", "r2"));
  const std::vector<ReplicaStats> stats = set_->stats();
  EXPECT_TRUE(stats[0].ejected) << "r1 keeps its ejection";
  EXPECT_EQ(stats[0].failures, 1);
  EXPECT_EQ(made_.size(), 1u) << "only the new name gets an origin";

  // New fetches go to r2 (r1 is ejected), never to the departed r0.
  for (int i = 0; i < 3; ++i) {
    set_->Fetch({.key = absl::StrCat("n", i)}, stop_.get_token(),
                [](absl::StatusOr<FetchResult>) {});
  }
  EXPECT_EQ(made_["r2"]->fetches(), 3);
  EXPECT_EQ(fakes_[0]->fetches(), 2);
  // The departed replica's fetch still completes, and is observed under its name.
  ASSERT_TRUE(fakes_[0]->AnswerValue(0, "v"));  // the first fetch it did not answer inline
  EXPECT_TRUE(results_.back().ok()) << results_.back();
  EXPECT_EQ(observed_.back(), "r0");
}

TEST_F(ReplicaSetMembershipTest, AHedgeAvoidsItsPrimaryEvenAfterTheSetChanged) {
  Make(2);
  ASSERT_EQ(FetchTo("k", 1), 0u);
  SetMembers({"r1", "r0"});  // reordered: indexes moved, the primary did not
  EXPECT_EQ(FetchTo("k", 2), 1u) << "the hedge goes to the other replica";
}

}  // namespace
}  // namespace flightcache
