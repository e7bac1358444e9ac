// A grpcs:// origin (--origin-tls-ca-file, --origin-tls-cert-file, --origin-tls-key-file) over
// loopback: the Sidecar in-process, TestOrigins serving TLS with certificates from TestPki.
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tls_listener.h"
#include "tests/integration/server_test_util.h"
#include "tests/testing/test_certs.h"

namespace flightcache::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class OriginTlsTest : public SidecarTest {
 protected:
  // The fixture's origin_ is replaced by one that serves TLS (and, with `require_client_ca`,
  // asks for a client certificate signed by it).
  void StartTlsOrigin(const std::string& require_client_ca = "") {
    origin_ = StartTlsTestOrigin(require_client_ca);
  }

  std::unique_ptr<TestOrigin> StartTlsTestOrigin(const std::string& require_client_ca = "") {
    const TestPki::Leaf leaf = pki_.Issue("origin");
    absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> tls =
        TlsListenerCredentials::Start({.cert_file = leaf.cert_file,
                                       .key_file = leaf.key_file,
                                       .client_ca_file = require_client_ca});
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return nullptr;
    std::unique_ptr<TestOrigin> origin = TestOrigin::Start(0, (*tls)->credentials());
    origin_tls_.push_back(*std::move(tls));
    return origin;
  }

  // A sidecar that trusts the test CA, loading from origin_ over TLS.
  ServerConfig TlsConfig() const {
    ServerConfig config = BaseConfig();
    config.origin = origin_->tls_url();
    config.origin_tls.ca_file = pki_.ca_file();
    return config;
  }

  void TearDown() override {
    SidecarTest::TearDown();
    origin_tls_.clear();  // after the origins that serve them
  }

  TestPki pki_{"origin-test-ca"};
  std::vector<std::unique_ptr<TlsListenerCredentials>> origin_tls_;
};

TEST_F(OriginTlsTest, AGetIsLoadedFromAnOriginOverTls) {
  ASSERT_TRUE(pki_.ok());
  StartTlsOrigin();
  ServerConfig config = TlsConfig();
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.value(), TestOrigin::DefaultValue("k", 1));
  EXPECT_EQ(response.source(), v1::SOURCE_LOADED);
  EXPECT_EQ(origin_->fetches("k"), 1);

  // The same origin without TLS: its handshake never completes, no fetch reaches it.
  config.origin = origin_->url();
  config.origin_tls = {.flag_prefix = "--origin-tls"};
  sidecar_->Shutdown();
  StartServer(config);
  const grpc::Status plaintext = Get("k2", &response);
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE) << plaintext.error_message();
  EXPECT_EQ(origin_->fetches("k2"), 0);
}

// grpcs://A,B: every replica is dialled over TLS, and both serve fetches.
TEST_F(OriginTlsTest, ReplicasAreDialledOverTlsToo) {
  ASSERT_TRUE(pki_.ok());
  StartTlsOrigin();
  std::unique_ptr<TestOrigin> second = StartTlsTestOrigin();
  ASSERT_NE(second, nullptr);
  ServerConfig config = TlsConfig();
  config.origin = absl::StrCat(origin_->tls_url(), ",", second->address());
  StartServer(config);
  for (int i = 0; i < 10; ++i) {
    v1::GetResponse response;
    const grpc::Status status = Get(absl::StrCat("k", i), &response);
    ASSERT_TRUE(status.ok()) << "k" << i << ": " << status.error_message();
  }
  EXPECT_GT(origin_->fetches(), 0);
  EXPECT_GT(second->fetches(), 0);
  EXPECT_EQ(origin_->fetches() + second->fetches(), 10);
  const std::string text = sidecar_->metrics().ExpositionText();
  EXPECT_THAT(text, HasSubstr(absl::StrCat("replica=\"grpcs://", second->address(), "\"")));
  sidecar_->Shutdown();
  sidecar_.reset();
}

// The origin's certificate is signed by a CA the sidecar does not trust: the caller's
// UNAVAILABLE says the certificate failed verification (the handshake's own words, from
// OpenSSL), so an operator can tell it from an origin that is down.
TEST_F(OriginTlsTest, AWrongCaGivesUnavailableNamingTheCertificateProblem) {
  ASSERT_TRUE(pki_.ok());
  StartTlsOrigin();
  TestPki other("another-ca");
  ASSERT_TRUE(other.ok());
  ServerConfig config = TlsConfig();
  config.origin_tls.ca_file = other.ca_file();
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status status = Get("k", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr(origin_->tls_url()));
  EXPECT_THAT(status.error_message(), HasSubstr("certificate verify failed"));
  EXPECT_EQ(origin_->fetches(), 0);

  // No CA file: the system's roots, which do not know the test CA either.
  config.origin_tls.ca_file.clear();
  sidecar_->Shutdown();
  StartServer(config);
  const grpc::Status system_roots = Get("k", &response);
  EXPECT_EQ(system_roots.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(system_roots.error_message(), HasSubstr("certificate verify failed"));
  EXPECT_EQ(origin_->fetches(), 0);
}

// An origin that requires client certificates (mTLS) refuses a sidecar without
// --origin-tls-cert-file and serves one with a certificate its CA signed.
TEST_F(OriginTlsTest, AnOriginRequiringClientCertificatesServesOnlyASidecarWithOne) {
  ASSERT_TRUE(pki_.ok());
  StartTlsOrigin(/*require_client_ca=*/pki_.ca_file());
  ServerConfig config = TlsConfig();
  StartServer(config);
  v1::GetResponse response;
  const grpc::Status refused = Get("k", &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_EQ(origin_->fetches(), 0);

  const TestPki::Leaf client = pki_.Issue("sidecar");
  config.origin_tls.cert_file = client.cert_file;
  config.origin_tls.key_file = client.key_file;
  sidecar_->Shutdown();
  StartServer(config);
  const grpc::Status served = Get("k", &response);
  ASSERT_TRUE(served.ok()) << served.error_message();
  EXPECT_EQ(response.value(), TestOrigin::DefaultValue("k", 1));
  EXPECT_EQ(origin_->fetches("k"), 1);
}

// Files that cannot serve fail the start, naming the flag; the paths are shown, never a key.
TEST_F(OriginTlsTest, BadFilesFailTheStartNamingTheFlag) {
  ASSERT_TRUE(pki_.ok());
  StartTlsOrigin();
  const TestPki::Leaf a = pki_.Issue("a");
  const TestPki::Leaf b = pki_.Issue("b");
  ServerConfig config = TlsConfig();
  config.origin_tls.cert_file = a.cert_file;
  config.origin_tls.key_file = b.key_file;  // not a's key
  absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
  EXPECT_THAT(std::string(sidecar.status().message()), StartsWith("--origin-tls-key-file: "));
  config.origin_tls = {.flag_prefix = "--origin-tls", .ca_file = "/nonexistent/ca.pem"};
  sidecar = Sidecar::Start(config);
  EXPECT_THAT(std::string(sidecar.status().message()),
              StartsWith("--origin-tls-ca-file '/nonexistent/ca.pem': "));
  config.origin_tls.ca_file = a.key_file;  // not a certificate
  sidecar = Sidecar::Start(config);
  EXPECT_EQ(sidecar.status().message(), "--origin-tls-ca-file holds no certificate");
}

}  // namespace
}  // namespace flightcache::testing
