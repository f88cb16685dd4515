// Placeholder: the option group shared by generate, bench and run (being written; see experiments/options.cpp).
#pragma once
