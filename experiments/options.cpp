// Placeholder: the option group shared by generate, bench and run (being written).
#include "experiments/options.h"
