#include "server/admin_guard.h"

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(IsLocalPeerTest, LoopbackAndUnixSocketPeersAreLocal) {
  for (const char* peer :
       {"ipv4:127.0.0.1:5000", "ipv4:127.3.2.1:1", "ipv6:[::1]:5000", "ipv6:%5B::1%5D:5000",
        "ipv6:[::ffff:127.0.0.1]:5000", "unix:/run/flightcache.sock", "unix-abstract:fc"}) {
    EXPECT_TRUE(IsLocalPeer(peer)) << peer;
  }
}

TEST(IsLocalPeerTest, EveryOtherPeerIsNot) {
  for (const char* peer :
       {"ipv4:10.0.0.7:5000", "ipv4:128.0.0.1:5000", "ipv4:192.0.2.2:1", "ipv6:[::2]:5000",
        "ipv6:[fe80::1%25eth0]:5000", "ipv6:[::ffff:10.0.0.1]:5000", "ipv4:", "ipv6:[::1",
        "ipv6:::1:5000", "ipv4:127.0.0.1", "", "127.0.0.1:5000", "unknown:127.0.0.1:5000"}) {
    EXPECT_FALSE(IsLocalPeer(peer)) << peer;
  }
}

TEST(AdminGuardTest, WithoutATokenOnlyLocalPeersMayCall) {
  const AdminGuard guard = AdminGuard::LocalPeersOnly();
  EXPECT_FALSE(guard.has_token());
  EXPECT_TRUE(guard.Check("ipv4:127.0.0.1:5000", std::nullopt).ok());
  EXPECT_TRUE(guard.Check("unix:/run/fc.sock", "Bearer anything").ok());
  const absl::Status remote = guard.Check("ipv4:10.0.0.7:5000", std::nullopt);
  EXPECT_EQ(remote.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(remote.message(), HasSubstr("ipv4:10.0.0.7:5000"));
  EXPECT_THAT(remote.message(), HasSubstr("--admin-token-file"));
}

TEST(AdminGuardTest, WithATokenEveryPeerNeedsIt) {
  const std::string token = "s3cret-Token_42";
  const AdminGuard guard = AdminGuard::WithToken(token);
  EXPECT_TRUE(guard.has_token());
  EXPECT_TRUE(guard.Check("ipv4:10.0.0.7:5000", "Bearer " + token).ok());
  EXPECT_TRUE(guard.Check("ipv4:127.0.0.1:5000", "Bearer " + token).ok());
  struct Case {
    const char* peer;
    std::optional<std::string> authorization;
    const char* why;
  };
  for (const Case& c : {Case{"ipv4:127.0.0.1:1", std::nullopt, "send the metadata"},
                        Case{"ipv4:10.0.0.7:1", std::nullopt, "send the metadata"},
                        Case{"ipv4:10.0.0.7:1", "Bearer wrong", "is wrong"},
                        Case{"ipv4:10.0.0.7:1", "Bearer " + token + "x", "is wrong"},
                        Case{"ipv4:10.0.0.7:1", "Bearer s3cret", "is wrong"},
                        Case{"ipv4:10.0.0.7:1", "Bearer ", "is wrong"},
                        Case{"ipv4:10.0.0.7:1", token, "not 'Bearer <token>'"},
                        Case{"ipv4:10.0.0.7:1", "bearer " + token, "not 'Bearer <token>'"},
                        Case{"ipv4:10.0.0.7:1", "Basic " + token, "not 'Bearer <token>'"}}) {
    std::optional<absl::string_view> authorization;
    if (c.authorization) authorization = *c.authorization;
    const absl::Status s = guard.Check(c.peer, authorization);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << c.authorization.value_or("(none)");
    EXPECT_THAT(s.message(), HasSubstr(c.why));
    EXPECT_THAT(s.message(), Not(HasSubstr(token))) << "the token is a secret";
  }
}

}  // namespace
}  // namespace flightcache
