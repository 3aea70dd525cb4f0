// A convolution's weight gradient as one matrix product over the batch (im2col + GEMM), an XLA
// FFI handler beside oneDNN's own (`conv.cc`), float32, NHWC input, HWIO kernel, groups 1:
//
//   dkernel[kh, kw, c, f] = sum over n, oh, ow of x[n, ih, iw, c] * dy[n, oh, ow, f],
//   ih = oh * stride_h - pad_top + kh * dilation_h (iw likewise; zero outside the image)
//
// i.e. dkernel, seen as [kh * kw * C, F], is col^T @ dy with col[n * H' * W' + oh * W' + ow,
// (kh * KW + kw) * C + c] the input patch under each output pixel (im2col) and dy seen as
// [N * H' * W', F]. The rows are split between OpenMP threads; each thread builds `kChunkRows`
// rows of col at a time (a few MB, so they are still in cache when the product reads them)
// and accumulates col^T @ dy into its own [kh * kw * C, F] partial (the first thread into the
// result itself) with oneDNN's sgemm, which runs single-threaded inside the parallel region.
// The partials are added in thread order, so the result does not depend on timing.
//
// Why: on AVX2 CPUs oneDNN 3.2 has no brgemm weight-gradient kernel; its `jit:avx2` one runs
// at ~60 % of the forward pass's speed on airbench94's wide layers (1024x7x7x256 -> 256: 447
// ms against 267 for the forward), while this product runs at the sgemm's (~364 ms).
// `jaxdl.ops.onednn.tuning` times it beside oneDNN's and XLA's and keeps the fastest.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "oneapi/dnnl/dnnl.h"
#include "xla/ffi/api/ffi.h"
#include "thread_buffer.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kChunkRows = 256;  // rows of col built and multiplied at a time, per thread

struct Geometry {
  int64_t n, h, w, c;       // input
  int64_t kh, kw, f;        // kernel
  int64_t oh, ow;           // output
  int64_t sh, sw, pt, pl;   // strides, top and left padding
  int64_t dh, dw;           // dilation
};

// Per thread: the block of col it is building, and (threads after the first) its partial sum
// of the weight gradient; the first thread accumulates straight into the result.
thread_local jaxdl::ThreadBuffer col_buffer;
thread_local jaxdl::ThreadBuffer partial_buffer;

// How a thread's share ended.
enum class Outcome { kDone, kNoMemory, kSgemmFailed };

// Rows [r0, r0 + rows) of col into `col` ([rows, kh * kw * c]).
void im2col(const float* x, const Geometry& g, int64_t r0, int64_t rows, float* col) {
  const int64_t kc = g.kh * g.kw * g.c, per_image = g.oh * g.ow;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t q = r0 + r, image = q / per_image, pixel = q % per_image;
    int64_t oy = pixel / g.ow, ox = pixel % g.ow;
    float* out = col + r * kc;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      int64_t iy = oy * g.sh - g.pt + ky * g.dh;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        int64_t ix = ox * g.sw - g.pl + kx * g.dw;
        float* patch = out + (ky * g.kw + kx) * g.c;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
          std::memset(patch, 0, g.c * sizeof(float));
        } else {
          std::memcpy(patch, x + ((image * g.h + iy) * g.w + ix) * g.c, g.c * sizeof(float));
        }
      }
    }
  }
}

ffi::Error backward_weights(const float* x, const float* dy, float* dkernel, const Geometry& g) {
  const int64_t kc = g.kh * g.kw * g.c, rows = g.n * g.oh * g.ow, size = kc * g.f;
  const int threads = omp_get_max_threads();
  std::vector<float*> sums(threads, nullptr);
  std::vector<int> used(1, 1);
  std::vector<Outcome> outcome(threads, Outcome::kDone);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), count = omp_get_num_threads();
    if (t == 0) used[0] = count;
    const int64_t begin = rows * t / count, end = rows * (t + 1) / count;
    float* col = col_buffer.get<float>(static_cast<size_t>(kChunkRows) * kc);
    float* mine = t == 0 ? dkernel : partial_buffer.get<float>(static_cast<size_t>(size));
    sums[t] = mine;
    if (col == nullptr || mine == nullptr) {
      outcome[t] = Outcome::kNoMemory;
    } else {
      if (begin == end) std::memset(mine, 0, size * sizeof(float));
      for (int64_t r0 = begin; r0 < end; r0 += kChunkRows) {
        const int64_t chunk = std::min(kChunkRows, end - r0);
        im2col(x, g, r0, chunk, col);
        // mine[kc, f] (+)= col^T [kc, chunk] @ dy[r0 : r0 + chunk, f]
        if (dnnl_sgemm('T', 'N', kc, g.f, chunk, 1.0f, col, kc, dy + r0 * g.f, g.f,
                       r0 == begin ? 0.0f : 1.0f, mine, g.f) != dnnl_success) {
          outcome[t] = Outcome::kSgemmFailed;
          break;
        }
      }
    }
  }
  for (int t = 0; t < used[0]; ++t) {
    if (outcome[t] == Outcome::kNoMemory) {
      return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                        "jaxdl gemm weight gradient: out of memory for its per-thread buffers");
    }
    if (outcome[t] == Outcome::kSgemmFailed) {
      return ffi::Error::Internal("oneDNN sgemm failed in the weight gradient");
    }
  }
  // Added in thread order, so the result does not depend on timing.
  for (int t = 1; t < used[0]; ++t) {
    const float* part = sums[t];
    for (int64_t i = 0; i < size; ++i) dkernel[i] += part[i];
  }
  return ffi::Error::Success();
}

ffi::Error ConvBackwardWeightsGemmImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                                       ffi::ResultBuffer<ffi::F32> dkernel,
                                       ffi::Span<const int64_t> strides,
                                       ffi::Span<const int64_t> padding,
                                       ffi::Span<const int64_t> dilation, int64_t groups,
                                       int64_t impl) {
  auto xd = x.dimensions(), kd = dkernel->dimensions(), yd = dy.dimensions();
  if (xd.size() != 4 || kd.size() != 4 || yd.size() != 4 || strides.size() != 2 ||
      padding.size() != 4 || dilation.size() != 2 || groups != 1 || impl != 0 ||
      kd[2] != xd[3] || kd[3] != yd[3] || xd[0] != yd[0]) {
    return ffi::Error::InvalidArgument(
        "jaxdl gemm weight gradient: NHWC x, NHWC dy, HWIO kernel, strides (2), padding (4), "
        "dilation (2), groups 1, impl 0");
  }
  Geometry g{xd[0],      xd[1],      xd[2],       xd[3],      kd[0],      kd[1],
             kd[3],      yd[1],      yd[2],       strides[0], strides[1], padding[0],
             padding[2], dilation[0], dilation[1]};
  return backward_weights(x.typed_data(), dy.typed_data(), dkernel->typed_data(), g);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdlConvBackwardWeightsGemm, ConvBackwardWeightsGemmImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x, NHWC
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy, NHWC
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dkernel, HWIO
                                  .Attr<ffi::Span<const int64_t>>("strides")
                                  .Attr<ffi::Span<const int64_t>>("padding")
                                  .Attr<ffi::Span<const int64_t>>("dilation")
                                  .Attr<int64_t>("groups")
                                  .Attr<int64_t>("impl"));
