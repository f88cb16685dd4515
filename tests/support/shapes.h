// The awkward shapes the kernel parity tests sweep (CUDA against the CPU twin, CPU ops against their
// references): one list per kind of extent, so every kernel meets the same edge cases and a new case
// reaches every test. Each value is there for a reason, named beside it.
#pragma once

namespace specdec::test::shapes {

// Rows of a block (tokens in one forward): decode (1), the smallest block (2), a chain of k = 6 and of
// k = 8 plus its bonus row (7, 9), one past a 32-row tile (33), a prefill over several tiles (300).
inline constexpr int kBlockRows[] = {1, 2, 7, 9, 33, 300};

// Vector widths (hidden sizes, rows of a norm): below a warp (1, 3, 7), odd (37), not a multiple of 4, 8
// or 32 (1002), just past 4096 (4099).
inline constexpr int kWidths[] = {1, 3, 7, 37, 1002, 4099};

// Vocabulary sizes (softmax, top-k, sampling rows): the same edge cases, then Llama-2's 32,000 and
// SmolLM2's 49,152.
inline constexpr int kVocabs[] = {1, 3, 7, 37, 1002, 4099, 32000, 49152};

// Attention head dimensions: below a warp (8), the common 64 and 128, and 72 (not a power of two).
inline constexpr int kHeadDims[] = {8, 64, 72, 128};

}  // namespace specdec::test::shapes
