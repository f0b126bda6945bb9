// tests/cuda_emulation/emulated_cuda.cpp — the CPU side of emulated_cuda.hpp: the fiber
// scheduler that runs a launch, and the parts of the CUDA runtime segkit calls, with the
// checks the runtime makes (and a few it leaves to a crash). cuBLAS and cuDNN are in
// emulated_cublas.cpp and emulated_cudnn.cpp.
#include "emulated_cuda.hpp"

#include "emulated_device_memory.hpp"

#include <sys/mman.h>
#include <ucontext.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace segkit_emulation {
namespace {

// ---- switching between fibers ----------------------------------------------------------------
// On x86-64 a switch saves the callee-saved registers and the FP control words on the old stack
// and pops them from the new one: no system call. swapcontext, the portable fallback, also
// saves the signal mask (a system call per switch), which made the emulated suite 3x slower.
#if defined(__x86_64__)
extern "C" void segkit_emulation_switch(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .globl segkit_emulation_switch
  .type segkit_emulation_switch, @function
segkit_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size segkit_emulation_switch, .-segkit_emulation_switch
  .popsection
)");

struct execution_context {
  void* sp = nullptr;
};
// A context that, switched to, calls entry() on the given stack (entry must never return).
void prepare(execution_context& c, char* stack, std::size_t bytes, void (*entry)(),
             execution_context*) {
  auto* top = reinterpret_cast<std::uint64_t*>(reinterpret_cast<std::uintptr_t>(stack + bytes) &
                                               ~std::uintptr_t(15));
  top[-2] = reinterpret_cast<std::uint64_t>(entry);      // `ret` lands in entry with rsp = 8 mod 16
  for (int slot = 3; slot <= 8; ++slot) top[-slot] = 0;  // rbp, rbx, r12-r15
  top[-9] = 0x1f80u | std::uint64_t(0x037fu) << 32;      // default MXCSR and x87 control word
  c.sp = &top[-9];
}
void switch_to(execution_context& from, execution_context& to) {
  segkit_emulation_switch(&from.sp, to.sp);
}
#else
struct execution_context {
  ucontext_t context;
};
void prepare(execution_context& c, char* stack, std::size_t bytes, void (*entry)(),
             execution_context* scheduler) {
  getcontext(&c.context);
  c.context.uc_stack.ss_sp = stack;
  c.context.uc_stack.ss_size = bytes;
  c.context.uc_link = &scheduler->context;
  makecontext(&c.context, entry, 0);
}
void switch_to(execution_context& from, execution_context& to) {
  swapcontext(&from.context, &to.context);
}
#endif

constexpr int opt_in_shared_limit = 232448;  // an H100's cudaDevAttrMaxSharedMemoryPerBlockOptin
constexpr int default_shared_limit = 48 * 1024;

struct kernel_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class fiber_state { runnable, at_block_barrier, at_warp_barrier, finished };

struct fiber {
  execution_context context;
  fiber_state state = fiber_state::runnable;
  unsigned mask = 0;
  const char* call = "";
};

struct block_run {
  std::vector<fiber> fibers;
  execution_context scheduler;
  unsigned current = 0;
  dim3 block;
  std::vector<std::uint64_t> exchange;  // 32 slots per warp
  void* shared = nullptr;
  const std::function<void()>* body = nullptr;
  std::string failure;
};

block_run* running = nullptr;
constexpr std::size_t stack_bytes = 256 * 1024, guard_bytes = 4096;
std::vector<char*> stacks;
std::map<const void*, int> dynamic_shared_limit;  // set by cudaFuncSetAttribute

int dynamic_shared_limit_of(const void* kernel) {
  const auto found = dynamic_shared_limit.find(kernel);
  return found == dynamic_shared_limit.end() ? default_shared_limit : found->second;
}

block_run& current_block(const char* what) {
  if (!running) trap((std::string(what) + " called outside a kernel").c_str());
  return *running;
}

uint3 index_of(unsigned linear, dim3 block) {
  return {linear % block.x, linear / block.x % block.y, linear / (block.x * block.y)};
}

void wait(fiber_state state, unsigned mask, const char* call) {
  block_run& b = current_block(call);
  fiber& self = b.fibers[b.current];
  self.state = state;
  self.mask = mask;
  self.call = call;
  switch_to(self.context, b.scheduler);
}

void fiber_entry() {
  block_run& b = *running;
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.failure.empty()) b.failure = e.what();
  } catch (...) {  // nothing may unwind past a fiber's first frame
    if (b.failure.empty()) b.failure = "the kernel threw a non-standard exception";
  }
  b.fibers[b.current].state = fiber_state::finished;
  switch_to(b.fibers[b.current].context, b.scheduler);
  std::abort();  // a finished fiber is never resumed
}

std::string describe(const block_run& b) {
  std::string text;
  int listed = 0;
  for (unsigned t = 0; t < b.fibers.size() && listed < 6; ++t) {
    const fiber& f = b.fibers[t];
    if (f.state == fiber_state::finished) continue;
    char line[160];
    std::snprintf(line, sizeof line, "%sthread %u waits at %s (mask %08x)", listed ? "; " : "", t,
                  f.state == fiber_state::at_block_barrier ? "__syncthreads" : f.call, f.mask);
    text += line;
    ++listed;
  }
  return text;
}

// Releases the warp-synchronous groups whose every lane has arrived; false if none did.
bool release_warp_groups(block_run& b) {
  bool released = false;
  const unsigned threads = unsigned(b.fibers.size());
  for (unsigned first = 0; first < threads; first += 32) {
    for (unsigned lane = 0; lane < 32 && first + lane < threads; ++lane) {
      const fiber& f = b.fibers[first + lane];
      if (f.state != fiber_state::at_warp_barrier) continue;
      bool complete = true;
      for (unsigned other = 0; other < 32 && complete; ++other) {
        if (!(f.mask >> other & 1u)) continue;
        const fiber& g = b.fibers[first + other];
        complete = g.state == fiber_state::at_warp_barrier && g.mask == f.mask;
      }
      if (!complete) continue;
      for (unsigned other = 0; other < 32; ++other)
        if (f.mask >> other & 1u) b.fibers[first + other].state = fiber_state::runnable;
      released = true;
    }
  }
  return released;
}

void run_block(block_run& b, bool reverse) {
  const unsigned threads = unsigned(b.fibers.size());
  for (unsigned t = 0; t < threads; ++t) {
    fiber& f = b.fibers[t];
    prepare(f.context, stacks[t], stack_bytes, fiber_entry, &b.scheduler);
    f.state = fiber_state::runnable;
  }
  for (;;) {
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = reverse ? threads - 1 - i : i;
      if (b.fibers[t].state != fiber_state::runnable) continue;
      b.current = t;
      threadIdx = index_of(t, b.block);
      switch_to(b.scheduler, b.fibers[t].context);
      if (!b.failure.empty()) throw kernel_failure(b.failure);
    }
    // Every thread now waits or has finished.
    if (release_warp_groups(b)) continue;
    bool all_finished = true, all_at_barrier = true;
    for (const fiber& f : b.fibers) {
      all_finished = all_finished && f.state == fiber_state::finished;
      // Like the hardware, a barrier does not wait for threads that have exited.
      all_at_barrier = all_at_barrier && (f.state == fiber_state::at_block_barrier ||
                                          f.state == fiber_state::finished);
    }
    if (all_finished) return;
    if (!all_at_barrier) throw kernel_failure("deadlock or divergent barrier: " + describe(b));
    for (fiber& f : b.fibers)
      if (f.state == fiber_state::at_block_barrier) f.state = fiber_state::runnable;
  }
}

bool tracing() {
  static const bool trace = std::getenv("SEGKIT_EMULATION_TRACE") != nullptr;
  return trace;
}

bool run_in_reverse() {
  static const bool reverse = [] {
    const char* order = std::getenv("SEGKIT_EMULATION_ORDER");
    return order && std::string(order) == "reverse";
  }();
  return reverse;
}

}  // namespace

void block_barrier() {
  wait(fiber_state::at_block_barrier, 0, "__syncthreads");
}

void warp_barrier(unsigned mask, const char* call) {
  block_run& b = current_block(call);
  const unsigned first = b.current / 32 * 32;
  const unsigned lanes = std::min<unsigned>(32, unsigned(b.fibers.size()) - first);
  const unsigned existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  if (mask & ~existing)
    trap((std::string(call) + ": its mask names lanes that the block does not have").c_str());
  if (!(mask >> (b.current % 32) & 1u))
    trap((std::string(call) + ": called by a lane outside its mask").c_str());
  wait(fiber_state::at_warp_barrier, mask, call);
}

std::uint64_t* warp_exchange() {
  block_run& b = current_block("a shuffle");
  return b.exchange.data() + b.current / 32 * 32;
}

int lane_id() {
  return int(current_block("lane_id").current % 32);
}

void* dynamic_shared() {
  return current_block("extern __shared__").shared;
}

void trap(const char* why) {
  throw kernel_failure(why);
}

void launch(const char* name, const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes,
            const std::function<void()>& thread_body) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (tracing())
    std::fprintf(stderr, "launch %s: grid %ux%ux%u, block %ux%ux%u, %zu bytes shared\n", name,
                 grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes);
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > unsigned(INT_MAX) || grid.y > 65535 ||
      grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration, std::string(name) + ": invalid grid or block size");
    return;
  }
  const int allowed = dynamic_shared_limit_of(kernel);
  if (shared_bytes > std::size_t(allowed)) {
    fail(cudaErrorInvalidValue, std::string(name) + ": " + std::to_string(shared_bytes) +
                                    " bytes of dynamic shared memory, over the kernel's limit of " +
                                    std::to_string(allowed));
    return;
  }
  while (stacks.size() < threads) {  // each with a guard page below it: an overflow faults
    void* stack = mmap(nullptr, stack_bytes + guard_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) throw std::runtime_error("segkit CUDA emulation: no fiber stack");
    mprotect(stack, guard_bytes, PROT_NONE);
    stacks.push_back(static_cast<char*>(stack) + guard_bytes);
  }
  const std::size_t shared_size = (shared_bytes + 127) / 128 * 128 + 128;
  void* shared = std::aligned_alloc(128, shared_size);
  block_run b;
  b.fibers.resize(threads);
  b.block = block;
  b.exchange.assign((threads + 31) / 32 * 32, 0);
  b.shared = shared;
  b.body = &thread_body;
  device_access access;
  running = &b;
  blockDim = block;
  gridDim = grid;
  try {
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          blockIdx = {x, y, z};
          std::memset(shared, 0xff, shared_size);
          run_block(b, run_in_reverse());
        }
  } catch (const kernel_failure& e) {
    fail(cudaErrorLaunchFailure, std::string(name) + ", block (" + std::to_string(blockIdx.x) +
                                     "," + std::to_string(blockIdx.y) + "," +
                                     std::to_string(blockIdx.z) + "): " + e.what());
  }
  running = nullptr;
  std::free(shared);
}

}  // namespace segkit_emulation

// ---- CUDA runtime ----------------------------------------------------------------------------
using segkit_emulation::allocations;
using segkit_emulation::fail;
using segkit_emulation::inside_allocation;

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  const std::size_t mapped = segkit_emulation::mapped_bytes(bytes);
  void* block = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) return fail(cudaErrorMemoryAllocation, "cudaMalloc: out of memory");
  std::memset(block, 0xff, mapped);  // NaN as float: a read before any write shows up
  mprotect(block, mapped, PROT_NONE);
  allocations[reinterpret_cast<std::uintptr_t>(block)] = bytes;
  *pointer = block;
  return cudaSuccess;
}

cudaError_t cudaFree(void* pointer) {
  if (!pointer) return cudaSuccess;
  const auto found = allocations.find(reinterpret_cast<std::uintptr_t>(pointer));
  if (found == allocations.end())
    return fail(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
  munmap(pointer, segkit_emulation::mapped_bytes(found->second));
  allocations.erase(found);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (count == 0) return cudaSuccess;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault &&
      (dst_device != inside_allocation(dst, count) || src_device != inside_allocation(src, count)))
    return fail(cudaErrorInvalidValue,
                "cudaMemcpy of " + std::to_string(count) + " bytes: a range is not where kind " +
                    std::to_string(int(kind)) + " says (device ranges must lie in an allocation)");
  segkit_emulation::device_access access{dst, src};
  std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemset(void* pointer, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (!inside_allocation(pointer, count))
    return fail(cudaErrorInvalidValue,
                "cudaMemset of " + std::to_string(count) + " bytes outside any device allocation");
  segkit_emulation::device_access access{pointer};
  std::memset(pointer, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* pointer, int value, size_t count, cudaStream_t) {
  return cudaMemset(pointer, value, count);
}

cudaError_t cudaGetLastError() {
  const cudaError_t error = segkit_emulation::last_error;
  segkit_emulation::last_error = cudaSuccess;
  return error;
}
cudaError_t cudaPeekAtLastError() {
  return segkit_emulation::last_error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaError (other)";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  if (error == cudaSuccess) return "no error";
  return segkit_emulation::last_failure.c_str();  // the emulator's account of the last failure
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidValue, "cudaSetDevice: no such device");
}
cudaError_t cudaDeviceSynchronize() {
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int device) {
  if (device != 0) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: no such device");
  *properties = cudaDeviceProp{};
  std::snprintf(properties->name, sizeof properties->name,
                "segkit CUDA emulator (CPU fibers, sm_90 limits)");
  properties->major = 9;
  properties->minor = 0;
  properties->multiProcessorCount = 132;
  properties->warpSize = 32;
  properties->maxThreadsPerBlock = 1024;
  properties->sharedMemPerBlock = segkit_emulation::default_shared_limit;
  properties->sharedMemPerBlockOptin = segkit_emulation::opt_in_shared_limit;
  properties->totalGlobalMem = size_t(80) << 30;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device != 0) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: no such device");
  switch (attribute) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = segkit_emulation::opt_in_shared_limit;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = segkit_emulation::default_shared_limit;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    default:
      return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " +
                                             std::to_string(int(attribute)) + " not emulated");
  }
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attributes, const void* kernel) {
  *attributes = cudaFuncAttributes{};
  attributes->ptxVersion = 90;
  attributes->binaryVersion = 90;
  attributes->maxThreadsPerBlock = 1024;
  attributes->maxDynamicSharedSizeBytes = segkit_emulation::dynamic_shared_limit_of(kernel);
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute not emulated");
  if (value < 0 || value > segkit_emulation::opt_in_shared_limit)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                           " bytes is over the device's opt-in limit");
  segkit_emulation::dynamic_shared_limit[kernel] = value;
  return cudaSuccess;
}
