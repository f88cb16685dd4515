// Drafter plugins, end to end: the example plugin (examples/plugin_drafter, built out of tree by the
// plugin_example_build fixture) loads through DrafterRegistry::resolve("plugin:PATH:bigram"), is lossless
// at greedy, and every loading mistake (wrong ABI, missing file, a library without the entry points, a
// duplicate name) is a one-line error naming the file. Then the same through the specdec CLI.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <link.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/stories.h"
#include "tests/support/run.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

using test::error_or_empty;
using test::one_line;

std::string plugin_path() { return std::string(SPECDEC_EXAMPLE_PLUGIN_DIR) + "/libspecdec_example_drafter.so"; }
std::string bad_abi_path() {
  return std::string(SPECDEC_EXAMPLE_PLUGIN_DIR) + "/libspecdec_example_drafter_bad_abi.so";
}
std::string bigram_spec() { return "plugin:" + plugin_path() + ":bigram"; }

// A registry with the built-ins only (the process-wide default registry is left alone).
std::unique_ptr<DrafterRegistry> fresh_registry() {
  auto r = std::make_unique<DrafterRegistry>();
  drafters::register_builtin(*r);
  return r;
}

// The absolute path of a system library this process has loaded (libm: linked by every C++ program), so
// the "not a plugin" case names a real file without hard-coding a distribution's library folder.
std::string loaded_library_path(const char* soname) {
  void* h = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(h != nullptr);
  link_map* lm = nullptr;
  REQUIRE(dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0);
  const std::string path = lm->l_name;
  dlclose(h);
  return path;
}

// Runs a shell command with its output in this binary's own scratch folder (test::run shares one folder
// between all test binaries, which races under ctest -j).
test::RunResult run_cmd(const std::string& cmd) {
  static int n = 0;
  const auto dir = test::scratch_dir("plugins");
  const std::string tag = std::to_string(n++);
  const std::string out = (dir / ("stdout" + tag)).string(), err = (dir / ("stderr" + tag)).string();
  const int status = std::system((cmd + " >" + out + " 2>" + err + " </dev/null").c_str());
  test::RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = test::slurp(out);
  r.err = test::slurp(err);
  return r;
}

using test::stories;

}  // namespace

TEST_CASE("the example plugin is built and resolve() loads it once", "[plugins]") {
  REQUIRE(std::filesystem::exists(plugin_path()));
  auto registry = fresh_registry();
  const size_t n_builtin = registry->list().size();
  const DrafterInfo& info = registry->resolve(bigram_spec());
  CHECK(info.name == "bigram");
  CHECK(!info.help.empty());
  CHECK(info.help.find('\n') == std::string::npos);
  CHECK(registry->list().size() == n_builtin + 1);
  // The same spec again: the plugin is not loaded a second time (which would register bigram twice).
  const DrafterInfo& again = registry->resolve(bigram_spec());
  CHECK(&again == &info);
  CHECK(registry->list().size() == n_builtin + 1);
  CHECK(&registry->resolve("bigram") == &info);
  // Another registry loads the same file again: dlopen hands back the loaded library, which registers anew.
  auto other = fresh_registry();
  CHECK(other->resolve(bigram_spec()).name == "bigram");
  // A name the plugin does not register: the error names the file and lists the plugin's drafters.
  const std::string unknown = error_or_empty([&] { registry->resolve("plugin:" + plugin_path() + ":trigram"); });
  CHECK_THAT(unknown, Catch::Contains(plugin_path()) && Catch::Contains("'trigram'") && Catch::Contains("bigram"));
  CHECK(one_line(unknown));
}

TEST_CASE("bigram proposes the most frequent follower, chained", "[plugins]") {
  auto registry = fresh_registry();
  const DrafterInfo& info = registry->resolve(bigram_spec());
  auto& s = stories();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  auto d = info.factory(env, DrafterOptions({}, "bigram"));
  // 5 was followed by 7 twice and by 9 once; 7 by 5 twice; 9 by 5 once.
  const std::vector<TokenId> prompt = {1, 5, 7, 5, 9, 5, 7, 5};
  d->begin(prompt, {});
  CHECK(d->propose(4).tokens == std::vector<TokenId>{7, 5, 7, 5});
  CHECK(d->propose(4).is_chain());
  CHECK(d->propose(4).q.empty());  // deterministic: one-hot q
  // Emitted 7, 8: 7 -> 8 (once) stays behind 7 -> 5 (twice); 8 has no follower yet: nothing to propose.
  const std::vector<TokenId> step = {7, 8};
  d->accept(step, {});
  CHECK(d->propose(4).tokens.empty());
  const std::vector<TokenId> step2 = {1};
  d->accept(step2, {});  // 8 -> 1, then 1 -> 5 (from the prompt's 1, 5)
  CHECK(d->propose(3).tokens == std::vector<TokenId>{5, 7, 5});
  // Ties go to the most recent follower: 5 -> 9 and 5 -> 7 have been seen 3 times each now.
  const std::vector<TokenId> step3 = {5, 9, 5, 9, 5};
  d->accept(step3, {});
  CHECK(d->propose(1).tokens == std::vector<TokenId>{9});

  auto strict = info.factory(env, DrafterOptions({{"min_count", "3"}}, "bigram"));
  strict->begin(prompt, {});
  CHECK(strict->propose(4).tokens.empty());  // no pair was seen 3 times
}

TEST_CASE("bigram is lossless at greedy for k in {1,2,4,8} and gets drafts accepted", "[plugins][lossless]") {
  auto registry = fresh_registry();
  const DrafterInfo& info = registry->resolve(bigram_spec());
  auto& s = stories();
  auto rule = verifiers::make_greedy_rule();
  for (const std::string text : {"Once upon a time", "Lily and Tom went to the park. They saw", ""}) {
    const auto prompt = s.tok->encode(text, true);
    DecodeOptions base;
    base.max_new_tokens = 128;
    const auto ar = speculative_decode(s.model, nullptr, *rule, prompt, base);
    for (int k : {1, 2, 4, 8}) {
      DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
      auto drafter = info.factory(env, DrafterOptions({}, "bigram"));
      DecodeOptions d = base;
      d.k = k;
      const auto spec = speculative_decode(s.model, drafter.get(), *rule, prompt, d);
      INFO("k = " << k << ", prompt '" << text << "': accepted " << spec.accepted_draft_tokens() << " of "
                  << spec.drafted_tokens() << ", tau " << spec.tau());
      REQUIRE(spec.tokens == ar.tokens);
      CHECK(spec.drafted_tokens() > 0);
      CHECK(spec.accepted_draft_tokens() > 0);
      CHECK(spec.steps.size() < ar.steps.size());
    }
  }
}

TEST_CASE("a plugin's errors reach the host as specdec::Error", "[plugins][badinput]") {
  auto registry = fresh_registry();
  const DrafterInfo& info = registry->resolve(bigram_spec());
  auto& s = stories();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  // check_all_used is the host's function, called from the plugin.
  const std::string unknown_key = error_or_empty([&] {
    info.factory(env, DrafterOptions({{"min_cuont", "2"}}, "bigram"));
  });
  CHECK_THAT(unknown_key, Catch::Contains("unknown key 'min_cuont'") && Catch::Contains("min_count"));
  CHECK(one_line(unknown_key));
  // SPECDEC_CHECK inside the plugin: thrown with the plugin's copy of the type, caught here as specdec::Error.
  const std::string bad_value = error_or_empty([&] {
    info.factory(env, DrafterOptions({{"min_count", "0"}}, "bigram"));
  });
  CHECK_THAT(bad_value, Catch::Contains("min_count >= 1, got 0"));
  CHECK(one_line(bad_value));
}

TEST_CASE("loading mistakes are one-line errors naming the file", "[plugins][badinput]") {
  auto registry = fresh_registry();
  const size_t n_builtin = registry->list().size();

  SECTION("a plugin built for another ABI version names the file and both versions") {
    REQUIRE(std::filesystem::exists(bad_abi_path()));
    const std::string e = error_or_empty([&] { registry->resolve("plugin:" + bad_abi_path() + ":bigram"); });
    CHECK_THAT(e, Catch::Contains(bad_abi_path()));
    CHECK_THAT(e, Catch::Contains("version " + std::to_string(SPECDEC_PLUGIN_ABI_VERSION + 1)));
    CHECK_THAT(e, Catch::Contains("version " + std::to_string(SPECDEC_PLUGIN_ABI_VERSION)));
    CHECK(one_line(e));
    CHECK(registry->list().size() == n_builtin);  // nothing was registered
  }
  SECTION("a missing file") {
    const std::string missing = (test::scratch_dir("plugins") / "no_such_plugin.so").string();
    const std::string e = error_or_empty([&] { registry->resolve("plugin:" + missing + ":bigram"); });
    CHECK_THAT(e, Catch::Contains(missing) && Catch::Contains("cannot load"));
    CHECK(one_line(e));
  }
  SECTION("a shared library that is not a plugin") {
    const std::string libm = loaded_library_path("libm.so.6");
    const std::string e = error_or_empty([&] { registry->resolve("plugin:" + libm + ":bigram"); });
    CHECK_THAT(e, Catch::Contains(libm) && Catch::Contains("specdec_plugin_register"));
    CHECK(one_line(e));
  }
  SECTION("a file that is not a shared library") {
    const std::string text = (test::scratch_dir("plugins") / "not_a_library.so").string();
    std::ofstream(text) << "not an ELF file\n";
    const std::string e = error_or_empty([&] { registry->resolve("plugin:" + text + ":bigram"); });
    CHECK_THAT(e, Catch::Contains(text));
    CHECK(one_line(e));
  }
  SECTION("a malformed spec") {
    const std::string e = error_or_empty([&] { registry->resolve("plugin:" + plugin_path()); });
    CHECK_THAT(e, Catch::Contains("plugin:PATH.so:NAME"));
    CHECK(one_line(e));
  }
  SECTION("a plugin registering a name that already exists is an error") {
    // A drafter of the same name registered first...
    registry->add({"bigram", "a built-in of the same name",
                   [](const DrafterEnv&, const DrafterOptions&) { return std::unique_ptr<Drafter>(); }});
    const std::string e = error_or_empty([&] { registry->resolve(bigram_spec()); });
    CHECK_THAT(e, Catch::Contains("'bigram'") && Catch::Contains("twice"));
    CHECK(one_line(e));
    // ...or a copy of the library (another file, so dlopen loads it anew) registering the same name.
    auto other = fresh_registry();
    other->resolve(bigram_spec());
    const auto copy = test::scratch_dir("plugins") / "libspecdec_example_drafter_copy.so";
    std::filesystem::copy_file(plugin_path(), copy, std::filesystem::copy_options::overwrite_existing);
    const std::string e2 = error_or_empty([&] { other->resolve("plugin:" + copy.string() + ":bigram"); });
    CHECK_THAT(e2, Catch::Contains("'bigram'") && Catch::Contains("twice"));
    CHECK(one_line(e2));
  }
}

TEST_CASE("specdec generate --drafter plugin:... and list-drafters --plugin", "[plugins][cli]") {
  const std::string gen = test::specdec_bin() + " generate --model '" + test::stories_model() + "' --tokenizer '" +
                          test::stories_tokenizer() + "' --prompt 'Once upon a time' -n 96";
  const auto ar = run_cmd(gen);
  REQUIRE(ar.exit_code == 0);
  const auto spec = run_cmd(gen + " --k 4 --drafter '" + bigram_spec() + "' -o min_count=1");
  INFO(spec.err);
  REQUIRE(spec.exit_code == 0);
  CHECK(spec.out == ar.out);  // the same text
  CHECK_THAT(spec.err,
             Catch::Contains("drafter " + bigram_spec() + ", k = 4") && Catch::Contains("output identical to AR"));

  const auto bad_key = run_cmd(gen + " --drafter '" + bigram_spec() + "' -o min_cuont=2");
  CHECK(bad_key.exit_code == 1);
  CHECK_THAT(bad_key.err, Catch::Contains("unknown key 'min_cuont'") && Catch::Contains("min_count"));
  CHECK(test::count_lines(bad_key.err) == 1);
  const auto bad_abi = run_cmd(gen + " --drafter 'plugin:" + bad_abi_path() + ":bigram'");
  CHECK(bad_abi.exit_code == 1);
  CHECK_THAT(bad_abi.err, Catch::Contains(bad_abi_path()) && Catch::Contains("ABI version"));
  CHECK(test::count_lines(bad_abi.err) == 1);

  const auto list = run_cmd(test::specdec_bin() + " list-drafters");
  REQUIRE(list.exit_code == 0);
  auto registry = fresh_registry();
  for (const DrafterInfo* info : registry->list()) {
    CHECK_THAT(list.out, Catch::Contains(info->name) && Catch::Contains(info->help));
  }
  CHECK_THAT(list.out, Catch::Contains("-o key=value"));
  CHECK_THAT(list.out, Catch::Contains("--drafter python:MODULE.CLASS"));
  CHECK_THAT(list.out, !Catch::Contains("bigram"));

  const auto with_plugin = run_cmd(test::specdec_bin() + " list-drafters --plugin " + plugin_path());
  REQUIRE(with_plugin.exit_code == 0);
  CHECK_THAT(with_plugin.out, Catch::Contains("from plugin " + plugin_path()) &&
                                  Catch::Contains("--drafter plugin:" + plugin_path() + ":NAME") &&
                                  Catch::Contains("bigram") && Catch::Contains("min_count"));
  for (const DrafterInfo* info : registry->list()) CHECK_THAT(with_plugin.out, Catch::Contains(info->name));

  const auto missing = run_cmd(test::specdec_bin() + " list-drafters --plugin /nonexistent/libnothing.so");
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Catch::Contains("/nonexistent/libnothing.so"));
  CHECK(test::count_lines(missing.err) == 1);
}

namespace {
std::string misbehaving(const char* mode) {
  return std::string(SPECDEC_TEST_PLUGIN_DIR) + "/libspecdec_test_plugin_" + mode + ".so";
}
}  // namespace

TEST_CASE("the ABI version is checked before any other symbol of the plugin is bound", "[plugins][badinput]") {
  // The plugin reports an older ABI and calls a function no library defines. Loading it with every symbol
  // bound (as before) failed with "undefined symbol" and never reached the version check; loaded lazily,
  // its version is refused first, by name.
  auto registry = fresh_registry();
  const size_t n = registry->list().size();
  const std::string path = misbehaving("old_abi_unresolved");
  REQUIRE(std::filesystem::exists(path));
  const std::string e = error_or_empty([&] { registry->resolve("plugin:" + path + ":anything"); });
  CHECK_THAT(e,
             Catch::Contains(path) && Catch::Contains("ABI version " + std::to_string(SPECDEC_PLUGIN_ABI_VERSION - 1)));
  CHECK_THAT(e, !Catch::Contains("undefined symbol"));
  CHECK(one_line(e));
  CHECK(registry->list().size() == n);
}

TEST_CASE("a registration that fails half-way leaves the registry unchanged and names the file",
          "[plugins][badinput]") {
  auto registry = fresh_registry();
  const size_t n = registry->list().size();
  const std::string path = misbehaving("half_register");
  const std::string e = error_or_empty([&] { registry->resolve("plugin:" + path + ":half_registered"); });
  CHECK_THAT(e, Catch::Contains(path) && Catch::Contains("registration failed") &&
                    Catch::Contains("the second drafter's setup failed"));
  CHECK(one_line(e));
  CHECK(registry->list().size() == n);
  CHECK_FALSE(registry->contains("half_registered"));
}

TEST_CASE("a plugin drafter whose factory returns nothing is an error naming it", "[plugins][badinput]") {
  auto registry = fresh_registry();
  const std::string path = misbehaving("null_factory");
  const DrafterInfo& info = registry->resolve("plugin:" + path + ":null_drafter");
  const std::string e = error_or_empty([&] { make_drafter(info, DrafterEnv{}, DrafterOptions()); });
  CHECK_THAT(e, Catch::Contains("null_drafter") && Catch::Contains("returned no drafter"));
  // A name the plugin does not register: the error names the file and what it does register.
  auto other = fresh_registry();
  const std::string missing = error_or_empty([&] { other->resolve("plugin:" + path + ":nope"); });
  CHECK_THAT(missing, Catch::Contains(path) && Catch::Contains("no drafter 'nope'") && Catch::Contains("null_drafter"));
}
