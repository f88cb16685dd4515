// Basic vocabulary types shared by every specdec target.
#pragma once

#include <cstdint>

namespace specdec {

using TokenId = int32_t;

}  // namespace specdec
