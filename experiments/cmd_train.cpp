// placeholder (being written)
#include "core/error.h"
#include "experiments/cli.h"
namespace specdec::cli {
int cmd_train(const std::vector<std::string>&) { throw Error("specdec train: not built yet"); }
}  // namespace specdec::cli
