#include "client/loadgen/workload.h"

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace flightcache::loadgen {
namespace {

TEST(KeyDistributionTest, ParsesTheSpecSyntax) {
  auto uniform = KeyDistribution::Parse("uniform");
  ASSERT_TRUE(uniform.ok());
  EXPECT_EQ(uniform->kind, KeyDistribution::Kind::kUniform);

  auto zipf = KeyDistribution::Parse("zipf:0.99");
  ASSERT_TRUE(zipf.ok());
  EXPECT_EQ(zipf->kind, KeyDistribution::Kind::kZipf);
  EXPECT_DOUBLE_EQ(zipf->zipf_exponent, 0.99);

  auto hot = KeyDistribution::Parse("hot:0.2");
  ASSERT_TRUE(hot.ok());
  EXPECT_EQ(hot->kind, KeyDistribution::Kind::kHot);
  EXPECT_DOUBLE_EQ(hot->hot_key_fraction, 0.2);
  EXPECT_DOUBLE_EQ(hot->hot_request_share, 0.8);

  auto hot2 = KeyDistribution::Parse("hot:0.1:0.95");
  ASSERT_TRUE(hot2.ok());
  EXPECT_DOUBLE_EQ(hot2->hot_request_share, 0.95);
}

TEST(KeyDistributionTest, ParsesSequential) {
  auto sequential = KeyDistribution::Parse("sequential");
  ASSERT_TRUE(sequential.ok());
  EXPECT_EQ(sequential->kind, KeyDistribution::Kind::kSequential);
  EXPECT_EQ(sequential->ToString(), "sequential");
}

TEST(KeyDistributionTest, RejectsBadSpecs) {
  for (const char* bad :
       {"sequential:1", "", "zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:x", "hot:0", "hot:1",
        "hot:1.5", "hot:0.2:0", "hot:0.2:1.1", "uniform:3", "gauss", "hot"}) {
    EXPECT_FALSE(KeyDistribution::Parse(bad).ok()) << bad;
  }
}

std::vector<int64_t> Draw(KeyDistribution d, uint64_t n, int draws, uint64_t seed = 1) {
  KeyChooser chooser(d, n, seed);
  std::vector<int64_t> counts(n, 0);
  for (int i = 0; i < draws; ++i) {
    const uint64_t k = chooser.Next();
    EXPECT_LT(k, n);
    if (k < n) ++counts[k];
  }
  return counts;
}

TEST(KeyChooserTest, UniformIsFlat) {
  const int draws = 200000;
  const std::vector<int64_t> counts = Draw(*KeyDistribution::Parse("uniform"), 10, draws);
  for (const int64_t c : counts) EXPECT_NEAR(static_cast<double>(c) / draws, 0.1, 0.005);
}

// Exact Zipf probabilities of ranks 1..n.
std::vector<double> ZipfPmf(uint64_t n, double s) {
  std::vector<double> p(n);
  double norm = 0;
  for (uint64_t k = 1; k <= n; ++k) norm += std::pow(static_cast<double>(k), -s);
  for (uint64_t k = 1; k <= n; ++k) p[k - 1] = std::pow(static_cast<double>(k), -s) / norm;
  return p;
}

class ZipfSkewTest : public ::testing::TestWithParam<double> {};

TEST_P(ZipfSkewTest, MatchesTheZipfProbabilities) {
  const double s = GetParam();
  const uint64_t n = 1000;
  const int draws = 300000;
  KeyDistribution d;
  d.kind = KeyDistribution::Kind::kZipf;
  d.zipf_exponent = s;
  const std::vector<int64_t> counts = Draw(d, n, draws, 11);
  const std::vector<double> pmf = ZipfPmf(n, s);
  // The popular ranks, each within 5 standard deviations of its expected count.
  for (uint64_t k = 0; k < 10; ++k) {
    const double expected = pmf[k] * draws;
    const double sd = std::sqrt(expected * (1 - pmf[k]));
    EXPECT_NEAR(static_cast<double>(counts[k]), expected, 5 * sd + 1) << "rank " << k + 1;
  }
  // And the mass of the tail half.
  double tail_expected = 0;
  int64_t tail = 0;
  for (uint64_t k = n / 2; k < n; ++k) {
    tail_expected += pmf[k] * draws;
    tail += counts[k];
  }
  EXPECT_NEAR(static_cast<double>(tail), tail_expected, 5 * std::sqrt(tail_expected) + 1);
  // Skew: rank 1 is about 2^s times as popular as rank 2.
  EXPECT_NEAR(static_cast<double>(counts[0]) / counts[1], std::pow(2.0, s), 0.1 * std::pow(2.0, s));
}

INSTANTIATE_TEST_SUITE_P(Exponents, ZipfSkewTest, ::testing::Values(0.5, 0.99, 1.0, 1.2, 2.0));

TEST(KeyChooserTest, ZipfWorksForAHugeKeySpaceWithoutATable) {
  KeyDistribution d;
  d.kind = KeyDistribution::Kind::kZipf;
  d.zipf_exponent = 0.99;
  KeyChooser chooser(d, uint64_t{1} << 40, 5);
  int64_t top = 0;
  for (int i = 0; i < 10000; ++i) {
    const uint64_t k = chooser.Next();
    ASSERT_LT(k, uint64_t{1} << 40);
    if (k == 0) ++top;
  }
  EXPECT_GT(top, 100);  // rank 1 still stands out (about 3.6% here)
}

TEST(KeyChooserTest, HotSetGetsItsShare) {
  const int draws = 200000;
  {
    const std::vector<int64_t> counts = Draw(*KeyDistribution::Parse("hot:0.2"), 1000, draws);
    int64_t hot = 0;
    for (int k = 0; k < 200; ++k) hot += counts[k];
    EXPECT_NEAR(static_cast<double>(hot) / draws, 0.8, 0.01);  // the 80/20 rule
  }
  {
    const std::vector<int64_t> counts = Draw(*KeyDistribution::Parse("hot:0.01:0.9"), 1000, draws);
    int64_t hot = 0;
    for (int k = 0; k < 10; ++k) hot += counts[k];
    EXPECT_NEAR(static_cast<double>(hot) / draws, 0.9, 0.01);
    // Within each set the keys are uniform.
    EXPECT_NEAR(static_cast<double>(counts[0]) / draws, 0.09, 0.005);
    EXPECT_NEAR(static_cast<double>(counts[500]) / draws, 0.1 / 990, 0.0005);
  }
}

TEST(KeyChooserTest, OneKeyIsAlwaysThatKey) {
  for (const char* spec : {"uniform", "zipf:1.1", "hot:0.5"}) {
    const std::vector<int64_t> counts = Draw(*KeyDistribution::Parse(spec), 1, 100);
    EXPECT_EQ(counts[0], 100) << spec;
  }
}

TEST(KeyChooserTest, SequentialVisitsEveryKeyOnceInOrderThenWraps) {
  KeyChooser chooser(*KeyDistribution::Parse("sequential"), 5, 1);
  std::vector<uint64_t> drawn;
  for (int i = 0; i < 7; ++i) drawn.push_back(chooser.Next());
  EXPECT_EQ(drawn, (std::vector<uint64_t>{0, 1, 2, 3, 4, 0, 1}));
}

TEST(WorkloadTest, SequentialGivesEachKeyExactlyOnceToConcurrentCallers) {
  WorkloadOptions options;
  options.num_keys = 4000;
  options.distribution = *KeyDistribution::Parse("sequential");
  Workload workload(options);
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& keys : per_thread) {
    threads.emplace_back([&workload, &keys] {
      for (int i = 0; i < 1000; ++i) keys.push_back(workload.NextOperation().keys.at(0));
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> distinct;
  for (const auto& keys : per_thread) distinct.insert(keys.begin(), keys.end());
  EXPECT_EQ(distinct.size(), 4000u);
  EXPECT_EQ(distinct.count("key-0"), 1u);
  EXPECT_EQ(distinct.count("key-3999"), 1u);
}

TEST(WorkloadTest, ValidateNamesTheFlag) {
  WorkloadOptions options;
  options.num_keys = 0;
  EXPECT_NE(options.Validate().message().find("--keys"), absl::string_view::npos);
  options.num_keys = 1;
  options.batch_size = 0;
  EXPECT_NE(options.Validate().message().find("--batch"), absl::string_view::npos);
}

TEST(WorkloadTest, ValidateChecksTheOperationMix) {
  auto message = [](double invalidate, double batch, int batch_size) {
    WorkloadOptions options;
    options.invalidate_share = invalidate;
    options.batch_share = batch;
    options.batch_size = batch_size;
    return std::string(options.Validate().message());
  };
  EXPECT_EQ(message(0.3, 0.7, 4), "");  // exactly 1 in sum, despite 0.3 + 0.7 > 1.0 in doubles
  EXPECT_EQ(message(1, 0, 1), "");
  EXPECT_EQ(message(0, 1, 2), "");
  EXPECT_NE(message(-0.1, 0, 1).find("--invalidate-share must be in [0, 1]"), std::string::npos);
  EXPECT_NE(message(1.5, 0, 1).find("--invalidate-share"), std::string::npos);
  EXPECT_NE(message(NAN, 0, 1).find("--invalidate-share"), std::string::npos);
  EXPECT_NE(message(0, 2, 4).find("--batch-share must be in [0, 1]"), std::string::npos);
  EXPECT_NE(message(0, NAN, 4).find("--batch-share"), std::string::npos);
  EXPECT_NE(message(0.6, 0.6, 4).find("at most 1"), std::string::npos);
  EXPECT_NE(message(0, 0.5, 1).find("--batch-share needs --batch of at least 2"),
            std::string::npos);
}

TEST(WorkloadTest, OperationsFollowTheMix) {
  WorkloadOptions options;
  options.num_keys = 1000;
  options.batch_size = 5;
  options.invalidate_share = 0.1;
  options.batch_share = 0.3;
  options.seed = 7;
  Workload workload(options);
  constexpr int kDraws = 20000;
  std::map<CallKind, int> counts;
  for (int i = 0; i < kDraws; ++i) {
    const Operation op = workload.NextOperation();
    ++counts[op.kind];
    ASSERT_EQ(op.keys.size(), op.kind == CallKind::kBatchGet ? 5u : 1u);
    for (const std::string& key : op.keys) ASSERT_EQ(key.rfind("key-", 0), 0u) << key;
  }
  // Binomial standard deviations are below 0.4% here; 1.5% is more than 4 of them.
  EXPECT_NEAR(counts[CallKind::kInvalidate] / double{kDraws}, 0.1, 0.015);
  EXPECT_NEAR(counts[CallKind::kBatchGet] / double{kDraws}, 0.3, 0.015);
  EXPECT_NEAR(counts[CallKind::kGet] / double{kDraws}, 0.6, 0.015);
}

TEST(WorkloadTest, PureMixesNeverDrawOtherKinds) {
  WorkloadOptions gets;
  Workload get_workload(gets);
  WorkloadOptions batches;
  batches.batch_size = 3;
  batches.batch_share = 1;
  Workload batch_workload(batches);
  WorkloadOptions invalidations;
  invalidations.invalidate_share = 1;
  Workload invalidate_workload(invalidations);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(get_workload.NextOperation().kind, CallKind::kGet);
    ASSERT_EQ(batch_workload.NextOperation().kind, CallKind::kBatchGet);
    ASSERT_EQ(invalidate_workload.NextOperation().kind, CallKind::kInvalidate);
  }
}

TEST(WorkloadTest, BatchesHaveBatchSizeKeysWithThePrefix) {
  WorkloadOptions options;
  options.num_keys = 50;
  options.batch_size = 7;
  options.key_prefix = "user:";
  Workload workload(options);
  const std::vector<std::string> keys = workload.NextKeys();
  ASSERT_EQ(keys.size(), 7u);
  for (const std::string& key : keys) EXPECT_EQ(key.rfind("user:", 0), 0u) << key;
  EXPECT_EQ(workload.KeyName(12), "user:12");
}

TEST(WorkloadTest, HerdKeysAreFreshPerWaveAndPerRun) {
  WorkloadOptions options;
  options.seed = 1;
  Workload a(options);
  options.seed = 2;
  Workload b(options);
  std::set<std::string> keys;
  for (int wave = 0; wave < 10; ++wave) {
    keys.insert(a.HerdKey(wave));
    keys.insert(b.HerdKey(wave));
  }
  EXPECT_EQ(keys.size(), 20u);
  EXPECT_EQ(a.HerdKey(3), a.HerdKey(3));
}

TEST(WorkloadTest, HerdNonceGivesSeveralWorkloadsTheSameKeys) {
  WorkloadOptions options;
  options.herd_nonce = "run7";
  options.seed = 1;
  Workload a(options);
  options.seed = 2;
  Workload b(options);
  EXPECT_EQ(a.HerdKey(0), b.HerdKey(0));
  EXPECT_EQ(a.HerdKey(19), b.HerdKey(19));
  EXPECT_NE(a.HerdKey(0), a.HerdKey(1));
  EXPECT_NE(a.HerdKey(0).find("run7"), std::string::npos) << a.HerdKey(0);
}

TEST(WorkloadTest, ConcurrentCallersGetValidKeys) {
  WorkloadOptions options;
  options.num_keys = 100;
  options.distribution = *KeyDistribution::Parse("zipf:1.0");
  Workload workload(options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const std::vector<std::string> keys = workload.NextKeys();
        ASSERT_EQ(keys.size(), 1u);
        const int index = std::stoi(keys[0].substr(4));
        ASSERT_GE(index, 0);
        ASSERT_LT(index, 100);
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace
}  // namespace flightcache::loadgen
