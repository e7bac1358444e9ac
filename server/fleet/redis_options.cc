#include "server/fleet/redis_options.h"

#include <optional>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "flightcache/support/file_util.h"

namespace flightcache {
namespace {

constexpr char kWant[] = "(want redis://HOST:PORT[/DB])";

bool HasControlCharacter(absl::string_view text) {
  return absl::c_any_of(text, [](char c) { return absl::ascii_iscntrl(c); });
}

bool AllDigits(absl::string_view text) {
  return absl::c_all_of(text, [](char c) { return absl::ascii_isdigit(c); });
}

absl::Status UrlError(absl::string_view url, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("fleet URL '", url, "': ", what, " ", kWant));
}

}  // namespace

std::string RedisEndpoint::ToString() const {
  const bool ipv6 = absl::StrContains(host, ':');
  return absl::StrCat(ipv6 ? "[" : "", host, ipv6 ? "]" : "", ":", port, "/", db);
}

absl::StatusOr<RedisEndpoint> ParseRedisUrl(absl::string_view url) {
  // Every error quotes the URL: a control character (a newline from a templated manifest) would
  // make a multi-line, forgeable log line, so such a URL is refused first and shown escaped.
  if (HasControlCharacter(url)) {
    return absl::InvalidArgumentError(
        absl::StrCat("fleet URL '", absl::CHexEscape(url), "' contains a control character"));
  }
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "redis://")) {
    if (absl::StartsWith(url, "rediss://") || absl::StartsWith(url, "redis+cluster://")) {
      return UrlError(url, "this scheme is not supported yet");
    }
    return UrlError(url, "not a redis:// URL");
  }
  if (absl::StrContains(rest, '?') || absl::StrContains(rest, '#')) {
    return UrlError(url, "takes no query or fragment");
  }
  absl::string_view authority = rest;
  absl::string_view path;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    authority = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  if (absl::StrContains(authority, '@')) {
    return UrlError(url,
                    "a user or password in the URL would show in the process list; put the "
                    "password in --fleet-password-file");
  }

  RedisEndpoint endpoint;
  absl::string_view host = authority;
  std::optional<absl::string_view> port_text;  // nothing: no ':' at all, so the default port
  if (absl::ConsumePrefix(&host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos || close == 0) {
      return UrlError(url, "has an unterminated or empty [IPv6] host");
    }
    absl::string_view after = host.substr(close + 1);
    host = host.substr(0, close);
    if (!after.empty()) {
      if (!absl::ConsumePrefix(&after, ":")) {
        return UrlError(url, "has text between ']' and the port");
      }
      port_text = after;
    }
  } else if (const size_t colon = host.find(':'); colon != absl::string_view::npos) {
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (absl::StrContains(*port_text, ':')) {
      return UrlError(url, "has an ambiguous host: write IPv6 addresses as [ADDR]");
    }
  }
  if (host.empty()) return UrlError(url, "has no host");
  if (absl::c_any_of(host, [](char c) { return c == ' ' || c == '[' || c == ']'; })) {
    return UrlError(url, absl::StrCat("host '", host, "' is not a host name or address"));
  }
  endpoint.host = std::string(host);
  if (port_text.has_value() && (!AllDigits(*port_text) || port_text->empty() ||
                                !absl::SimpleAtoi(*port_text, &endpoint.port) ||
                                endpoint.port < 1 || endpoint.port > 65535)) {
    return UrlError(url, absl::StrCat("port '", *port_text, "' is not a port in [1, 65535]"));
  }
  if (!path.empty() && (!AllDigits(path) || !absl::SimpleAtoi(path, &endpoint.db))) {
    return UrlError(url, absl::StrCat("database '", path, "' is not a number"));
  }
  return endpoint;
}

absl::StatusOr<std::string> ReadRedisPasswordFile(const std::string& path) {
  return support::ReadSecretFile("fleet password file", path);
}

absl::Status RedisOptions::Validate() const {
  if (endpoint.host.empty()) return absl::InvalidArgumentError("fleet: no Redis host");
  if (endpoint.port < 1 || endpoint.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("fleet: Redis port ", endpoint.port, " is not in [1, 65535]"));
  }
  if (endpoint.db < 0) return absl::InvalidArgumentError("fleet: negative Redis database");
  const auto positive = [](absl::Duration d, absl::string_view name) {
    return d > absl::ZeroDuration()
               ? absl::OkStatus()
               : absl::InvalidArgumentError(absl::StrCat("fleet: ", name, " must be positive, not ",
                                                         absl::FormatDuration(d)));
  };
  for (const absl::Status& s :
       {positive(command_timeout, "command timeout"), positive(connect_timeout, "connect timeout"),
        positive(stall_timeout, "stall timeout"),
        positive(subscriber_probe_interval, "subscriber probe interval"),
        positive(min_backoff, "minimum backoff"), positive(max_backoff, "maximum backoff")}) {
    if (!s.ok()) return s;
  }
  if (max_backoff < min_backoff) {
    return absl::InvalidArgumentError("fleet: maximum backoff is below the minimum backoff");
  }
  if (max_in_flight == 0) return absl::InvalidArgumentError("fleet: max_in_flight is 0");
  return absl::OkStatus();
}

}  // namespace flightcache
