// Listener TLS and mTLS (--tls-cert-file, --tls-key-file, --tls-client-ca-file) over loopback
// gRPC: the Sidecar in-process, certificates made by openssl at test time (TestPki), and a
// certificate rotation under a loop of Gets on old and new connections.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/grpc_tls.h"
#include "server/tls_listener.h"
#include "tests/integration/server_test_util.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_certs.h"

namespace flightcache::testing {
namespace {

using ::testing::HasSubstr;

// Replaces `to` by `from`'s contents the way an operator or a Secret update does: a new file
// renamed over the old one, so a reader sees one or the other, whole.
void ReplaceAtomically(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".new";
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(std::rename(tmp.c_str(), to.c_str()), 0) << to;
}

class TlsTest : public SidecarTest {
 protected:
  void SetUp() override {
    SidecarTest::SetUp();
    ASSERT_TRUE(pki_.ok());
    ASSERT_TRUE(other_pki_.ok());
    const TestPki::Leaf leaf = pki_.Issue("server");
    ASSERT_FALSE(leaf.cert_file.empty());
    // The files the server is told about: copies, so that a test can replace them.
    const std::string dir = MakeTempDir();
    files_.cert_file = dir + "/tls.crt";
    files_.key_file = dir + "/tls.key";
    std::filesystem::copy_file(leaf.cert_file, files_.cert_file);
    std::filesystem::copy_file(leaf.key_file, files_.key_file);
  }

  ServerConfig TlsConfig() const {
    ServerConfig config = BaseConfig();
    config.tls = files_;
    return config;
  }

  // A channel of its own connection (a local subchannel pool: gRPC would otherwise share one
  // connection between channels of equal arguments) that trusts `ca_file`, presenting `client`
  // if given. The server's certificate names "localhost".
  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& ca_file,
                                            const TestPki::Leaf& client = {}) const {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        MakeTlsChannelCredentials(
            {.ca_file = ca_file, .cert_file = client.cert_file, .key_file = client.key_file});
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    if (!credentials.ok()) return nullptr;
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", sidecar_->port()), *credentials,
                                     args);
  }

  // A Get on `channel`; the certificate the server presented goes to *peer_cert (PEM) if asked.
  static grpc::Status GetOn(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                            std::string* peer_cert = nullptr) {
    if (channel == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "no channel");
    grpc::ClientContext context;
    SetTimeout(context, absl::Seconds(10));
    v1::GetRequest request;
    request.set_key(key);
    v1::GetResponse response;
    grpc::Status status = v1::Cache::NewStub(channel)->Get(&context, request, &response);
    if (status.ok() && peer_cert != nullptr) {
      const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
      const std::vector<grpc::string_ref> pems = auth->FindPropertyValues("x509_pem_cert");
      *peer_cert = pems.empty() ? "" : std::string(pems.front().data(), pems.front().size());
    }
    return status;
  }

  TestPki pki_{"flightcache-test-ca"};
  TestPki other_pki_{"another-ca"};
  TlsListenerFiles files_;
};

TEST_F(TlsTest, ServesCallersThatTrustItsCaAndRefusesPlaintext) {
  StartServer(TlsConfig());
  std::string peer_cert;
  const grpc::Status tls = GetOn(TlsChannel(pki_.ca_file()), "k", &peer_cert);
  ASSERT_TRUE(tls.ok()) << tls.error_message();
  EXPECT_EQ(peer_cert, ReadFile(files_.cert_file));

  // The fixture's own channel speaks plaintext HTTP/2 to the TLS port.
  v1::GetResponse response;
  const grpc::Status plaintext = Get("k", &response, absl::Seconds(5));
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE) << plaintext.error_message();
  // A caller that trusts another CA does not trust this server.
  const grpc::Status untrusted = GetOn(TlsChannel(other_pki_.ca_file()), "k");
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE) << untrusted.error_message();
}

TEST_F(TlsTest, MtlsRefusesCallersWithoutACertificateOrWithOneFromAnotherCa) {
  ServerConfig config = TlsConfig();
  config.tls.client_ca_file = pki_.ca_file();
  StartServer(config);

  const grpc::Status no_certificate = GetOn(TlsChannel(pki_.ca_file()), "k");
  EXPECT_EQ(no_certificate.error_code(), grpc::StatusCode::UNAVAILABLE)
      << no_certificate.error_message();
  const grpc::Status other_ca = GetOn(TlsChannel(pki_.ca_file(), other_pki_.Issue("client")), "k");
  EXPECT_EQ(other_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << other_ca.error_message();
  const grpc::Status good = GetOn(TlsChannel(pki_.ca_file(), pki_.Issue("client")), "k");
  EXPECT_TRUE(good.ok()) << good.error_message();
}

TEST_F(TlsTest, AKeyThatIsNotTheCertificatesFailsAtStartNamingTheFlag) {
  ServerConfig config = TlsConfig();
  config.tls.key_file = pki_.Issue("another").key_file;
  absl::StatusOr<std::unique_ptr<Sidecar>> sidecar = Sidecar::Start(config);
  ASSERT_FALSE(sidecar.ok());
  EXPECT_EQ(sidecar.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sidecar.status().message(), HasSubstr("--tls-key-file"));
  EXPECT_THAT(sidecar.status().message(), HasSubstr("does not match"));
}

TEST(TlsConfigTest, TheTlsFlagsGoTogether) {
  ServerConfig config;
  config.tls.key_file = "/k.pem";
  EXPECT_THAT(config.Validate().message(), HasSubstr("--tls-cert-file"));
  config.tls = {.client_ca_file = "/ca.pem"};
  EXPECT_THAT(config.Validate().message(), HasSubstr("--tls-client-ca-file"));
  config.tls = {.cert_file = "/c.pem", .key_file = "/k.pem", .client_ca_file = "/ca.pem"};
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
}

// The operator replaces the key, then (2.5 s later: two and more polls in between) the
// certificate. Gets run all along, on one connection opened before and on a new connection each
// time: none fails, so the half-replaced pair was never served, and new connections then get the
// new certificate.
TEST_F(TlsTest, ARotationFailsNoCallAndNewConnectionsSeeTheNewCertificate) {
  StartServer(TlsConfig());
  const std::shared_ptr<grpc::Channel> old_connection = TlsChannel(pki_.ca_file());
  ASSERT_TRUE(GetOn(old_connection, "warm").ok());

  std::atomic<int> calls{0};
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::string last_failure;
  std::string newest_peer_cert;
  std::thread caller([&] {
    for (int i = 0; !stop.load(); ++i) {
      std::string peer_cert;
      const grpc::Status on_new =
          GetOn(TlsChannel(pki_.ca_file()), absl::StrCat("n", i % 50), &peer_cert);
      const grpc::Status on_old = GetOn(old_connection, absl::StrCat("o", i % 50));
      calls += 2;
      absl::MutexLock lock(&mu);
      for (const grpc::Status& s : {on_new, on_old}) {
        if (!s.ok()) {
          ++failures;
          last_failure = s.error_message();
        }
      }
      if (on_new.ok()) newest_peer_cert = peer_cert;
    }
  });

  const TestPki::Leaf next = pki_.Issue("server-next");
  ReplaceAtomically(next.key_file, files_.key_file);
  absl::SleepFor(absl::Milliseconds(2500));  // the half-replaced pair, as the server polls it
  ReplaceAtomically(next.cert_file, files_.cert_file);
  const std::string next_cert = ReadFile(next.cert_file);
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  bool rotated = false;
  while (!rotated && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
    absl::MutexLock lock(&mu);
    rotated = newest_peer_cert == next_cert;
  }
  const int calls_at_rotation = calls.load();
  // Calls on the old connection after the rotation too.
  const absl::Time more = absl::Now() + absl::Seconds(20);
  while (calls.load() < calls_at_rotation + 10 && absl::Now() < more) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  stop = true;
  caller.join();

  EXPECT_TRUE(rotated) << "no new connection saw the new certificate within 20 s";
  EXPECT_GE(calls.load(), calls_at_rotation + 10) << "the caller stalled after the rotation";
  absl::MutexLock lock(&mu);
  EXPECT_EQ(failures.load(), 0) << "of " << calls.load() << " calls; last: " << last_failure;
  EXPECT_GE(calls.load(), 20);
}

// TlsListenerCredentials itself, polled by hand (its own poll is an hour away).
class TlsListenerCredentialsTest : public TlsTest {
 protected:
  std::unique_ptr<TlsListenerCredentials> StartCredentials() {
    absl::StatusOr<std::unique_ptr<TlsListenerCredentials>> tls =
        TlsListenerCredentials::Start(files_, {.poll_interval = absl::Hours(1)});
    EXPECT_TRUE(tls.ok()) << tls.status();
    return tls.ok() ? *std::move(tls) : nullptr;
  }
};

TEST_F(TlsListenerCredentialsTest, AHalfReplacedPairIsNotServedUntilKeyAndCertificateMatch) {
  std::unique_ptr<TlsListenerCredentials> tls = StartCredentials();
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->CheckFilesNow().value_or(true), false) << "nothing changed";

  const TestPki::Leaf next = pki_.Issue("server-next");
  ReplaceAtomically(next.key_file, files_.key_file);
  absl::StatusOr<bool> half = tls->CheckFilesNow();
  EXPECT_THAT(half.status().message(), HasSubstr("does not match"));
  EXPECT_FALSE(tls->CheckFilesNow().ok());
  EXPECT_EQ(tls->rotations(), 0);
  EXPECT_EQ(tls->rejected(), 1) << "counted once, not once per poll";

  ReplaceAtomically(next.cert_file, files_.cert_file);
  EXPECT_EQ(tls->CheckFilesNow().value_or(false), true);
  EXPECT_EQ(tls->rotations(), 1);
  EXPECT_EQ(tls->CheckFilesNow().value_or(true), false);
}

TEST_F(TlsListenerCredentialsTest, AMissingOrForeignFileKeepsThePairServed) {
  std::unique_ptr<TlsListenerCredentials> tls = StartCredentials();
  ASSERT_NE(tls, nullptr);
  std::filesystem::remove(files_.cert_file);
  EXPECT_THAT(tls->CheckFilesNow().status().message(), HasSubstr("--tls-cert-file"));
  ReplaceAtomically(other_pki_.ca_file(), files_.cert_file);  // a certificate, not the key's
  EXPECT_THAT(tls->CheckFilesNow().status().message(), HasSubstr("does not match"));
  EXPECT_EQ(tls->rotations(), 0);
  EXPECT_EQ(tls->rejected(), 2);
}

}  // namespace
}  // namespace flightcache::testing
