// oneDNN convolutions as XLA FFI handlers: forward, backward-data and backward-weights on
// NHWC activations and HWIO kernels, float32 or bfloat16 (every operand of a call in the same
// type; oneDNN accumulates bfloat16 products in float32); the evaluation convolution, float32.
//
// Built by `python -m jaxdl.ops.onednn.build` (what `make install` runs) and loaded by
// `jaxdl.ops.onednn`, which registers the handlers below with `jax.ffi.register_ffi_target`.
//
// Why the weights go through a reorder: oneDNN's fast kernels (brgconv / jit:avx512_core,
// avx2, amx) want the weights in a blocked layout of their own. Forcing HWIO makes oneDNN fall
// back to its gemm kernels, slower than XLA's. So every primitive is created with
// `format_tag::any` for the weights, and the kernel is reordered from (or, for the weight
// gradient, to) HWIO around the call: a pass over the kernel, small next to the convolution.
// Activations stay NHWC (what XLA hands us), which oneDNN's kernels take directly.
//
// Primitives are created once per shape and options and kept in a cache guarded by a mutex:
// XLA:CPU runs the programs of several (fake) devices on several threads at once. Scratch
// memory is per calling thread, so one primitive can run on two threads at the same time.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"
#include "thread_buffer.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

enum class Pass : int { kForward = 0, kBackwardData = 1, kBackwardWeights = 2, kInference = 3 };

// What an inference convolution does after the convolution itself, in the same kernel (oneDNN
// post-ops), as bits of `ConvKey::post_ops`: add the residual the output buffer holds on entry,
// then take the ReLU.
constexpr int64_t kPostSum = 1;
constexpr int64_t kPostRelu = 2;

// Everything that decides a primitive: the pass, the shapes, the convolution's options and
// which of oneDNN's implementations for them to take (`impl`: 0 is oneDNN's first choice, 1 the
// next in its list, ...; `jaxdl.ops.onednn.tuning` times them).
struct ConvKey {
  int pass;
  int64_t n, h, w, c, kh, kw, f, oh, ow;
  int64_t stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dil_h, dil_w, groups;
  int64_t impl = 0;
  int64_t post_ops = 0;  // kInference only: kPostSum | kPostRelu
  int64_t bf16 = 0;      // 1: every operand bfloat16, else float32

  auto tie() const {
    return std::tie(pass, n, h, w, c, kh, kw, f, oh, ow, stride_h, stride_w, pad_top, pad_bottom,
                    pad_left, pad_right, dil_h, dil_w, groups, impl, post_ops, bf16);
  }
  memory::data_type type() const {
    return bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  }
  bool operator<(const ConvKey& other) const { return tie() < other.tie(); }
};

// One pass's primitive, the HWIO kernel as the user holds it, and the reorder between that
// and the primitive's preferred kernel layout (empty when they are the same).
struct ConvPrimitive {
  dnnl::primitive primitive;
  memory::desc user_kernel;
  memory::desc kernel;
  memory::desc src, dst, bias;
  bool reorder_kernel = false;
  dnnl::reorder kernel_reorder;
  size_t scratchpad_bytes = 0;
  std::string implementation;
};

// oneDNN's own primitive cache is off: the primitives are cached here, per key, and with it on,
// oneDNN 3.2 hands a new primitive descriptor for an op it has seen back at its first
// implementation, whatever `next_impl` is asked (so every `impl` ran the first one).
dnnl::engine& cpu_engine() {
  static dnnl::engine engine = [] {
    dnnl::set_primitive_cache_capacity(0);
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return engine;
}

// Per thread and purpose: the kernel in oneDNN's layout, the scratchpad.
thread_local jaxdl::ThreadBuffer kernel_buffer;
thread_local jaxdl::ThreadBuffer scratch_buffer;

memory::desc nhwc(int64_t n, int64_t c, int64_t h, int64_t w, memory::data_type type) {
  return memory::desc({n, c, h, w}, type, tag::nhwc);
}

// The HWIO kernel f32[kh, kw, c / groups, f] as oneDNN sees it: [f, c, kh, kw] in hwio order,
// or with groups [g, f / g, c / g, kh, kw] in hwigo order (output channel = g * f / g + o).
memory::desc hwio(const ConvKey& k) {
  if (k.groups == 1) return memory::desc({k.f, k.c, k.kh, k.kw}, k.type(), tag::hwio);
  return memory::desc({k.groups, k.f / k.groups, k.c / k.groups, k.kh, k.kw}, k.type(),
                      tag::hwigo);
}

memory::desc any_kernel(const ConvKey& k) {
  if (k.groups == 1) return memory::desc({k.f, k.c, k.kh, k.kw}, k.type(), tag::any);
  return memory::desc({k.groups, k.f / k.groups, k.c / k.groups, k.kh, k.kw}, k.type(),
                      tag::any);
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

std::shared_ptr<ConvPrimitive> create_primitive(const ConvKey& k) {
  auto& engine = cpu_engine();
  memory::dims strides = {k.stride_h, k.stride_w};
  memory::dims dilation = {k.dil_h - 1, k.dil_w - 1};  // oneDNN counts the gaps: 0 = none
  memory::dims pad_l = {k.pad_top, k.pad_left};
  memory::dims pad_r = {k.pad_bottom, k.pad_right};
  auto src = nhwc(k.n, k.c, k.h, k.w, k.type());
  auto dst = nhwc(k.n, k.f, k.oh, k.ow, k.type());
  auto attr = user_scratchpad();
  dnnl::convolution_forward::primitive_desc forward(
      engine, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src,
      any_kernel(k), memory::desc(), dst, strides, dilation, pad_l, pad_r, attr);

  // Steps `pd` on to oneDNN's `k.impl`-th implementation for it; throws if it has fewer.
  auto nth = [&k](auto& pd) {
    for (int64_t i = 0; i < k.impl; ++i) {
      if (!pd.next_impl()) throw dnnl::error(dnnl_unimplemented, "no such implementation");
    }
  };
  auto result = std::make_shared<ConvPrimitive>();
  result->user_kernel = hwio(k);
  result->src = src;
  result->dst = dst;
  if (k.pass == static_cast<int>(Pass::kInference)) {
    // The evaluation convolution: BatchNorm folded into the kernel and `bias` by the caller,
    // the residual add and ReLU as post-ops, so the output is written once. oneDNN lists
    // fewer implementations with post-ops than without: `impl` past its list takes its last.
    dnnl::post_ops post;
    if (k.post_ops & kPostSum) post.append_sum(1.0f);
    if (k.post_ops & kPostRelu) post.append_eltwise(dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    auto inference_attr = user_scratchpad();
    inference_attr.set_post_ops(post);
    result->bias = memory::desc({k.f}, memory::data_type::f32, tag::x);
    dnnl::convolution_forward::primitive_desc inference(
        engine, dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
        any_kernel(k), result->bias, dst, strides, dilation, pad_l, pad_r, inference_attr);
    for (int64_t i = 0; i < k.impl && inference.next_impl(); ++i) {
    }
    result->primitive = dnnl::convolution_forward(inference);
    result->kernel = inference.weights_desc();
    result->scratchpad_bytes = inference.scratchpad_desc().get_size();
    result->implementation = inference.impl_info_str();
  } else if (k.pass == static_cast<int>(Pass::kForward)) {
    nth(forward);
    result->primitive = dnnl::convolution_forward(forward);
    result->kernel = forward.weights_desc();
    result->scratchpad_bytes = forward.scratchpad_desc().get_size();
    result->implementation = forward.impl_info_str();
  } else if (k.pass == static_cast<int>(Pass::kBackwardData)) {
    dnnl::convolution_backward_data::primitive_desc backward(
        engine, dnnl::algorithm::convolution_direct, src, any_kernel(k), dst, strides, dilation,
        pad_l, pad_r, forward, attr);
    nth(backward);
    result->primitive = dnnl::convolution_backward_data(backward);
    result->kernel = backward.weights_desc();
    result->scratchpad_bytes = backward.scratchpad_desc().get_size();
    result->implementation = backward.impl_info_str();
  } else {
    dnnl::convolution_backward_weights::primitive_desc backward(
        engine, dnnl::algorithm::convolution_direct, src, any_kernel(k), memory::desc(), dst,
        strides, dilation, pad_l, pad_r, forward, attr);
    nth(backward);
    result->primitive = dnnl::convolution_backward_weights(backward);
    result->kernel = backward.diff_weights_desc();
    result->scratchpad_bytes = backward.scratchpad_desc().get_size();
    result->implementation = backward.impl_info_str();
  }
  result->reorder_kernel = result->kernel != result->user_kernel;
  if (result->reorder_kernel) {
    bool to_user = k.pass == static_cast<int>(Pass::kBackwardWeights);
    dnnl::reorder::primitive_desc reorder(
        engine, to_user ? result->kernel : result->user_kernel, engine,
        to_user ? result->user_kernel : result->kernel);
    result->kernel_reorder = dnnl::reorder(reorder);
  }
  return result;
}

std::mutex cache_mutex;
std::map<ConvKey, std::shared_ptr<ConvPrimitive>>& cache() {
  static auto* primitives = new std::map<ConvKey, std::shared_ptr<ConvPrimitive>>();
  return *primitives;
}

std::shared_ptr<ConvPrimitive> cached_primitive(const ConvKey& key) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto found = cache().find(key);
    if (found != cache().end()) return found->second;
  }
  auto created = create_primitive(key);  // outside the lock: creation can take milliseconds
  std::lock_guard<std::mutex> lock(cache_mutex);
  return cache().emplace(key, created).first->second;
}

ffi::Error check_options(ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                         ffi::Span<const int64_t> dilation, int64_t groups, int64_t impl) {
  if (strides.size() != 2 || padding.size() != 4 || dilation.size() != 2 || groups < 1 ||
      impl < 0) {
    return ffi::Error::InvalidArgument(
        "jaxdl oneDNN convolution: strides (2), padding (4), dilation (2), groups >= 1 and "
        "impl >= 0");
  }
  return ffi::Error::Success();
}

// The key of a convolution from its NHWC input dims, HWIO kernel dims and NHWC output dims.
ConvKey make_key(Pass pass, ffi::Span<const int64_t> x, ffi::Span<const int64_t> kernel,
                 ffi::Span<const int64_t> y, ffi::Span<const int64_t> strides,
                 ffi::Span<const int64_t> padding, ffi::Span<const int64_t> dilation,
                 int64_t groups, int64_t impl, int64_t post_ops = 0, bool bf16 = false) {
  return ConvKey{static_cast<int>(pass), x[0], x[1], x[2], x[3], kernel[0], kernel[1], kernel[3],
                 y[1], y[2], strides[0], strides[1], padding[0], padding[1], padding[2],
                 padding[3], dilation[0], dilation[1], groups, impl, post_ops, bf16 ? 1 : 0};
}

// Runs `p` with `args`, the kernel argument (`kernel_arg`) bound to the user's HWIO buffer
// through the reorder when the primitive wants another layout.
ffi::Error run(const ConvPrimitive& p, std::unordered_map<int, memory> args, int kernel_arg,
               void* user_kernel, bool kernel_is_output) {
  try {
    auto& engine = cpu_engine();
    dnnl::stream stream(engine);
    memory user(p.user_kernel, engine, user_kernel);
    memory kernel = user;
    void* kernel_data = p.reorder_kernel ? kernel_buffer.get(p.kernel.get_size()) : user_kernel;
    void* scratch_data = p.scratchpad_bytes > 0 ? scratch_buffer.get(p.scratchpad_bytes) : nullptr;
    if (kernel_data == nullptr || (p.scratchpad_bytes > 0 && scratch_data == nullptr)) {
      return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                        "jaxdl convolution: out of memory for the kernel copy or scratchpad");
    }
    if (p.reorder_kernel) {
      kernel = memory(p.kernel, engine, kernel_data);
      if (!kernel_is_output) p.kernel_reorder.execute(stream, user, kernel);
    }
    args.insert({kernel_arg, kernel});
    if (p.scratchpad_bytes > 0) {
      memory::desc scratch({static_cast<int64_t>(p.scratchpad_bytes)}, memory::data_type::u8,
                           tag::x);
      args.insert({DNNL_ARG_SCRATCHPAD,
                   memory(scratch, engine, scratch_data)});
    }
    p.primitive.execute(stream, args);
    if (p.reorder_kernel && kernel_is_output) p.kernel_reorder.execute(stream, kernel, user);
    stream.wait();
  } catch (const dnnl::error& error) {
    return ffi::Error::Internal(std::string("oneDNN: ") + error.what());
  }
  return ffi::Error::Success();
}

// The convolution's options as the handlers receive them.
struct Options {
  ffi::Span<const int64_t> strides, padding, dilation;
  int64_t groups, impl;
};

// One pass: its primitive for these NHWC input / HWIO kernel / NHWC output dims, run with the
// activation buffers bound to `activation_args` and the kernel buffer to `kernel_arg`; every
// buffer float32, or every one bfloat16 (`bf16`).
ffi::Error conv_pass(Pass pass, const char* name, ffi::Span<const int64_t> x_dims,
                     ffi::Span<const int64_t> kernel_dims, ffi::Span<const int64_t> y_dims,
                     const Options& o, bool bf16, int x_arg, void* x_data, int y_arg,
                     void* y_data, int kernel_arg, void* kernel_data) {
  if (auto error = check_options(o.strides, o.padding, o.dilation, o.groups, o.impl);
      error.failure()) {
    return error;
  }
  ConvKey key = make_key(pass, x_dims, kernel_dims, y_dims, o.strides, o.padding, o.dilation,
                         o.groups, o.impl, 0, bf16);
  std::shared_ptr<ConvPrimitive> p;
  try {
    p = cached_primitive(key);
  } catch (const dnnl::error& error) {
    return ffi::Error::Internal(std::string("oneDNN ") + name + ": " + error.what());
  }
  auto& engine = cpu_engine();
  return run(*p, {{x_arg, memory(p->src, engine, x_data)}, {y_arg, memory(p->dst, engine, y_data)}},
             kernel_arg, kernel_data, pass == Pass::kBackwardWeights);
}

// Whether the three buffers are all bfloat16 (true) or all float32 (false); else an error.
ffi::ErrorOr<bool> common_type(const char* name, ffi::DataType a, ffi::DataType b,
                               ffi::DataType c) {
  if (a == b && b == c && (a == ffi::DataType::F32 || a == ffi::DataType::BF16)) {
    return a == ffi::DataType::BF16;
  }
  return ffi::Unexpected(ffi::Error::InvalidArgument(
      std::string("jaxdl oneDNN ") + name + ": operands and result must all be float32 or all "
      "bfloat16"));
}

ffi::Error ConvForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer kernel, ffi::Result<ffi::AnyBuffer> y,
                           ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                           ffi::Span<const int64_t> dilation, int64_t groups, int64_t impl) {
  auto bf16 = common_type("forward", x.element_type(), kernel.element_type(), y->element_type());
  if (bf16.has_error()) return bf16.error();
  return conv_pass(Pass::kForward, "forward", x.dimensions(), kernel.dimensions(),
                   y->dimensions(), {strides, padding, dilation, groups, impl}, *bf16,
                   DNNL_ARG_SRC, x.untyped_data(), DNNL_ARG_DST, y->untyped_data(),
                   DNNL_ARG_WEIGHTS, kernel.untyped_data());
}

ffi::Error ConvBackwardDataImpl(ffi::AnyBuffer dy, ffi::AnyBuffer kernel,
                                ffi::Result<ffi::AnyBuffer> dx, ffi::Span<const int64_t> strides,
                                ffi::Span<const int64_t> padding,
                                ffi::Span<const int64_t> dilation, int64_t groups,
                                int64_t impl) {
  auto bf16 = common_type("backward data", dy.element_type(), kernel.element_type(),
                          dx->element_type());
  if (bf16.has_error()) return bf16.error();
  return conv_pass(Pass::kBackwardData, "backward data", dx->dimensions(), kernel.dimensions(),
                   dy.dimensions(), {strides, padding, dilation, groups, impl}, *bf16,
                   DNNL_ARG_DIFF_SRC, dx->untyped_data(), DNNL_ARG_DIFF_DST, dy.untyped_data(),
                   DNNL_ARG_WEIGHTS, kernel.untyped_data());
}

ffi::Error ConvBackwardWeightsImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy,
                                   ffi::Result<ffi::AnyBuffer> dkernel,
                                   ffi::Span<const int64_t> strides,
                                   ffi::Span<const int64_t> padding,
                                   ffi::Span<const int64_t> dilation, int64_t groups,
                                   int64_t impl) {
  auto bf16 = common_type("backward weights", x.element_type(), dy.element_type(),
                          dkernel->element_type());
  if (bf16.has_error()) return bf16.error();
  return conv_pass(Pass::kBackwardWeights, "backward weights", x.dimensions(),
                   dkernel->dimensions(), dy.dimensions(),
                   {strides, padding, dilation, groups, impl}, *bf16, DNNL_ARG_SRC,
                   x.untyped_data(), DNNL_ARG_DIFF_DST, dy.untyped_data(), DNNL_ARG_DIFF_WEIGHTS,
                   dkernel->untyped_data());
}

// The evaluation convolution y = relu?(conv(x, kernel) + bias (+ residual)), f32[N, H, W, C]
// * f32[kh, kw, C / groups, F] + f32[F] -> f32[N, H', W', F]. With `residual` the output
// buffer is the residual's (the caller aliases them, `input_output_aliases`), which oneDNN's
// sum post-op reads and overwrites; should XLA hand over two buffers, the residual is copied.
ffi::Error inference(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                     ffi::Buffer<ffi::F32> bias, const float* residual,
                     ffi::ResultBuffer<ffi::F32> y, const Options& o, bool relu) {
  if (auto error = check_options(o.strides, o.padding, o.dilation, o.groups, o.impl);
      error.failure()) {
    return error;
  }
  int64_t post_ops = (residual != nullptr ? kPostSum : 0) | (relu ? kPostRelu : 0);
  ConvKey key = make_key(Pass::kInference, x.dimensions(), kernel.dimensions(), y->dimensions(),
                         o.strides, o.padding, o.dilation, o.groups, o.impl, post_ops);
  std::shared_ptr<ConvPrimitive> p;
  try {
    p = cached_primitive(key);
  } catch (const dnnl::error& error) {
    return ffi::Error::Internal(std::string("oneDNN inference: ") + error.what());
  }
  if (residual != nullptr && residual != y->typed_data()) {
    std::memcpy(y->typed_data(), residual, y->element_count() * sizeof(float));
  }
  auto& engine = cpu_engine();
  return run(*p,
             {{DNNL_ARG_SRC, memory(p->src, engine, x.typed_data())},
              {DNNL_ARG_BIAS, memory(p->bias, engine, bias.typed_data())},
              {DNNL_ARG_DST, memory(p->dst, engine, y->typed_data())}},
             DNNL_ARG_WEIGHTS, kernel.typed_data(), false);
}

ffi::Error ConvInferenceImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                             ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y,
                             ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                             ffi::Span<const int64_t> dilation, int64_t groups, int64_t impl,
                             bool relu) {
  return inference(x, kernel, bias, nullptr, y, {strides, padding, dilation, groups, impl}, relu);
}

ffi::Error ConvInferenceAddImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                                ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> residual,
                                ffi::ResultBuffer<ffi::F32> y, ffi::Span<const int64_t> strides,
                                ffi::Span<const int64_t> padding,
                                ffi::Span<const int64_t> dilation, int64_t groups, int64_t impl,
                                bool relu) {
  return inference(x, kernel, bias, residual.typed_data(), y,
                   {strides, padding, dilation, groups, impl}, relu);
}

}  // namespace

#define JAXDL_CONV_BINDING                            \
  ffi::Ffi::Bind()                                    \
      .Arg<ffi::AnyBuffer>()                          \
      .Arg<ffi::AnyBuffer>()                          \
      .Ret<ffi::AnyBuffer>()                          \
      .Attr<ffi::Span<const int64_t>>("strides")      \
      .Attr<ffi::Span<const int64_t>>("padding")      \
      .Attr<ffi::Span<const int64_t>>("dilation")     \
      .Attr<int64_t>("groups")                        \
      .Attr<int64_t>("impl")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvForward, ConvForwardImpl,
                              JAXDL_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvBackwardData, ConvBackwardDataImpl,
                              JAXDL_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvBackwardWeights, ConvBackwardWeightsImpl,
                              JAXDL_CONV_BINDING);

#define JAXDL_CONV_OPTIONS                            \
  .Attr<ffi::Span<const int64_t>>("strides")          \
      .Attr<ffi::Span<const int64_t>>("padding")      \
      .Attr<ffi::Span<const int64_t>>("dilation")     \
      .Attr<int64_t>("groups")                        \
      .Attr<int64_t>("impl")                          \
      .Attr<bool>("relu")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvInference, ConvInferenceImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() JAXDL_CONV_OPTIONS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvInferenceAdd, ConvInferenceAddImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() JAXDL_CONV_OPTIONS);

// What a pass of a convolution runs on with oneDNN's `impl`-th implementation for it: its
// name (e.g. "brgconv:avx512_core"), for `python -m jaxdl.ops.onednn`, the tuner and the
// benchmarks. `dims`: the key's 18 shape and option fields in order, then its post-ops, then
// 1 for bfloat16 or 0 for float32. Writes at most `size` bytes including the terminating
// zero; returns 0, or 1 if oneDNN has no such implementation for the shape.
extern "C" int jaxdl_conv_implementation(int pass, const int64_t* dims, int64_t impl, char* out,
                                         size_t size) {
  ConvKey key{pass,     dims[0],  dims[1],  dims[2],  dims[3],  dims[4],  dims[5],
              dims[6],  dims[7],  dims[8],  dims[9],  dims[10], dims[11], dims[12],
              dims[13], dims[14], dims[15], dims[16], dims[17], impl,     dims[18],
              dims[19]};
  try {
    std::snprintf(out, size, "%s", cached_primitive(key)->implementation.c_str());
  } catch (const dnnl::error& error) {
    std::snprintf(out, size, "%s", error.what());
    return 1;
  }
  return 0;
}

// oneDNN's version, "major.minor.patch".
extern "C" void jaxdl_onednn_version(char* out, size_t size) {
  const dnnl_version_t* v = dnnl_version();
  std::snprintf(out, size, "%d.%d.%d", v->major, v->minor, v->patch);
}

// The instruction set oneDNN dispatches to on this CPU.
extern "C" const char* jaxdl_onednn_isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2_vnni_2: return "avx2_vnni_2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_fp16: return "avx512_core_fp16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_amx_fp16: return "avx512_core_amx_fp16";
    default: return "default";
  }
}
