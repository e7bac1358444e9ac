// JsonObjectWriter: builds one flat-or-nested JSON object as a string, for --json reports,
// the demo origin's stats file and its final stdout line. JsonQuote / AppendJsonQuoted are also
// what flightcache-server's --log-format=json uses for its strings.
//
// Not thread-safe; a small value type. Keys are added in call order and are not de-duplicated.
// Non-finite doubles are written as null (JSON has no NaN).
//
// Usage:
//   JsonObjectWriter json;
//   json.Add("requests", 1200).Add("throughput", 399.7).Add("target", "127.0.0.1:50051");
//   json.AddRaw("latency_ms", other.Build());
//   std::string text = json.Build();  // {"requests":1200,...}
#ifndef FLIGHTCACHE_SUPPORT_JSON_WRITER_H_
#define FLIGHTCACHE_SUPPORT_JSON_WRITER_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace flightcache::support {

// `s` as a quoted JSON string with the required escapes.
std::string JsonQuote(absl::string_view s);
// The same, appended to `out`.
void AppendJsonQuoted(std::string& out, absl::string_view s);

class JsonObjectWriter final {
 public:
  JsonObjectWriter& Add(absl::string_view key, int64_t value);
  JsonObjectWriter& Add(absl::string_view key, int value) { return Add(key, int64_t{value}); }
  JsonObjectWriter& Add(absl::string_view key, uint64_t value);
  JsonObjectWriter& Add(absl::string_view key, double value);
  JsonObjectWriter& Add(absl::string_view key, bool value);
  JsonObjectWriter& Add(absl::string_view key, absl::string_view value);
  JsonObjectWriter& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  // `json` must already be valid JSON (an object, array or literal).
  JsonObjectWriter& AddRaw(absl::string_view key, absl::string_view json);

  std::string Build() const { return body_ + "}"; }

 private:
  void AddKey(absl::string_view key);
  std::string body_ = "{";
};

}  // namespace flightcache::support

#endif  // FLIGHTCACHE_SUPPORT_JSON_WRITER_H_
