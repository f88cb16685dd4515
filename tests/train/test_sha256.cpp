// core/sha256: the NIST example vectors (FIPS 180-4 / the CAVP short and long messages), block-boundary
// lengths fed in odd pieces, and files against the sha256sum tool.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/sha256.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/run.h"

using specdec::Sha256;
using specdec::sha256_file;
using specdec::sha256_hex;

TEST_CASE("sha256: NIST vectors") {
  CHECK(sha256_hex(std::string()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex(std::string("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // The 448-bit message: the padding needs a second block.
  CHECK(sha256_hex(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopq"
                               "rlmnopqrsmnopqrstnopqrstu")) ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: the same digest whatever the pieces update() is fed in") {
  // Lengths around the 55/56/64-byte padding edges, fed whole and in pieces of 1, 7, 63, 64 and 65 bytes.
  for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000}) {
    std::vector<uint8_t> msg(len);
    for (size_t i = 0; i < len; ++i) msg[i] = static_cast<uint8_t>(i * 131 + 7);
    const std::string whole = sha256_hex(msg);
    for (size_t piece : {1, 7, 63, 64, 65}) {
      Sha256 h;
      for (size_t i = 0; i < len; i += piece) h.update(msg.data() + i, std::min(piece, len - i));
      INFO("length " << len << ", pieces of " << piece);
      CHECK(specdec::to_hex(h.digest()) == whole);
    }
  }
}

TEST_CASE("sha256: a spent hasher refuses more input") {
  Sha256 h;
  h.update("x", 1);
  (void)h.digest();
  CHECK_THAT(specdec::test::error_of([&] { h.update("y", 1); }), Catch::Contains("after digest"));
}

TEST_CASE("sha256: files equal sha256sum's digest") {
  const auto dir = specdec::test::scratch_dir("sha256");
  // 3 MiB + 17 bytes: several 1 MiB reads and a short last one.
  const std::string path = (dir / "data.bin").string();
  {
    std::ofstream out(path, std::ios::binary);
    uint32_t x = 12345;
    for (size_t i = 0; i < (size_t{3} << 20) + 17; ++i) {
      x = x * 1664525u + 1013904223u;
      out.put(static_cast<char>(x >> 24));
    }
  }
  const auto r = specdec::test::run("sha256sum " + path);
  REQUIRE(r.exit_code == 0);
  CHECK(sha256_file(path) == r.out.substr(0, 64));

  const std::string empty = (dir / "empty.bin").string();
  std::ofstream(empty, std::ios::binary).close();
  CHECK(sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  // A shared asset whose digest the assets table records.
  CHECK(sha256_file(specdec::test::stories_tokenizer()) ==
        "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312");
}

TEST_CASE("sha256: a missing file is an error naming it") {
  const std::string missing = (specdec::test::scratch_dir("sha256") / "no_such_file").string();
  CHECK_THAT(specdec::test::error_of([&] { sha256_file(missing); }),
             Catch::Contains(missing) && Catch::Contains("cannot open"));
}
