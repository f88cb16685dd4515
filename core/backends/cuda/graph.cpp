// LlamaCuda's decode graph: the B = 1, T = 1 step captured once per layer count and replayed (see
// llama_cuda.cpp for what is captured and when it is captured again).
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/backends/cuda/llama_cuda_impl.h"
#include "core/error.h"

namespace specdec::cuda {

bool graphs_env_off() {
  const char* e = std::getenv("SPECDEC_CUDA_GRAPHS");
  return e && std::string_view(e) == "0";
}

// Replays the captured decode step, capturing it first when needed. False: the caller runs the plain
// launches (the first step of a layer count, which warms up everything a capture must not do itself, or
// graphs are off after a failed capture).
bool LlamaCuda::Impl::launch_graph(const LaunchPlan& p) {
  cudaStream_t s = ctx->stream;
  Graph& graph = graphs[p.L];
  if (!graph.warmed) {
    graph.warmed = true;
    return false;
  }
  if (graph.exec == nullptr || graph.max_S != p.max_S || graph.epoch != epoch) {
    if (graph.exec) {
      SPECDEC_CUDA_CHECK(cudaGraphExecDestroy(graph.exec));
      graph.exec = nullptr;
    }
    auto give_up = [&](const std::string& why) {
      (void)cudaGetLastError();  // capture errors are not sticky; clear the last-error slot
      graphs_on = false;
      stats.graph_disabled = "capture failed: " + why;
      return false;
    };
    SPECDEC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t g = nullptr;
    try {
      enqueue(p);
    } catch (const Error& e) {
      (void)cudaStreamEndCapture(s, &g);  // leave capture mode whatever happened
      if (g) (void)cudaGraphDestroy(g);
      return give_up(e.what());
    }
    const cudaError_t end = cudaStreamEndCapture(s, &g);
    if (end != cudaSuccess || g == nullptr) {
      if (g) (void)cudaGraphDestroy(g);
      return give_up(std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end));
    }
    // Memory nodes (stream-ordered allocations captured into the graph): none expected, the workspace is ours.
    size_t n_nodes = 0;
    if (cudaGraphGetNodes(g, nullptr, &n_nodes) == cudaSuccess && n_nodes > 0) {
      std::vector<cudaGraphNode_t> nodes(n_nodes);
      if (cudaGraphGetNodes(g, nodes.data(), &n_nodes) == cudaSuccess) {
        for (size_t i = 0; i < n_nodes; ++i) {
          cudaGraphNodeType t{};
          if (cudaGraphNodeGetType(nodes[i], &t) == cudaSuccess &&
              (t == cudaGraphNodeTypeMemAlloc || t == cudaGraphNodeTypeMemFree))
            ++stats.graph_memory_nodes;
        }
      }
    }
    const cudaError_t inst = cudaGraphInstantiate(&graph.exec, g, 0);
    (void)cudaGraphDestroy(g);
    if (inst != cudaSuccess) {
      graph.exec = nullptr;
      return give_up(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(inst));
    }
    graph.max_S = p.max_S;
    graph.epoch = epoch;
    ++stats.graph_captures;
  }
  SPECDEC_CUDA_CHECK(cudaGraphLaunch(graph.exec, s));
  ++stats.graph_launches;
  return true;
}

}  // namespace specdec::cuda
