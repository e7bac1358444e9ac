// TestPki: certificates made at test time with Debian's `openssl` (from PATH), in a temp dir:
// a CA, and leaf certificates it signs for "localhost" (SAN DNS:localhost, IP:127.0.0.1,
// IP:::1), good for both server and client authentication. EC P-256 keys, valid for two days.
//
// Each openssl run is a ChildProcess with a bounded wait; a failure is a gtest failure with
// openssl's output, and the returned paths are then empty.
//
// Thread-safety: one test thread uses an object.
//
// Usage:
//   TestPki pki("test-ca");
//   ASSERT_TRUE(pki.ok());
//   TestPki::Leaf server = pki.Issue("server");
//   ... server.cert_file, server.key_file, pki.ca_file() ...
#ifndef FLIGHTCACHE_TESTS_TESTING_TEST_CERTS_H_
#define FLIGHTCACHE_TESTS_TESTING_TEST_CERTS_H_

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace flightcache::testing {

class TestPki final {
 public:
  struct Leaf {
    std::string cert_file;
    std::string key_file;
  };

  explicit TestPki(const std::string& ca_name) : dir_(MakeTempDir()) {
    ca_file_ = absl::StrCat(dir_, "/ca.crt");
    ca_key_ = absl::StrCat(dir_, "/ca.key");
    if (!RunOpenssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-nodes", "-keyout", ca_key_, "-out", ca_file_, "-days", "2", "-subj",
                     absl::StrCat("/CN=", ca_name), "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"})) {
      ca_file_.clear();
    }
  }

  bool ok() const { return !ca_file_.empty(); }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& dir() const { return dir_; }

  // A new key and a certificate for it, signed by this CA; `name` is the CN and the file stem.
  Leaf Issue(const std::string& name) {
    const std::string stem = absl::StrCat(dir_, "/", name, "-", ++issued_);
    const Leaf leaf{.cert_file = stem + ".crt", .key_file = stem + ".key"};
    const std::string csr = stem + ".csr";
    const std::string extensions = stem + ".ext";
    WriteText(extensions,
              "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
              "extendedKeyUsage=serverAuth,clientAuth\n"
              "basicConstraints=CA:FALSE\n");
    if (!RunOpenssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", leaf.key_file, "-out", csr, "-subj", absl::StrCat("/CN=", name)}) ||
        !RunOpenssl({"x509", "-req", "-in", csr, "-CA", ca_file_, "-CAkey", ca_key_,
                     "-CAcreateserial", "-out", leaf.cert_file, "-days", "2", "-extfile",
                     extensions})) {
      return {};
    }
    return leaf;
  }

 private:
  static void WriteText(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    EXPECT_TRUE(out.good()) << "cannot write " << path;
  }

  static bool RunOpenssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    ChildProcess openssl(args);
    const std::optional<int> code = openssl.WaitForExit(absl::Seconds(60));
    EXPECT_EQ(code, 0) << "openssl " << args[1] << " did not succeed within 60 s:\n"
                       << openssl.out() << openssl.err();
    return code == 0;
  }

  std::string dir_;
  std::string ca_file_;
  std::string ca_key_;
  int issued_ = 0;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_TEST_CERTS_H_
