// Training-mode BatchNorm over the last axis of a float32 or bfloat16 array, fused with the
// residual add and the ReLU that follow it in a ResNet block, as XLA FFI handlers:
//
//   forward:  y = relu?(x * a + b + residual?), a = scale / sqrt(var + eps), b = bias - mean * a
//             with mean and (biased) var over every row of x viewed as [M, C]
//   backward: g = dy * (y > 0 if relu), dbias = sum g, dscale = sum g * xhat,
//             dx = a * (g - dbias / M - xhat * dscale / M), dresidual = g
//
// Without a residual, y > 0 is x * a + b > 0, recomputed from x with the forward's own a and b
// (the same float arithmetic, so the same mask) instead of read from y: one activation less to
// read, twice, in every such backward.
//
// Why not XLA: on ResNet-20's train step the elementwise work around the convolutions (the
// normalisation, its gradient, ReLU and the adds) took ~80 ms of a ~185 ms step, because XLA
// reads and writes each activation several times (the statistics as dots over x and x * x,
// the gradient's sums and its affine map as separate passes). Here the forward reads x twice
// and writes y once; the backward reads dy, x (and y) twice and writes dx (and dresidual) once.
//
// Each pass splits the rows between OpenMP threads (the runtime oneDNN uses); the statistics
// are summed in float32 over blocks of 64 rows, then in double. The loops are compiled for
// AVX-512, AVX2 and baseline x86-64 (`target_clones`), the CPU picking one when loaded.
//
// bfloat16 activations (x, the residual, y, dy, dx, the residual's gradient) are widened to
// float32 as they are read and rounded to the nearest bfloat16 (ties to even, as XLA's convert)
// as they are written; every sum and the affine maps stay float32 / double, as do scale, bias,
// mean and var: the arithmetic is float32's, only the memory traffic halves.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#define JAXDL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define JAXDL_INLINE inline __attribute__((always_inline))

constexpr int64_t kBlockRows = 64;  // rows summed in float32 before the double totals

// A bfloat16 as stored: the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};
struct float_tag {
  using type = float;
};
struct bf16_tag {
  using type = bf16;
};

JAXDL_INLINE float widen(float v) { return v; }
JAXDL_INLINE float widen(bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// `f` as a T: itself, or the nearest bfloat16, ties to even (a NaN stays a quiet NaN).
template <typename T>
JAXDL_INLINE T narrow(float f);
template <>
JAXDL_INLINE float narrow<float>(float f) {
  return f;
}
template <>
JAXDL_INLINE bf16 narrow<bf16>(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return bf16{static_cast<uint16_t>(f != f ? 0x7FC0u : rounded)};
}

// This thread's share [begin, end) of `rows` rows, inside an OpenMP parallel region.
void thread_rows(int64_t rows, int64_t* begin, int64_t* end) {
  int64_t t = omp_get_thread_num(), count = omp_get_num_threads();
  *begin = rows * t / count;
  *end = rows * (t + 1) / count;
}

// What masks the gradient g = dy: nothing, y > 0 (y given), or x * a + b > 0 (a, b given).
enum class Mask { kNone, kOutput, kAffine };

// Whether the forward's ReLU passed x * a + b: the forward's own arithmetic, so its own mask.
JAXDL_INLINE bool passes(float x, float a, float b) { return x * a + b > 0.0f; }

// Adds sum(u) and sum(u * v) over rows [begin, end) of [rows, c] arrays to `sum_u`, `sum_uv`,
// where u = `a`, masked to zero where `mask` says (`Mask`). With v == u, the statistics of the
// forward pass; with u = dy and v = x, those of the backward pass.
template <Mask kMask, typename T>
JAXDL_INLINE void sums_rows(const T* __restrict__ a, const T* __restrict__ v,
                            const T* __restrict__ mask, const float* __restrict__ mask_a,
                            const float* __restrict__ mask_b, int64_t begin, int64_t end,
                            int64_t c, float* __restrict__ block_u, float* __restrict__ block_uv,
                            double* __restrict__ sum_u, double* __restrict__ sum_uv) {
  for (int64_t r0 = begin; r0 < end; r0 += kBlockRows) {
    int64_t r1 = std::min(end, r0 + kBlockRows);
    for (int64_t j = 0; j < c; ++j) block_u[j] = block_uv[j] = 0.0f;
    for (int64_t r = r0; r < r1; ++r) {
      const T* ar = a + r * c;
      const T* vr = v + r * c;
      const T* mr = mask + (kMask == Mask::kOutput ? r * c : 0);
      for (int64_t j = 0; j < c; ++j) {
        float u = widen(ar[j]), vj = widen(vr[j]);
        if (kMask == Mask::kOutput) u = widen(mr[j]) > 0.0f ? u : 0.0f;
        if (kMask == Mask::kAffine) u = passes(vj, mask_a[j], mask_b[j]) ? u : 0.0f;
        block_u[j] += u;
        block_uv[j] += u * vj;
      }
    }
    for (int64_t j = 0; j < c; ++j) {
      sum_u[j] += block_u[j];
      sum_uv[j] += block_uv[j];
    }
  }
}

template <typename T>
JAXDL_INLINE void sums_any(const T* a, const T* v, Mask mode, const T* mask, const float* mask_a,
                           const float* mask_b, int64_t begin, int64_t end, int64_t c,
                           float* block_u, float* block_uv, double* sum_u, double* sum_uv) {
  const T* none = nullptr;
  if (mode == Mask::kOutput) {
    sums_rows<Mask::kOutput>(a, v, mask, nullptr, nullptr, begin, end, c, block_u, block_uv,
                             sum_u, sum_uv);
  } else if (mode == Mask::kAffine) {
    sums_rows<Mask::kAffine>(a, v, none, mask_a, mask_b, begin, end, c, block_u, block_uv,
                             sum_u, sum_uv);
  } else {
    sums_rows<Mask::kNone>(a, v, none, nullptr, nullptr, begin, end, c, block_u, block_uv,
                           sum_u, sum_uv);
  }
}

// One overload per activation type, each compiled for every ISA of `JAXDL_CLONES`.
JAXDL_CLONES void sums(const float* a, const float* v, Mask mode, const float* mask,
                       const float* mask_a, const float* mask_b, int64_t begin, int64_t end,
                       int64_t c, float* block_u, float* block_uv, double* sum_u,
                       double* sum_uv) {
  sums_any(a, v, mode, mask, mask_a, mask_b, begin, end, c, block_u, block_uv, sum_u, sum_uv);
}
JAXDL_CLONES void sums(const bf16* a, const bf16* v, Mask mode, const bf16* mask,
                       const float* mask_a, const float* mask_b, int64_t begin, int64_t end,
                       int64_t c, float* block_u, float* block_uv, double* sum_u,
                       double* sum_uv) {
  sums_any(a, v, mode, mask, mask_a, mask_b, begin, end, c, block_u, block_uv, sum_u, sum_uv);
}

// y = relu?(x * a + b + residual?) over rows [begin, end).
template <bool kRelu, bool kResidual, typename T>
JAXDL_INLINE void normalize_rows(const T* __restrict__ x, const T* __restrict__ residual,
                                 const float* __restrict__ a, const float* __restrict__ b,
                                 T* __restrict__ y, int64_t begin, int64_t end, int64_t c) {
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * c;
    const T* rr = residual + (kResidual ? r * c : 0);
    T* yr = y + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float out = widen(xr[j]) * a[j] + b[j];  // as `passes` computes it
      if (kResidual) out += widen(rr[j]);
      yr[j] = narrow<T>(kRelu ? std::max(out, 0.0f) : out);
    }
  }
}

template <typename T>
JAXDL_INLINE void normalize_any(const T* x, const T* residual, const float* a, const float* b,
                                T* y, int64_t begin, int64_t end, int64_t c, bool relu) {
  if (relu && residual) normalize_rows<true, true>(x, residual, a, b, y, begin, end, c);
  if (relu && !residual) normalize_rows<true, false>(x, residual, a, b, y, begin, end, c);
  if (!relu && residual) normalize_rows<false, true>(x, residual, a, b, y, begin, end, c);
  if (!relu && !residual) normalize_rows<false, false>(x, residual, a, b, y, begin, end, c);
}

JAXDL_CLONES void normalize(const float* x, const float* residual, const float* a,
                            const float* b, float* y, int64_t begin, int64_t end, int64_t c,
                            bool relu) {
  normalize_any(x, residual, a, b, y, begin, end, c, relu);
}
JAXDL_CLONES void normalize(const bf16* x, const bf16* residual, const float* a, const float* b,
                            bf16* y, int64_t begin, int64_t end, int64_t c, bool relu) {
  normalize_any(x, residual, a, b, y, begin, end, c, relu);
}

// dx = p * g + q * x + o and dresidual = g (when wanted), g = dy masked as `Mask` says.
template <Mask kMask, bool kResidual, typename T>
JAXDL_INLINE void gradient_rows(const T* __restrict__ dy, const T* __restrict__ x,
                                const T* __restrict__ y, const float* __restrict__ mask_a,
                                const float* __restrict__ mask_b, const float* __restrict__ p,
                                const float* __restrict__ q, const float* __restrict__ o,
                                T* __restrict__ dx, T* __restrict__ dresidual, int64_t begin,
                                int64_t end, int64_t c) {
  for (int64_t r = begin; r < end; ++r) {
    const T* dyr = dy + r * c;
    const T* xr = x + r * c;
    const T* yr = y + (kMask == Mask::kOutput ? r * c : 0);
    T* dxr = dx + r * c;
    T* drr = dresidual + (kResidual ? r * c : 0);
    for (int64_t j = 0; j < c; ++j) {
      float g = widen(dyr[j]), xj = widen(xr[j]);
      if (kMask == Mask::kOutput) g = widen(yr[j]) > 0.0f ? g : 0.0f;
      if (kMask == Mask::kAffine) g = passes(xj, mask_a[j], mask_b[j]) ? g : 0.0f;
      dxr[j] = narrow<T>(p[j] * g + q[j] * xj + o[j]);
      if (kResidual) drr[j] = narrow<T>(g);
    }
  }
}

template <typename T>
JAXDL_INLINE void gradient_any(const T* dy, const T* x, Mask mode, const T* y,
                               const float* mask_a, const float* mask_b, const float* p,
                               const float* q, const float* o, T* dx, T* dresidual,
                               int64_t begin, int64_t end, int64_t c) {
  const T* none = nullptr;
  T* no_output = nullptr;
  // The masked cases that occur: a ReLU after an add masks by y (and has a residual), one
  // without an add by x * a + b (and has none).
  if (mode == Mask::kOutput && dresidual) {
    gradient_rows<Mask::kOutput, true>(dy, x, y, nullptr, nullptr, p, q, o, dx, dresidual,
                                       begin, end, c);
  } else if (mode == Mask::kAffine) {
    gradient_rows<Mask::kAffine, false>(dy, x, none, mask_a, mask_b, p, q, o, dx, no_output,
                                        begin, end, c);
  } else if (dresidual) {
    gradient_rows<Mask::kNone, true>(dy, x, none, nullptr, nullptr, p, q, o, dx, dresidual,
                                     begin, end, c);
  } else {
    gradient_rows<Mask::kNone, false>(dy, x, none, nullptr, nullptr, p, q, o, dx, no_output,
                                      begin, end, c);
  }
}

JAXDL_CLONES void gradient(const float* dy, const float* x, Mask mode, const float* y,
                           const float* mask_a, const float* mask_b, const float* p,
                           const float* q, const float* o, float* dx, float* dresidual,
                           int64_t begin, int64_t end, int64_t c) {
  gradient_any(dy, x, mode, y, mask_a, mask_b, p, q, o, dx, dresidual, begin, end, c);
}
JAXDL_CLONES void gradient(const bf16* dy, const bf16* x, Mask mode, const bf16* y,
                           const float* mask_a, const float* mask_b, const float* p,
                           const float* q, const float* o, bf16* dx, bf16* dresidual,
                           int64_t begin, int64_t end, int64_t c) {
  gradient_any(dy, x, mode, y, mask_a, mask_b, p, q, o, dx, dresidual, begin, end, c);
}

// The per-channel sums of (u, u * v) over all `rows`, u masked as `mode` says, threads'
// partial sums added in order (so the result does not depend on timing).
template <typename T>
void channel_sums(const T* u, const T* v, Mask mode, const T* mask, const float* mask_a,
                  const float* mask_b, int64_t rows, int64_t c, std::vector<double>* sum_u,
                  std::vector<double>* sum_uv) {
  int threads = omp_get_max_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * 2 * c, 0.0);
  std::vector<int> used(1, 1);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    if (t == 0) used[0] = omp_get_num_threads();
    std::vector<float> block(2 * c);
    int64_t begin, end;
    thread_rows(rows, &begin, &end);
    double* mine = partial.data() + static_cast<size_t>(t) * 2 * c;
    sums(u, v, mode, mask, mask_a, mask_b, begin, end, c, block.data(), block.data() + c, mine,
         mine + c);
  }
  sum_u->assign(c, 0.0);
  sum_uv->assign(c, 0.0);
  for (int t = 0; t < used[0]; ++t) {
    const double* part = partial.data() + static_cast<size_t>(t) * 2 * c;
    for (int64_t j = 0; j < c; ++j) {
      (*sum_u)[j] += part[j];
      (*sum_uv)[j] += part[c + j];
    }
  }
}

// [M, C] with C the last dimension of `dims`.
bool rows_and_channels(ffi::Span<const int64_t> dims, int64_t* rows, int64_t* channels) {
  if (dims.size() < 1 || dims.back() < 1) return false;
  *channels = dims.back();
  *rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) *rows *= dims[i];
  return true;
}

// The normalisation as an affine map, a = scale / sqrt(var + epsilon), b = bias - mean * a,
// from the float32 mean and var the forward returns: the backward calls it with those and gets
// the forward's a and b bit for bit.
void affine(const float* scale, const float* bias, const float* mean, const float* var,
            float epsilon, int64_t c, float* a, float* b) {
  for (int64_t j = 0; j < c; ++j) {
    a[j] = scale[j] / std::sqrt(var[j] + epsilon);
    b[j] = bias[j] - mean[j] * a[j];
  }
}

template <typename T>
ffi::Error forward(const T* x, const T* residual, const float* scale, const float* bias,
                   ffi::Span<const int64_t> dims, float epsilon, bool relu, T* y, float* mean,
                   float* var) {
  int64_t m, c;
  if (!rows_and_channels(dims, &m, &c) || m < 1) {
    return ffi::Error::InvalidArgument("jaxdl BatchNorm: x needs at least one row and channel");
  }
  std::vector<double> sum, sum_sq;
  channel_sums(x, x, Mask::kNone, static_cast<const T*>(nullptr), nullptr, nullptr, m, c, &sum,
               &sum_sq);
  for (int64_t j = 0; j < c; ++j) {
    double mu = sum[j] / m;
    mean[j] = static_cast<float>(mu);
    var[j] = static_cast<float>(std::max(sum_sq[j] / m - mu * mu, 0.0));
  }
  std::vector<float> a(c), b(c);
  affine(scale, bias, mean, var, epsilon, c, a.data(), b.data());
#pragma omp parallel
  {
    int64_t begin, end;
    thread_rows(m, &begin, &end);
    normalize(x, residual, a.data(), b.data(), y, begin, end, c, relu);
  }
  return ffi::Error::Success();
}

// The gradients; `mode` says how the forward's ReLU masks dy: not at all, by `y` > 0 (a ReLU
// after an add), or by x * a + b > 0 (a ReLU without one; `bias` given).
template <typename T>
ffi::Error backward(const T* dy, const T* x, Mask mode, const T* y, const float* scale,
                    const float* bias, const float* mean, const float* var,
                    ffi::Span<const int64_t> dims, float epsilon, T* dx, float* dscale,
                    float* dbias, T* dresidual) {
  int64_t m, c;
  if (!rows_and_channels(dims, &m, &c) || m < 1) {
    return ffi::Error::InvalidArgument("jaxdl BatchNorm: x needs at least one row and channel");
  }
  std::vector<float> a(c), b(c);
  if (mode == Mask::kAffine) affine(scale, bias, mean, var, epsilon, c, a.data(), b.data());
  std::vector<double> sum_g, sum_gx;
  channel_sums(dy, x, mode, y, a.data(), b.data(), m, c, &sum_g, &sum_gx);
  std::vector<float> p(c), q(c), o(c);
  for (int64_t j = 0; j < c; ++j) {
    double inv = 1.0 / std::sqrt(static_cast<double>(var[j]) + epsilon);
    double db = sum_g[j];
    double ds = (sum_gx[j] - mean[j] * db) * inv;  // sum g * xhat
    double k = scale[j] * inv / m;
    double coef_x = -k * ds * inv;
    dbias[j] = static_cast<float>(db);
    dscale[j] = static_cast<float>(ds);
    p[j] = static_cast<float>(k * m);
    q[j] = static_cast<float>(coef_x);
    o[j] = static_cast<float>(-k * db - coef_x * mean[j]);
  }
#pragma omp parallel
  {
    int64_t begin, end;
    thread_rows(m, &begin, &end);
    gradient(dy, x, mode, y, a.data(), b.data(), p.data(), q.data(), o.data(), dx, dresidual,
             begin, end, c);
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using F32Out = ffi::ResultBuffer<ffi::F32>;
using Any = ffi::AnyBuffer;
using AnyOut = ffi::Result<ffi::AnyBuffer>;

template <typename T>
const T* in(const Any& buffer) {
  return static_cast<const T*>(buffer.untyped_data());
}
template <typename T>
T* out(AnyOut& buffer) {
  return static_cast<T*>(buffer->untyped_data());
}

// Runs `call(tag)` with the tag of the activations' type (`float_tag`, `bf16_tag`): the
// activations and their gradients must all be float32 or all bfloat16.
template <typename Call>
ffi::Error by_type(std::initializer_list<ffi::DataType> types, Call call) {
  ffi::DataType first = *types.begin();
  bool same = std::all_of(types.begin(), types.end(), [&](ffi::DataType t) { return t == first; });
  if (same && first == ffi::DataType::F32) return call(float_tag{});
  if (same && first == ffi::DataType::BF16) return call(bf16_tag{});
  return ffi::Error::InvalidArgument(
      "jaxdl BatchNorm: the activations and their gradients must all be float32 or all "
      "bfloat16");
}

ffi::Error ForwardImpl(Any x, F32 scale, F32 bias, AnyOut y, F32Out mean, F32Out var,
                       float epsilon, bool relu) {
  return by_type({x.element_type(), y->element_type()}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return forward(in<T>(x), static_cast<const T*>(nullptr), scale.typed_data(),
                   bias.typed_data(), x.dimensions(), epsilon, relu, out<T>(y),
                   mean->typed_data(), var->typed_data());
  });
}

ffi::Error ForwardAddImpl(Any x, Any residual, F32 scale, F32 bias, AnyOut y, F32Out mean,
                          F32Out var, float epsilon, bool relu) {
  return by_type({x.element_type(), residual.element_type(), y->element_type()}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return forward(in<T>(x), in<T>(residual), scale.typed_data(), bias.typed_data(),
                   x.dimensions(), epsilon, relu, out<T>(y), mean->typed_data(),
                   var->typed_data());
  });
}

ffi::Error BackwardImpl(Any dy, Any x, F32 scale, F32 mean, F32 var, AnyOut dx, F32Out dscale,
                        F32Out dbias, float epsilon) {
  return by_type({dy.element_type(), x.element_type(), dx->element_type()}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return backward(in<T>(dy), in<T>(x), Mask::kNone, static_cast<const T*>(nullptr),
                    scale.typed_data(), nullptr, mean.typed_data(), var.typed_data(),
                    x.dimensions(), epsilon, out<T>(dx), dscale->typed_data(),
                    dbias->typed_data(), static_cast<T*>(nullptr));
  });
}

ffi::Error BackwardReluImpl(Any dy, Any x, F32 scale, F32 bias, F32 mean, F32 var, AnyOut dx,
                            F32Out dscale, F32Out dbias, float epsilon) {
  return by_type({dy.element_type(), x.element_type(), dx->element_type()}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return backward(in<T>(dy), in<T>(x), Mask::kAffine, static_cast<const T*>(nullptr),
                    scale.typed_data(), bias.typed_data(), mean.typed_data(), var.typed_data(),
                    x.dimensions(), epsilon, out<T>(dx), dscale->typed_data(),
                    dbias->typed_data(), static_cast<T*>(nullptr));
  });
}

ffi::Error BackwardAddImpl(Any dy, Any x, F32 scale, F32 mean, F32 var, AnyOut dx,
                           F32Out dscale, F32Out dbias, AnyOut dresidual, float epsilon) {
  auto types = {dy.element_type(), x.element_type(), dx->element_type(),
                dresidual->element_type()};
  return by_type(types, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return backward(in<T>(dy), in<T>(x), Mask::kNone, static_cast<const T*>(nullptr),
                    scale.typed_data(), nullptr, mean.typed_data(), var.typed_data(),
                    x.dimensions(), epsilon, out<T>(dx), dscale->typed_data(),
                    dbias->typed_data(), out<T>(dresidual));
  });
}

ffi::Error BackwardReluAddImpl(Any dy, Any x, Any y, F32 scale, F32 mean, F32 var, AnyOut dx,
                               F32Out dscale, F32Out dbias, AnyOut dresidual, float epsilon) {
  auto types = {dy.element_type(), x.element_type(), y.element_type(), dx->element_type(),
                dresidual->element_type()};
  return by_type(types, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return backward(in<T>(dy), in<T>(x), Mask::kOutput, in<T>(y), scale.typed_data(), nullptr,
                    mean.typed_data(), var.typed_data(), x.dimensions(), epsilon, out<T>(dx),
                    dscale->typed_data(), dbias->typed_data(), out<T>(dresidual));
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // x
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // bias
                                  .Ret<Any>()  // y
                                  .Ret<F32>()  // mean
                                  .Ret<F32>()  // var
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormForwardAdd, ForwardAddImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // x
                                  .Arg<Any>()  // residual
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // bias
                                  .Ret<Any>()  // y
                                  .Ret<F32>()  // mean
                                  .Ret<F32>()  // var
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // dy
                                  .Arg<Any>()  // x
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // mean
                                  .Arg<F32>()  // var
                                  .Ret<Any>()  // dx
                                  .Ret<F32>()  // dscale
                                  .Ret<F32>()  // dbias
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormBackwardRelu, BackwardReluImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // dy
                                  .Arg<Any>()  // x
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // bias (the ReLU's mask is x * a + b > 0)
                                  .Arg<F32>()  // mean
                                  .Arg<F32>()  // var
                                  .Ret<Any>()  // dx
                                  .Ret<F32>()  // dscale
                                  .Ret<F32>()  // dbias
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormBackwardAdd, BackwardAddImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // dy
                                  .Arg<Any>()  // x
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // mean
                                  .Arg<F32>()  // var
                                  .Ret<Any>()  // dx
                                  .Ret<F32>()  // dscale
                                  .Ret<F32>()  // dbias
                                  .Ret<Any>()  // dresidual
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlBatchNormBackwardReluAdd, BackwardReluAddImpl,
                              ffi::Ffi::Bind()
                                  .Arg<Any>()  // dy
                                  .Arg<Any>()  // x
                                  .Arg<Any>()  // y, the forward's output (its ReLU mask)
                                  .Arg<F32>()  // scale
                                  .Arg<F32>()  // mean
                                  .Arg<F32>()  // var
                                  .Ret<Any>()  // dx
                                  .Ret<F32>()  // dscale
                                  .Ret<F32>()  // dbias
                                  .Ret<Any>()  // dresidual
                                  .Attr<float>("epsilon"));
