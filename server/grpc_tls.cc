#include "server/grpc_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "flightcache/support/file_util.h"

namespace flightcache {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

BioPtr ReadOnlyBio(absl::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// OpenSSL's reason for the last error, and the error queue emptied (it is per thread and would
// otherwise be reported by the next, unrelated, OpenSSL user on this thread).
std::string TakeOpenSslError() {
  const unsigned long code = ERR_peek_last_error();  // NOLINT(google-runtime-int): OpenSSL's type
  ERR_clear_error();
  const char* reason = code == 0 ? nullptr : ERR_reason_error_string(code);
  return reason == nullptr ? "not PEM" : reason;
}

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  return support::ReadBoundedFile(flag, path, kMaxPemFileBytes);
}

}  // namespace

absl::Status CheckCertificates(absl::string_view what, absl::string_view pem) {
  BioPtr bio = ReadOnlyBio(pem);
  int count = 0;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) ++count;
  // The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a block that fails to parse.
  const unsigned long last = ERR_peek_last_error();  // NOLINT(google-runtime-int)
  const bool clean_end =
      ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  const std::string reason = TakeOpenSslError();
  if (count == 0) return absl::InvalidArgumentError(absl::StrCat(what, " holds no certificate"));
  if (!clean_end && last != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": certificate ", count + 1, " does not parse: ", reason));
  }
  return absl::OkStatus();
}

absl::Status CheckKeyMatchesCertificate(absl::string_view key_pem,
                                        absl::string_view cert_chain_pem) {
  BioPtr key_bio = ReadOnlyBio(key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    TakeOpenSslError();  // its reason could quote the key's bytes: not shown
    return absl::InvalidArgumentError("the key file holds no private key (PEM, unencrypted)");
  }
  BioPtr cert_bio = ReadOnlyBio(cert_chain_pem);
  X509Ptr leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate file holds no certificate: ", TakeOpenSslError()));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    TakeOpenSslError();
    return absl::InvalidArgumentError("the key does not match the certificate");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeTlsChannelCredentials(
    const TlsClientFiles& files) {
  const std::string ca_flag = absl::StrCat(files.flag_prefix, "-ca-file");
  const std::string cert_flag = absl::StrCat(files.flag_prefix, "-cert-file");
  const std::string key_flag = absl::StrCat(files.flag_prefix, "-key-file");
  grpc::SslCredentialsOptions options;
  if (!files.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(ca_flag, files.ca_file);
    if (!ca.ok()) return ca.status();
    if (absl::Status s = CheckCertificates(ca_flag, *ca); !s.ok()) return s;
    options.pem_root_certs = *std::move(ca);
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_flag, " and ", key_flag, " go together (mTLS): give both or neither"));
  }
  if (!files.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPem(cert_flag, files.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(key_flag, files.key_file);
    if (!key.ok()) return key.status();
    if (absl::Status s = CheckCertificates(cert_flag, *cert); !s.ok()) return s;
    if (absl::Status s = CheckKeyMatchesCertificate(*key, *cert); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(key_flag, ": ", s.message()));
    }
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(options);
}

}  // namespace flightcache
