// A one-node Slurm cluster for tests, from Debian's slurm-wlm: munged (with a generated key), slurmctld and
// slurmd, all children of the test process, with a generated slurm.conf (free ports, proctrack/linuxproc,
// task/none, no cgroups, no accounting) in a temporary folder. The test process becomes a child subreaper,
// so every process the daemons start (slurmstepd, the jobs) is its descendant, and stop() leaves none.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run.h"

namespace specdec::test {

// argv[0] on PATH or in the sbin folders (the daemons live in /usr/sbin, not always on a user's PATH);
// "" when absent.
inline std::string find_program(const std::string& name) {
  std::string dirs = std::getenv("PATH") ? std::getenv("PATH") : "";
  dirs += ":/usr/sbin:/sbin:/usr/local/sbin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::filesystem::path p = std::filesystem::path(dirs.substr(start, end - start)) / name;
    if (end > start && ::access(p.c_str(), X_OK) == 0) return p.string();
    start = end + 1;
  }
  return "";
}

// The pids whose parent is `parent` (from /proc/PID/stat: "pid (comm) state ppid ...").
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = slurp((e.path() / "stat").string());
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %d", &state, &ppid) == 2 && ppid == parent)
      out.push_back(std::stoi(name));
  }
  return out;
}

// Every process below this one.
inline std::vector<pid_t> descendants() {
  std::vector<pid_t> out = children_of(::getpid());
  for (size_t i = 0; i < out.size(); ++i) {
    const auto more = children_of(out[i]);
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

// A TCP port nothing listens on now (the kernel's pick for port 0); `avoid` is not returned.
inline int free_port(int avoid = 0) {
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    if (fd >= 0) ::close(fd);
    if (port != 0 && port != avoid) return port;
  }
}

// Polls `done` every 200 ms until it holds or `seconds` passed; returns whether it held.
template <typename F>
bool wait_until(F&& done, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

class SlurmCluster {
 public:
  static constexpr const char* kPartition = "specdec";

  // The programs a cluster needs, or the first one missing (then Slurm cannot start here).
  static std::string missing_program() {
    for (const char* p : {"munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo"})
      if (find_program(p).empty()) return p;
    return "";
  }

  // dir: an empty folder with a short path (munged's socket lives there; a unix socket path is < 108 bytes).
  explicit SlurmCluster(std::filesystem::path dir) : dir_(std::move(dir)) {}
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;
  ~SlurmCluster() { stop(); }

  // Starts the daemons and waits for the node to be idle. Returns "" then, else why the cluster did not
  // come up (what the daemons logged last); call stop() in both cases.
  std::string start() {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    std::filesystem::create_directories(dir_ / "state");
    std::filesystem::create_directories(dir_ / "spool");
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all);
    write_munge_key();
    write_conf();
    // Clients (sbatch, squeue, scontrol) and the daemons find the cluster through SLURM_CONF; the jobs get
    // the submitter's environment.
    ::setenv("SLURM_CONF", conf().c_str(), 1);
    spawn("munged", {find_program("munged"), "--foreground", "--force", "--socket=" + socket(),
                     "--key-file=" + (dir_ / "munge.key").string(), "--pid-file=" + (dir_ / "munged.pid").string(),
                     "--log-file=" + (dir_ / "munged.log").string(), "--seed-file=" + (dir_ / "munged.seed").string()});
    if (!wait_until([&] { return std::filesystem::exists(socket()) || !alive(); }, 10) || !alive())
      return "munged did not start: " + last_lines();
    spawn("slurmctld", {find_program("slurmctld"), "-D", "-f", conf()});
    spawn("slurmd", {find_program("slurmd"), "-D", "-f", conf(), "-N", node_});
    const bool idle =
        wait_until([&] { return !alive() || run("sinfo -h -o %t -p " + std::string(kPartition)).out == "idle\n"; }, 30);
    if (!idle || !alive()) return "the node did not come up idle in 30 s: " + last_lines();
    return "";
  }

  // Cancels every job, stops the daemons (SIGTERM, then SIGKILL after 10 s) and kills and reaps whatever
  // process is left below the test process. Idempotent.
  void stop() {
    if (daemons_.empty()) return;
    if (alive()) {
      run("scancel -p " + std::string(kPartition));
      wait_until([] { return run("squeue -h -p " + std::string(kPartition)).out.empty(); }, 10);
    }
    for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it) terminate(*it);
    daemons_.clear();
    // slurmstepd and job processes the daemons left (reparented to us, the subreaper).
    for (int round = 0; round < 50; ++round) {
      const auto left = descendants();
      if (left.empty()) break;
      for (pid_t p : left) ::kill(p, SIGKILL);
      for (pid_t p : left) ::waitpid(p, nullptr, WNOHANG);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::unsetenv("SLURM_CONF");
  }

  // The daemons' logs, last lines (for a failure's message).
  std::string last_lines(size_t n = 6) const {
    std::string out;
    for (const char* log : {"munged.log", "slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"}) {
      const std::string text = slurp((dir_ / log).string());
      size_t pos = text.size();
      for (size_t i = 0; i <= n && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
      if (!text.empty()) out += std::string(" | ") + log + ": " + text.substr(pos == std::string::npos ? 0 : pos + 1);
    }
    return out;
  }

  std::string conf() const { return (dir_ / "slurm.conf").string(); }

 private:
  struct Daemon {
    std::string name;
    pid_t pid;
    bool exited = false;  // reaped already (its pid may belong to another process now)
  };

  std::string socket() const { return (dir_ / "munge.socket").string(); }

  void write_munge_key() const {
    std::random_device rd;
    std::string key(1024, '\0');
    for (char& c : key) c = static_cast<char>(rd());
    const auto path = dir_ / "munge.key";
    std::ofstream(path, std::ios::binary) << key;
    std::filesystem::permissions(path, std::filesystem::perms::owner_read);
  }

  void write_conf() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node_ = std::string(host).substr(0, std::string(host).find('.'));
    const int ctld_port = free_port(), slurmd_port = free_port(ctld_port);
    const std::string d = dir_.string();
    const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
    std::ofstream(conf()) << "ClusterName=specdec-test\n"
                          << "SlurmctldHost=" << node_ << "(127.0.0.1)\n"
                          << "SlurmctldPort=" << ctld_port << "\nSlurmdPort=" << slurmd_port << "\n"
                          << "SlurmUser=root\nSlurmdUser=root\n"
                          << "AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket=" << socket() << "\n"
                          << "StateSaveLocation=" << d << "/state\nSlurmdSpoolDir=" << d << "/spool\n"
                          << "SlurmctldPidFile=" << d << "/slurmctld.pid\nSlurmdPidFile=" << d << "/slurmd.pid\n"
                          << "SlurmctldLogFile=" << d << "/slurmctld.log\nSlurmdLogFile=" << d << "/slurmd.log\n"
                          << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
                          << "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
                          << "JobCompType=jobcomp/none\nMpiDefault=none\nSwitchType=switch/none\nMailProg=/bin/true\n"
                          << "SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
                          << "ReturnToService=2\n"
                          << "NodeName=" << node_ << " NodeAddr=127.0.0.1 CPUs=" << cpus << " State=UNKNOWN\n"
                          << "PartitionName=" << kPartition << " Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n";
  }

  // fork + exec with stdout and stderr in DIR/NAME.out; the daemon gets SIGKILL if the test process dies
  // first (a crash or a CTest timeout leaves no daemon behind).
  void spawn(const std::string& name, const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const std::string out = (dir_ / (name + ".out")).string();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (pid > 0) daemons_.push_back({name, pid});
  }

  // Every daemon still running.
  bool alive() {
    for (auto& d : daemons_)
      if (!d.exited && ::waitpid(d.pid, nullptr, WNOHANG) != 0) d.exited = true;
    return !daemons_.empty() &&
           std::none_of(daemons_.begin(), daemons_.end(), [](const Daemon& d) { return d.exited; });
  }

  static void terminate(Daemon& d) {
    if (d.exited) return;
    ::kill(d.pid, SIGTERM);
    const bool gone = wait_until([&] { return ::waitpid(d.pid, nullptr, WNOHANG) != 0; }, 10);
    if (!gone) {
      ::kill(d.pid, SIGKILL);
      ::waitpid(d.pid, nullptr, 0);
    }
    d.exited = true;
  }

  std::filesystem::path dir_;
  std::string node_;
  std::vector<Daemon> daemons_;
};

}  // namespace specdec::test
