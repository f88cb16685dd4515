// placeholder (being written)
#include "core/error.h"
#include "experiments/cli.h"
namespace specdec::cli {
int cmd_collect(const std::vector<std::string>&) { throw Error("specdec collect: not built yet"); }
}  // namespace specdec::cli
