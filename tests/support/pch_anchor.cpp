// The one source of specdec_test_pch (tests/CMakeLists.txt): the target exists to build the Catch2
// precompiled header that every CPU test reuses, under a test's own flags.
int main() { return 0; }
