// SHA-256 (FIPS 180-4) of bytes and of files, as lowercase hex: how specdec names the exact files a result
// came from (a model, a prompt set, training data) and refuses the evaluation sets as training data.
// Written for this project; checked against the NIST vectors and sha256sum (tests/train/test_sha256.cpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace specdec {

// Incremental hashing: update() any number of times, then digest() once.
class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size) { update({static_cast<const uint8_t*>(data), size}); }
  // The 32-byte digest; the object is spent afterwards (a further update() or digest() throws).
  std::array<uint8_t, 32> digest();

 private:
  void compress(const uint8_t* block);  // one 64-byte block into state_

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;       // bytes in buffer_
  uint64_t total_bytes_ = 0;  // message length so far
  bool finished_ = false;
};

// 64 lowercase hex characters.
std::string to_hex(std::span<const uint8_t> bytes);

// The hex SHA-256 of bytes.
std::string sha256_hex(std::span<const uint8_t> bytes);
std::string sha256_hex(const std::string& bytes);

// The hex SHA-256 of a file's contents, read in 1 MiB blocks. Throws specdec::Error naming the file when
// it cannot be opened or read.
std::string sha256_file(const std::string& path);

}  // namespace specdec
