// server/origin_factory.cc: --origin URLs.
#include "server/origin_factory.h"

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "flightcache/sim/sim_origin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace flightcache {
namespace {

TEST(OriginFactoryTest, OriginUrlsParse) {
  absl::StatusOr<OriginSpec> sim = ParseOriginUrl("sim://?latency_ms=1");
  ASSERT_TRUE(sim.ok());
  EXPECT_EQ(sim->kind, OriginSpec::Kind::kSim);
  EXPECT_EQ(sim->sim.latency.a, absl::Milliseconds(1));
  ASSERT_TRUE(ParseOriginUrl("sim://").ok());
  absl::StatusOr<OriginSpec> grpc = ParseOriginUrl("grpc://10.0.0.7:9000");
  ASSERT_TRUE(grpc.ok());
  EXPECT_EQ(grpc->kind, OriginSpec::Kind::kGrpc);
  EXPECT_THAT(grpc->grpc_targets, ::testing::ElementsAre("10.0.0.7:9000"));
  absl::StatusOr<OriginSpec> replicas = ParseOriginUrl("grpc://10.0.0.7:9000,[::1]:9001,b:9002");
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  EXPECT_THAT(replicas->grpc_targets,
              ::testing::ElementsAre("10.0.0.7:9000", "[::1]:9001", "b:9002"));
  EXPECT_FALSE(ParseOriginUrl("grpc://a:1,").ok());
  EXPECT_FALSE(ParseOriginUrl("grpc://a:1,,b:2").ok());
  EXPECT_FALSE(ParseOriginUrl("grpc://a:1,b").ok());
  std::string many = "grpc://a:1";
  for (int i = 0; i < 64; ++i) many += ",a:1";
  EXPECT_THAT(std::string(ParseOriginUrl(many).status().message()),
              ::testing::HasSubstr("at most 64"));
  EXPECT_TRUE(ParseOriginUrl("grpc://[::1]:9000").ok());
  EXPECT_TRUE(ParseOriginUrl("grpc://origin.internal:9000").ok());
  EXPECT_FALSE(ParseOriginUrl("grpc://origin.internal").ok());
  EXPECT_FALSE(ParseOriginUrl("http://x:1/p").ok());
}

// grpcs:// is grpc:// over TLS: the same targets (replicas too), each dialled with TLS.
TEST(OriginFactoryTest, GrpcsIsGrpcOverTls) {
  absl::StatusOr<OriginSpec> spec = ParseOriginUrl("grpcs://127.0.0.1:1,[::1]:2");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind, OriginSpec::Kind::kGrpc);
  EXPECT_TRUE(spec->tls);
  EXPECT_THAT(spec->grpc_targets, ::testing::ElementsAre("127.0.0.1:1", "[::1]:2"));
  EXPECT_FALSE(ParseOriginUrl("grpc://127.0.0.1:1")->tls);
  EXPECT_FALSE(ParseOriginUrl("grpcs://127.0.0.1").ok());
  EXPECT_FALSE(ParseOriginUrl("grpcs://127.0.0.1:1/path").ok());
  testing::FakeTimerQueue timers;
  absl::StatusOr<std::unique_ptr<Origin>> origin = CreateOrigin(*spec, timers, {});
  ASSERT_TRUE(origin.ok()) << origin.status();
  EXPECT_EQ((*origin)->Describe(), "grpcs://127.0.0.1:1,grpcs://[::1]:2");
  // Credentials given for a grpc:// origin are not used: it stays plaintext.
  absl::StatusOr<std::unique_ptr<Origin>> plain =
      CreateOrigin(*ParseOriginUrl("grpc://127.0.0.1:1"), timers,
                   {.tls_credentials = grpc::SslCredentials(grpc::SslCredentialsOptions())});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Describe(), "grpc://127.0.0.1:1");
}

// A URL with a control character is refused, and the message shows it escaped on one line.
TEST(OriginFactoryTest, AnOriginUrlWithAControlCharacterIsRefusedOnOneLine) {
  for (const std::string& url :
       {std::string("grpc://origin:9000\nFAKE log line"), std::string("sim://?latency_ms=1\r"),
        std::string("grpc://origin\t:9000"), std::string("sim://?x=\x7f")}) {
    absl::StatusOr<OriginSpec> spec = ParseOriginUrl(url);
    ASSERT_FALSE(spec.ok()) << absl::CHexEscape(url);
    const std::string message(spec.status().message());
    EXPECT_EQ(message.find_first_of("\n\r\t\x7f"), std::string::npos) << message;
    EXPECT_NE(message.find("control character"), std::string::npos) << message;
  }
}

TEST(OriginFactoryTest, ASimOriginDescribesItselfAsAUrlThatParsesBack) {
  const absl::StatusOr<OriginSpec> spec = ParseOriginUrl("sim://?latency_ms=5&ttl_ms=100&seed=9");
  ASSERT_TRUE(spec.ok()) << spec.status();
  testing::FakeTimerQueue timers;
  absl::StatusOr<std::unique_ptr<Origin>> origin = CreateOrigin(*spec, timers, {});
  ASSERT_TRUE(origin.ok()) << origin.status();
  const absl::StatusOr<OriginSpec> again = ParseOriginUrl((*origin)->Describe());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(sim::SimOriginUrl(again->sim), (*origin)->Describe());
}

// Several grpc:// addresses make one origin of replicas, described as the list it was given;
// one address makes a plain gRPC origin.
TEST(OriginFactoryTest, SeveralGrpcAddressesMakeAReplicaSet) {
  testing::FakeTimerQueue timers;
  absl::StatusOr<OriginSpec> spec = ParseOriginUrl("grpc://127.0.0.1:1,127.0.0.1:2");
  ASSERT_TRUE(spec.ok());
  absl::StatusOr<std::unique_ptr<Origin>> origin = CreateOrigin(*spec, timers, {});
  ASSERT_TRUE(origin.ok()) << origin.status();
  const auto* replicas = dynamic_cast<const ReplicaSet*>(origin->get());
  ASSERT_NE(replicas, nullptr);
  EXPECT_EQ(replicas->size(), 2u);
  EXPECT_EQ((*origin)->Describe(), "grpc://127.0.0.1:1,grpc://127.0.0.1:2");

  absl::StatusOr<std::unique_ptr<Origin>> single =
      CreateOrigin(*ParseOriginUrl("grpc://127.0.0.1:1"), timers, {});
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(dynamic_cast<const ReplicaSet*>(single->get()), nullptr);
  EXPECT_FALSE(CreateOrigin(*spec, timers, {}, ReplicaSetOptions{.eject_after = -1}).ok());
}

// grpc://dns:///NAME:PORT: replicas at NAME's addresses, filled in by DnsReplicaWatcher.
TEST(OriginFactoryTest, ADnsNameMakesAnEmptyReplicaSetFilledByAddress) {
  absl::StatusOr<OriginSpec> spec = ParseOriginUrl("grpcs://dns:///origin.svc:9000");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->dns_name, "origin.svc");
  EXPECT_EQ(spec->dns_port, 9000);
  EXPECT_TRUE(spec->tls);
  EXPECT_TRUE(spec->grpc_targets.empty());
  EXPECT_EQ(ParseOriginUrl("grpc://dns:///[::1]:7")->dns_name, "::1");
  const std::pair<const char*, const char*> refused[] = {
      {"grpc://dns://8.8.8.8/origin.svc:9000", "naming a DNS server"},
      {"grpc://dns:///origin.svc", "no port"},
      {"grpc://dns:///origin.svc:0", "not a port"},
      {"grpc://dns:///a:1,b:2", "list no other replica"},
      {"grpc://dns:///a:1/path", "no path"},
      {"grpc://a:1,dns:///b:2", "no path"},
  };
  for (const auto& [url, why] : refused) {
    EXPECT_THAT(std::string(ParseOriginUrl(url).status().message()), ::testing::HasSubstr(why))
        << url;
  }

  testing::FakeTimerQueue timers;
  absl::StatusOr<std::unique_ptr<Origin>> origin = CreateOrigin(*spec, timers, {});
  ASSERT_TRUE(origin.ok()) << origin.status();
  auto* replicas = dynamic_cast<ReplicaSet*>(origin->get());
  ASSERT_NE(replicas, nullptr) << "even one address is a set: more may come";
  EXPECT_EQ(replicas->size(), 0u);
  replicas->SetMembers({"10.0.0.1:9000"}, MakeReplicaMaker(*spec, timers, {}));
  EXPECT_EQ(replicas->Describe(), "grpcs://10.0.0.1:9000");
}

}  // namespace
}  // namespace flightcache
