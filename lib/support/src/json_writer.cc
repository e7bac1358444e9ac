#include "flightcache/support/json_writer.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flightcache::support {

void AppendJsonQuoted(std::string& out, absl::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string JsonQuote(absl::string_view s) {
  std::string out;
  AppendJsonQuoted(out, s);
  return out;
}

void JsonObjectWriter::AddKey(absl::string_view key) {
  if (body_.size() > 1) body_ += ',';
  body_ += JsonQuote(key);
  body_ += ':';
}

JsonObjectWriter& JsonObjectWriter::Add(absl::string_view key, int64_t value) {
  AddKey(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Add(absl::string_view key, uint64_t value) {
  AddKey(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Add(absl::string_view key, double value) {
  AddKey(key);
  if (std::isfinite(value)) {
    absl::StrAppendFormat(&body_, "%.6g", value);
  } else {
    body_ += "null";
  }
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Add(absl::string_view key, bool value) {
  AddKey(key);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObjectWriter& JsonObjectWriter::Add(absl::string_view key, absl::string_view value) {
  AddKey(key);
  body_ += JsonQuote(value);
  return *this;
}

JsonObjectWriter& JsonObjectWriter::AddRaw(absl::string_view key, absl::string_view json) {
  AddKey(key);
  body_.append(json.data(), json.size());
  return *this;
}

}  // namespace flightcache::support
