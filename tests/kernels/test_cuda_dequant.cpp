// The CUDA dequantize against cpu::dequantize_row (then fp32 -> f16 / bf16, round to nearest even) for
// every source and output dtype over awkward shapes. Exact: decoding and one rounding to the output type
// are deterministic, so the GPU must give the CPU's bits. gpu label: skipped without a device.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/device.h"
#include "tests/support/cuda_buffer.h"
#include "tests/support/errors.h"
#include "tests/support/quant_blocks.h"

namespace {

using specdec::cpu::DType;
using namespace specdec::test;
namespace cpu = specdec::cpu;
namespace cuda = specdec::cuda;

// The expected output bits of element i: the CPU's float, rounded to out_t.
uint32_t expected(float v, DType out_t) {
  if (out_t == DType::F32) return bits(v);
  return out_t == DType::F16 ? cpu::fp32_to_fp16(v) : bf16_ref(v);
}

uint32_t got_at(const std::vector<uint8_t>& out, DType out_t, int64_t i) {
  if (out_t == DType::F32) {
    uint32_t u;
    std::memcpy(&u, &out[4 * i], 4);
    return u;
  }
  uint16_t h;
  std::memcpy(&h, &out[2 * i], 2);
  return h;
}

// Runs the GPU dequantize into a buffer at byte offset `shift` (0: aligned, vector stores; one element:
// element stores) and compares with the CPU, bit for bit.
void check(DType src_t, DType out_t, int64_t rows, int64_t cols, size_t shift) {
  // src (rows, cols) of dtype src_t from random data; f16 / bf16 sources hold arbitrary finite values.
  const auto src = random_row(src_t, rows * cols, static_cast<uint32_t>(rows * 1000 + cols), 2.f);
  std::vector<float> ref(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    cpu::dequantize_row(&ref[r * cols], src.data() + cpu::row_bytes(src_t, r * cols), src_t, cols);
  const size_t osize = out_t == DType::F32 ? 4 : 2;
  const DeviceBuffer<uint8_t> dsrc(src);
  // The output starts as NaN in every dtype (bytes ff 7f: f16/bf16 0x7fff, f32 0x7fff7fff; shift is a whole
  // number of elements), so an element the kernel left unwritten can never equal a finite reference.
  std::vector<uint8_t> fill(ref.size() * osize + shift);
  for (size_t i = 0; i < fill.size(); ++i) fill[i] = i % 2 ? 0x7f : 0xff;
  DeviceBuffer<uint8_t> dout(fill);
  cuda::dequantize(dout.get() + shift, out_t, dsrc.get(), src_t, rows, cols, nullptr);
  cuda::device_synchronize();
  auto all = dout.download();
  const std::vector<uint8_t> out(all.begin() + static_cast<std::ptrdiff_t>(shift), all.end());
  for (size_t i = 0; i < ref.size(); ++i) {
    INFO(cpu::dtype_info(src_t).name << " -> " << cpu::dtype_info(out_t).name << " " << rows << "x" << cols << " shift "
                                     << shift << " i=" << i << " ref " << ref[i]);
    REQUIRE(got_at(out, out_t, static_cast<int64_t>(i)) == expected(ref[i], out_t));
  }
}

}  // namespace

TEST_CASE("cuda dequantize equals cpu::dequantize_row, bit for bit, every source and output dtype",
          "[gpu][kernels][dequant]") {
  for (DType out_t : {DType::F32, DType::F16, DType::BF16}) {
    for (DType src_t : {DType::Q8_0, DType::Q4_0, DType::Q4_1})
      for (int64_t cols : {32, 64, 576, 1536})
        for (int64_t rows : {1, 3, 7, 37}) check(src_t, out_t, rows, cols, 0);
    for (DType src_t : {DType::F32, DType::F16, DType::BF16})
      for (int64_t cols : {1, 3, 37, 1002, 4099})
        for (int64_t rows : {1, 3, 7}) check(src_t, out_t, rows, cols, 0);
  }
}

TEST_CASE("cuda dequantize: unaligned outputs take element stores with the same bits", "[gpu][kernels][dequant]") {
  for (DType out_t : {DType::F32, DType::F16, DType::BF16}) {
    const size_t shift = out_t == DType::F32 ? 4 : 2;
    for (DType src_t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::F32, DType::F16, DType::BF16})
      check(src_t, out_t, 5, 64, shift);
  }
}

TEST_CASE("cuda dequantize: empty is a no-op; unsupported dtypes throw, naming the dtype", "[gpu][kernels][dequant]") {
  DeviceBuffer<uint8_t> buf(std::vector<uint8_t>(64, 0xab));
  cuda::dequantize(buf.get(), DType::F32, buf.get(), DType::Q8_0, 0, 32, nullptr);
  cuda::dequantize(buf.get(), DType::F16, buf.get(), DType::F32, 3, 0, nullptr);
  cuda::device_synchronize();
  for (uint8_t b : buf.download()) REQUIRE(b == 0xab);

  using Catch::Matchers::Contains;
  using specdec::test::error_of;
  const auto call = [&](DType out_t, DType src_t, int64_t cols) {
    return error_of([&] { cuda::dequantize(buf.get(), out_t, buf.get(), src_t, 1, cols, nullptr); });
  };
  CHECK_THAT(call(DType::F32, DType::Q6_K, 256), Contains("q6_k"));
  CHECK_THAT(call(DType::F32, DType::Q4_K, 256), Contains("q4_k"));
  CHECK_THAT(call(DType::Q8_0, DType::F32, 32), Contains("q8_0"));
  CHECK_THAT(call(DType::F32, DType::Q4_0, 48), Contains("multiple of 32"));
}
