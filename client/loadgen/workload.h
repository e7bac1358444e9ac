// Workload: which keys the load generator asks for — the "workload" third of the loadgen
// (workload / runner / stats, after CacheLib's cachebench).
//
// KeyDistribution is the parsed --distribution flag:
//   uniform      every key equally likely;
//   zipf:S       key of rank r (0-based) has probability ∝ 1/(r+1)^S, S > 0 (S≈1 is web-like);
//   hot:F[:P]    a hot set of the first ⌈F·N⌉ keys gets a share P of the requests (default
//                P = 1-F, so hot:0.2 is the 80/20 rule), the rest go uniformly to the other keys;
//   sequential   keys 0, 1, ..., N-1 in order, then again from 0: with --requests=N every key is
//                asked for exactly once (bench/e2e/fleet.sh: each key's first Get on a sidecar).
// KeyChooser draws key indices from it (zipf uses Hörmann–Derflinger rejection-inversion: O(1)
// per draw and no table, so --keys may be in the billions). Workload turns indices into key
// names, draws each call's kind from the operation mix (a share of Invalidate calls of one key,
// a share of BatchGet calls of batch_size keys, the rest Get), and names the fresh cold keys of
// the herd scenario.
//
// Thread-safety: KeyChooser is not thread-safe. Workload is thread-safe (an internal lock around
// its chooser; the runner calls it from many completion threads).
//
// Usage:
//   auto dist = KeyDistribution::Parse("zipf:0.99");
//   Workload workload({.num_keys = 100000, .distribution = *dist, .batch_size = 1});
//   std::vector<std::string> keys = workload.NextKeys();
//   Operation op = workload.NextOperation();  // kind and keys of the next call
#ifndef FLIGHTCACHE_CLIENT_LOADGEN_WORKLOAD_H_
#define FLIGHTCACHE_CLIENT_LOADGEN_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "client/loadgen/call_kind.h"

namespace flightcache::loadgen {

struct KeyDistribution {
  enum class Kind { kUniform, kZipf, kHot, kSequential };
  Kind kind = Kind::kUniform;
  double zipf_exponent = 0;      // kZipf: S > 0
  double hot_key_fraction = 0;   // kHot: F in (0, 1)
  double hot_request_share = 0;  // kHot: P in (0, 1]

  // Parses the --distribution syntax above; the error names what is wrong.
  static absl::StatusOr<KeyDistribution> Parse(absl::string_view spec);
  std::string ToString() const;
};

// Samples Zipf-distributed integers in [1, n] with exponent s > 0, by rejection-inversion
// (W. Hörmann, G. Derflinger, "Rejection-inversion to generate variates from monotone discrete
// distributions", 1996). Not thread-safe: it is driven by the caller's generator.
class ZipfSampler final {
 public:
  // REQUIRES: n >= 1, s > 0.
  ZipfSampler(uint64_t n, double s);
  uint64_t Sample(std::mt19937_64& rng) const;

 private:
  double H(double x) const;  // the integral of h
  double HInverse(double x) const;
  double h(double x) const;  // x^-s

  uint64_t n_;
  double s_;
  double h_integral_x1_;
  double h_integral_n_;
  double threshold_;
};

class KeyChooser final {
 public:
  // REQUIRES: num_keys >= 1 and `distribution` as Parse() accepts it.
  KeyChooser(KeyDistribution distribution, uint64_t num_keys, uint64_t seed);

  // A key index in [0, num_keys); index 0 is the most popular for zipf, and hot keys are
  // [0, hot_keys()).
  uint64_t Next();

  uint64_t num_keys() const { return num_keys_; }
  uint64_t hot_keys() const { return hot_keys_; }

 private:
  KeyDistribution distribution_;
  uint64_t num_keys_;
  uint64_t hot_keys_ = 0;
  std::mt19937_64 rng_;
  ZipfSampler zipf_;
  uint64_t next_sequential_ = 0;  // kSequential: the index Next() returns next
};

struct WorkloadOptions {
  uint64_t num_keys = 10000;
  KeyDistribution distribution;
  int batch_size = 1;  // keys per BatchGet call
  // The operation mix, as shares of all calls: Invalidate (one key each) and BatchGet
  // (batch_size keys each); the rest are Get. Their sum is at most 1.
  double invalidate_share = 0;
  double batch_share = 0;
  std::string key_prefix = "key-";
  uint64_t seed = 1;
  // Names the herd scenario's keys. Empty: made from the seed and the time, so every run has
  // its own keys. Several loadgen processes given one nonce ask for the same key in each wave
  // (a herd spread over several servers).
  std::string herd_nonce;

  absl::Status Validate() const;
};

// One call as the workload chose it.
struct Operation {
  CallKind kind = CallKind::kGet;
  std::vector<std::string> keys;  // one key for Get and Invalidate, batch_size for BatchGet
};

class Workload final {
 public:
  // REQUIRES: options.Validate().ok().
  explicit Workload(WorkloadOptions options);
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  // batch_size keys from the distribution (duplicates possible, as with any random batch).
  std::vector<std::string> NextKeys();
  // The next call: its kind drawn from the operation mix, its keys from the distribution.
  Operation NextOperation();

  // The herd scenario's cold key for wave `wave`: unique to this Workload (its seed and the time
  // it was built), so repeated runs against one server never find it cached; or, with
  // options.herd_nonce, the same for every Workload given that nonce.
  std::string HerdKey(int wave) const;

  std::string KeyName(uint64_t index) const;
  const WorkloadOptions& options() const { return options_; }

 private:
  const WorkloadOptions options_;
  const std::string herd_nonce_;
  absl::Mutex mu_;
  KeyChooser chooser_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 mix_rng_ ABSL_GUARDED_BY(mu_);  // the operation mix, apart from the keys
};

}  // namespace flightcache::loadgen

#endif  // FLIGHTCACHE_CLIENT_LOADGEN_WORKLOAD_H_
