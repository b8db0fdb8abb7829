// glint's own CUDA kernels, compiled to PTX by build.rs when the `cuda` feature is on.
//
// masked_softmax_*: scale + causal mask + softmax in one pass over attention scores, so the
//   [heads, t, t] score block is read once and written once (instead of the five passes of
//   scale, cast to f32, mask add, softmax and cast back).
// sae_topk_*: bias + ReLU + exact top-k of each row of SAE pre-activations by radix select,
//   one thread block per row, results sorted by value (descending), ties by lower index.
// flash_attention_*, flash_combine_*: attention in one pass over the keys (flash_attention.cu).

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);
}
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

// Whether a pointer allows 16-byte vector accesses.
__device__ __forceinline__ bool aligned16(const void *p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// V elements from `src` into registers (one 16-byte access when V > 1), and back.
template <typename T, int V> __device__ __forceinline__ void load_vec(T (&dst)[V], const T *src) {
    if constexpr (V == 1) {
        dst[0] = src[0];
    } else {
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    }
}
template <typename T, int V> __device__ __forceinline__ void store_vec(T *dst, const T (&src)[V]) {
    if constexpr (V == 1) {
        dst[0] = src[0];
    } else {
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    }
}

// ---------------------------------------------------------------------------------------------
// Masked softmax: one warp per row of `cols` scores. Row r is query (r % t_q), at absolute
// position past + (r % t_q); with `causal`, keys after that position get probability 0.

#define SOFTMAX_WARPS 4

__device__ __forceinline__ void online_add(float v, float &m, float &l) {
    if (v > m) {
        l = l * expf(m - v) + 1.f;
        m = v;
    } else {
        l += expf(v - m);
    }
}

template <typename T>
__device__ void masked_softmax(const T *__restrict__ x, T *__restrict__ y, int rows, int cols,
                               int t_q, int past, int causal, float scale) {
    const int row = blockIdx.x * SOFTMAX_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * cols;
    T *yr = y + (size_t)row * cols;
    const int limit = causal ? min(cols, past + (row % t_q) + 1) : cols;
    // 16-byte loads and stores when rows allow it (keys are padded to a multiple of 8).
    constexpr int V = 16 / sizeof(T);
    const bool vec = cols % V == 0 && aligned16(x) && aligned16(y);

    // Online max and sum: one read of the row for both.
    float m = -INFINITY, l = 0.f;
    if (vec) {
        for (int c0 = lane * V; c0 < limit; c0 += 32 * V) {
            alignas(16) T vals[V];
            *reinterpret_cast<uint4 *>(vals) = *reinterpret_cast<const uint4 *>(xr + c0);
#pragma unroll
            for (int i = 0; i < V; i++) {
                if (c0 + i < limit) online_add(to_f(vals[i]) * scale, m, l);
            }
        }
    } else {
        for (int c = lane; c < limit; c += 32) online_add(to_f(xr[c]) * scale, m, l);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffff, m, off);
        const float l2 = __shfl_xor_sync(0xffffffff, l, off);
        const float mn = fmaxf(m, m2);
        const float a = (m == -INFINITY) ? 0.f : l * expf(m - mn);
        const float b = (m2 == -INFINITY) ? 0.f : l2 * expf(m2 - mn);
        m = mn;
        l = a + b;
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    if (vec) {
        for (int c0 = lane * V; c0 < cols; c0 += 32 * V) {
            alignas(16) T vals[V];
            if (c0 < limit) {
                *reinterpret_cast<uint4 *>(vals) = *reinterpret_cast<const uint4 *>(xr + c0);
            }
#pragma unroll
            for (int i = 0; i < V; i++) {
                const int c = c0 + i;
                vals[i] = from_f<T>(c < limit ? expf(to_f(vals[i]) * scale - m) * inv : 0.f);
            }
            *reinterpret_cast<uint4 *>(yr + c0) = *reinterpret_cast<const uint4 *>(vals);
        }
    } else {
        for (int c = lane; c < cols; c += 32) {
            const float p = c < limit ? expf(to_f(xr[c]) * scale - m) * inv : 0.f;
            yr[c] = from_f<T>(p);
        }
    }
}

#define SOFTMAX_OP(T, NAME)                                                                       \
    extern "C" __global__ void NAME(const T *x, T *y, int rows, int cols, int t_q, int past,     \
                                    int causal, float scale) {                                   \
        masked_softmax<T>(x, y, rows, cols, t_q, past, causal, scale);                           \
    }

SOFTMAX_OP(float, masked_softmax_f32)
SOFTMAX_OP(__nv_bfloat16, masked_softmax_bf16)
SOFTMAX_OP(__half, masked_softmax_f16)

// ---------------------------------------------------------------------------------------------
// SAE top-k. Keys are the f32 bits of relu(pre + bias) rounded to T (as the unfused add does):
// non-negative floats order as their bit patterns, so the k-th largest value is found a byte at
// a time from the top (a radix select); bf16 needs 2 byte passes, f16 3, f32 4.

#define TOPK_THREADS 512
#define TOPK_WARPS (TOPK_THREADS / 32)
#define TOPK_MAX_K 1024

template <typename T> __device__ __forceinline__ uint32_t topk_key(T raw, T bias) {
    const float v = to_f(from_f<T>(to_f(raw) + to_f(bias)));
    return __float_as_uint(v > 0.f ? v : 0.f);
}

__device__ __forceinline__ uint32_t warp_inclusive_scan(uint32_t v, int lane) {
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const uint32_t n = __shfl_up_sync(0xffffffff, v, off);
        if (lane >= off) v += n;
    }
    return v;
}

// The keys of x[c0 .. c0 + V) with their biases, V = 1 or one 16-byte load of each.
template <typename T, int V>
__device__ __forceinline__ void load_keys(const T *x, const T *bias, int c0, int n,
                                          uint32_t (&keys)[V]) {
    if constexpr (V == 1) {
        keys[0] = c0 < n ? topk_key(x[c0], bias[c0]) : 0u;
    } else {
        alignas(16) T xv[V];
        alignas(16) T bv[V];
        if (c0 < n) {
            load_vec<T, V>(xv, x + c0);
            load_vec<T, V>(bv, bias + c0);
        }
#pragma unroll
        for (int i = 0; i < V; i++) keys[i] = c0 < n ? topk_key(xv[i], bv[i]) : 0u;
    }
}

// One row per block. V consecutive values per thread and load (rows of a multiple of V, 16-byte
// aligned) or one (any other row).
struct TopkShared {
    uint32_t hist[TOPK_WARPS][256];
    uint32_t warp_tot[TOPK_WARPS];
    uint32_t prefix, remaining, total;
    unsigned long long sorted[TOPK_MAX_K];
};

template <typename T, int PASSES, int V>
__device__ void sae_topk_row(const T *__restrict__ x, const T *__restrict__ bias,
                             float *__restrict__ out_vals, uint32_t *__restrict__ out_idx, int n,
                             int k, TopkShared &sh) {
    auto &hist = sh.hist;
    auto &warp_tot = sh.warp_tot;
    auto &sorted = sh.sorted;
    uint32_t &s_prefix = sh.prefix, &s_remaining = sh.remaining, &s_total = sh.total;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    constexpr int STEP = TOPK_THREADS * V;

    // Radix passes over the keys' bytes from the top. The first pass histograms every positive
    // key, so it also counts them: with at most k positive the threshold is 0 and the remaining
    // places go to zeros of the lowest indices (as the host path orders ties).
    uint32_t thr = 0, greater = 0, needed_eq = 0;
    uint32_t prefix = 0, prefix_mask = 0, remaining = k;
    for (int p = 0; p < PASSES; ++p) {
        const int shift = 24 - 8 * p;
        for (int i = tid; i < TOPK_WARPS * 256; i += TOPK_THREADS) (&hist[0][0])[i] = 0;
        __syncthreads();
        for (int c0 = tid * V; c0 < n; c0 += STEP) {
            uint32_t keys[V];
            load_keys<T, V>(x, bias, c0, n, keys);
#pragma unroll
            for (int i = 0; i < V; i++) {
                if (keys[i] != 0 && (keys[i] & prefix_mask) == prefix)
                    atomicAdd(&hist[warp][(keys[i] >> shift) & 255], 1u);
            }
        }
        __syncthreads();
        // Fold the per-warp histograms into the first one.
        for (int b = tid; b < 256; b += TOPK_THREADS) {
            uint32_t s = 0;
            for (int w = 0; w < TOPK_WARPS; ++w) s += hist[w][b];
            hist[0][b] = s;
        }
        __syncthreads();
        if (tid == 0) {
            uint32_t above = 0, all = 0;
            for (int b = 0; b < 256; ++b) all += hist[0][b];
            int b = 255;
            for (; b > 0; --b) {
                if (above + hist[0][b] >= remaining) break;
                above += hist[0][b];
            }
            s_prefix = prefix | ((uint32_t)b << shift);
            s_remaining = remaining - above;
            s_total = all;
        }
        __syncthreads();
        if (p == 0 && s_total <= (uint32_t)k) {
            greater = s_total;
            needed_eq = k - s_total;
            break;
        }
        prefix = s_prefix;
        remaining = s_remaining;
        prefix_mask |= 0xFFu << shift;
        thr = prefix;
        greater = k - remaining;
        needed_eq = remaining;
        __syncthreads();
    }

    // Gather in index order with a block-wide scan of (greater, equal) counts packed in 16-bit
    // halves (a chunk holds at most STEP of each).
    uint32_t base_gt = 0, base_eq = 0;
    for (int start = 0; start < n; start += STEP) {
        const int c0 = start + tid * V;
        uint32_t keys[V];
        load_keys<T, V>(x, bias, c0, n, keys);
        uint32_t v = 0;
#pragma unroll
        for (int i = 0; i < V; i++) {
            const bool live = c0 + i < n;
            v += (uint32_t)(live && keys[i] > thr) | ((uint32_t)(live && keys[i] == thr) << 16);
        }
        const uint32_t incl = warp_inclusive_scan(v, lane);
        if (lane == 31) warp_tot[warp] = incl;
        __syncthreads();
        if (warp == 0) {
            const uint32_t w = lane < TOPK_WARPS ? warp_tot[lane] : 0;
            const uint32_t wi = warp_inclusive_scan(w, lane);
            if (lane < TOPK_WARPS) warp_tot[lane] = wi - w;
            if (lane == TOPK_WARPS - 1) s_total = wi;
        }
        __syncthreads();
        const uint32_t excl = warp_tot[warp] + incl - v;
        uint32_t rank_g = base_gt + (excl & 0xFFFF);
        uint32_t rank_e = base_eq + (excl >> 16);
#pragma unroll
        for (int i = 0; i < V; i++) {
            const int c = c0 + i;
            if (c >= n) continue;
            const unsigned long long packed =
                ((unsigned long long)keys[i] << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)c);
            if (keys[i] > thr) {
                sorted[rank_g++] = packed;
            } else if (keys[i] == thr) {
                if (rank_e < needed_eq) sorted[greater + rank_e] = packed;
                rank_e++;
            }
        }
        const uint32_t tot = s_total;
        base_gt += tot & 0xFFFF;
        base_eq += tot >> 16;
        __syncthreads();
        if (base_gt >= greater && base_eq >= needed_eq) break;
    }

    // Bitonic sort of the k packed (key, reversed index) words, descending: value descending,
    // equal values by lower index.
    int size = 1;
    while (size < k) size <<= 1;
    for (int i = k + tid; i < size; i += TOPK_THREADS) sorted[i] = 0ull;
    __syncthreads();
    for (int span = 2; span <= size; span <<= 1) {
        for (int stride = span >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < size; i += TOPK_THREADS) {
                const int j = i ^ stride;
                if (j > i) {
                    const unsigned long long a = sorted[i], b = sorted[j];
                    const bool descending = (i & span) == 0;
                    if (descending ? (a < b) : (a > b)) {
                        sorted[i] = b;
                        sorted[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
    float *vals = out_vals + (size_t)blockIdx.x * k;
    uint32_t *idx = out_idx + (size_t)blockIdx.x * k;
    for (int i = tid; i < k; i += TOPK_THREADS) {
        const unsigned long long w = sorted[i];
        vals[i] = __uint_as_float((uint32_t)(w >> 32));
        idx[i] = 0xFFFFFFFFu - (uint32_t)(w & 0xFFFFFFFFull);
    }
}

template <typename T, int PASSES>
__device__ void sae_topk(const T *__restrict__ pre, const T *__restrict__ bias,
                         float *__restrict__ out_vals, uint32_t *__restrict__ out_idx, int n,
                         int k) {
    // One copy of the scratch for both instantiations below.
    __shared__ TopkShared sh;
    constexpr int V = 16 / sizeof(T);
    const T *x = pre + (size_t)blockIdx.x * n;
    const bool vec = n % V == 0 && aligned16(x) && aligned16(bias);
    if (vec) {
        sae_topk_row<T, PASSES, V>(x, bias, out_vals, out_idx, n, k, sh);
    } else {
        sae_topk_row<T, PASSES, 1>(x, bias, out_vals, out_idx, n, k, sh);
    }
}

#define TOPK_OP(T, PASSES, NAME)                                                                  \
    extern "C" __global__ void NAME(const T *pre, const T *bias, float *vals, uint32_t *idx,     \
                                    int n, int k) {                                              \
        sae_topk<T, PASSES>(pre, bias, vals, idx, n, k);                                         \
    }

TOPK_OP(float, 4, sae_topk_f32)
TOPK_OP(__nv_bfloat16, 2, sae_topk_bf16)
TOPK_OP(__half, 3, sae_topk_f16)

// ---------------------------------------------------------------------------------------------
// Decoder-layer kernels. Each rounds to T exactly where transformers' bf16 Llama does (after the
// f32 normalisation, after the activation, after the residual add), so the fused path stays as
// close to the reference as the unfused one while reading and writing each tensor once.

#define NORM_THREADS 256

__device__ __forceinline__ float block_sum(float v, float *scratch) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? scratch[lane] : 0.f;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    return scratch[0];
}

// y = T(x / rms(x)) * w per row of d; with `delta`, x is first replaced by T(x + delta), which is
// also written to `sum` (the residual add of a decoder layer fused with the next norm). Rows of a
// multiple of V = 16 / sizeof(T) (16-byte aligned) are read and written V elements at a time: a
// decoding step normalises one row, where a block's loop of scalar loads is all latency.
template <typename T, int V>
__device__ void rms_norm_row(const T *__restrict__ x, const T *__restrict__ delta,
                             const T *__restrict__ w, T *__restrict__ sum, T *__restrict__ y,
                             int d, float eps, float *scratch) {
    const size_t base = (size_t)blockIdx.x * d;
    float acc = 0.f;
    for (int c0 = threadIdx.x * V; c0 < d; c0 += blockDim.x * V) {
        alignas(16) T xv[V];
        load_vec<T, V>(xv, x + base + c0);
        if (delta != nullptr) {
            alignas(16) T dv[V];
            load_vec<T, V>(dv, delta + base + c0);
#pragma unroll
            for (int i = 0; i < V; i++) xv[i] = from_f<T>(to_f(xv[i]) + to_f(dv[i]));
            store_vec<T, V>(sum + base + c0, xv);
        }
#pragma unroll
        for (int i = 0; i < V; i++) acc += to_f(xv[i]) * to_f(xv[i]);
    }
    const float inv = rsqrtf(block_sum(acc, scratch) / (float)d + eps);
    const T *src = delta != nullptr ? sum : x;
    for (int c0 = threadIdx.x * V; c0 < d; c0 += blockDim.x * V) {
        alignas(16) T xv[V];
        alignas(16) T wv[V];
        load_vec<T, V>(xv, src + base + c0);
        load_vec<T, V>(wv, w + c0);
#pragma unroll
        for (int i = 0; i < V; i++) {
            const float n = to_f(from_f<T>(to_f(xv[i]) * inv));
            xv[i] = from_f<T>(n * to_f(wv[i]));
        }
        store_vec<T, V>(y + base + c0, xv);
    }
}

template <typename T>
__device__ void rms_norm_rows(const T *__restrict__ x, const T *__restrict__ delta,
                              const T *__restrict__ w, T *__restrict__ sum, T *__restrict__ y,
                              int d, float eps) {
    __shared__ float scratch[32];
    constexpr int V = 16 / sizeof(T);
    const bool vec = d % V == 0 && aligned16(x) && aligned16(w) && aligned16(y) &&
                     (delta == nullptr || (aligned16(delta) && aligned16(sum)));
    if (vec) {
        rms_norm_row<T, V>(x, delta, w, sum, y, d, eps, scratch);
    } else {
        rms_norm_row<T, 1>(x, delta, w, sum, y, d, eps, scratch);
    }
}

#define NORM_OP(T, NAME, ADD_NAME)                                                                \
    extern "C" __global__ void NAME(const T *x, const T *w, T *y, int d, float eps) {            \
        rms_norm_rows<T>(x, nullptr, w, nullptr, y, d, eps);                                     \
    }                                                                                             \
    extern "C" __global__ void ADD_NAME(const T *x, const T *delta, const T *w, T *sum, T *y,    \
                                        int d, float eps) {                                      \
        rms_norm_rows<T>(x, delta, w, sum, y, d, eps);                                           \
    }

NORM_OP(float, rms_norm_f32, add_rms_norm_f32)
NORM_OP(__nv_bfloat16, rms_norm_bf16, add_rms_norm_bf16)
NORM_OP(__half, rms_norm_f16, add_rms_norm_f16)

// y[r, j] = T(silu(gate)) * up with gate = gu[r, j] and up = gu[r, inter + j] (the fused
// gate/up projection's output). Rows of a multiple of V = 16 / sizeof(T) (16-byte aligned) go V
// elements to a thread, in 16-byte loads and stores.
__device__ __forceinline__ float silu_f(float g) { return g / (1.f + expf(-g)); }

template <typename T, int V>
__device__ void silu_mul_vec(const T *__restrict__ gu, T *__restrict__ y, size_t total, int inter) {
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * V; i < total;
         i += (size_t)gridDim.x * blockDim.x * V) {
        const size_t row = i / inter, j = i % inter;
        alignas(16) T g[V];
        alignas(16) T u[V];
        load_vec<T, V>(g, gu + row * 2 * inter + j);
        load_vec<T, V>(u, gu + row * 2 * inter + inter + j);
#pragma unroll
        for (int e = 0; e < V; e++) {
            g[e] = from_f<T>(to_f(from_f<T>(silu_f(to_f(g[e])))) * to_f(u[e]));
        }
        store_vec<T, V>(y + i, g);
    }
}

template <typename T>
__device__ void silu_mul(const T *__restrict__ gu, T *__restrict__ y, size_t total, int inter) {
    constexpr int V = 16 / sizeof(T);
    if (inter % V == 0 && aligned16(gu) && aligned16(y)) {
        silu_mul_vec<T, V>(gu, y, total, inter);
    } else {
        silu_mul_vec<T, 1>(gu, y, total, inter);
    }
}

#define SILU_OP(T, NAME)                                                                          \
    extern "C" __global__ void NAME(const T *gu, T *y, unsigned long long total, int inter) {    \
        silu_mul<T>(gu, y, (size_t)total, inter);                                                \
    }

SILU_OP(float, silu_mul_f32)
SILU_OP(__nv_bfloat16, silu_mul_bf16)
SILU_OP(__half, silu_mul_f16)

// The fused q/k/v projection's output `[b * t, (nh + 2 nkv) * hd]` (plus `bias` of that width,
// if given) split into q `[b, nh, t, hd]`, k and v `[b, nkv, t, hd]`; with `rotate`, q and k are
// rotated (rotate_half convention) at positions offset + (row % t). One thread per pair
// (j, j + hd/2) of one head of one row.
template <typename T>
__device__ void split_heads(const T *__restrict__ qkv, const T *__restrict__ bias,
                            const T *__restrict__ cos, const T *__restrict__ sin,
                            T *__restrict__ q, T *__restrict__ k, T *__restrict__ v, int t, int nh,
                            int nkv, int hd, int rotate, int offset, size_t total) {
    const int half = hd / 2, heads = nh + 2 * nkv;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(i % half);
        const size_t rh = i / half;
        const int h = (int)(rh % heads);
        const size_t row = rh / heads;
        const size_t bi = row / t;
        const int ti = (int)(row % t);
        const T *src = qkv + row * heads * hd + (size_t)h * hd;
        float x1 = to_f(src[j]), x2 = to_f(src[j + half]);
        if (bias != nullptr) {
            x1 = to_f(from_f<T>(x1 + to_f(bias[h * hd + j])));
            x2 = to_f(from_f<T>(x2 + to_f(bias[h * hd + j + half])));
        }
        T *dst;
        if (h < nh) {
            dst = q + ((bi * nh + h) * t + ti) * hd;
        } else if (h < nh + nkv) {
            dst = k + ((bi * nkv + (h - nh)) * t + ti) * hd;
        } else {
            dst = v + ((bi * nkv + (h - nh - nkv)) * t + ti) * hd;
        }
        if (!rotate || h >= nh + nkv) {
            dst[j] = from_f<T>(x1);
            dst[j + half] = from_f<T>(x2);
            continue;
        }
        const size_t p = (size_t)(offset + ti) * half + j;
        const float c = to_f(cos[p]), s = to_f(sin[p]);
        dst[j] = from_f<T>(x1 * c - x2 * s);
        dst[j + half] = from_f<T>(x2 * c + x1 * s);
    }
}

#define SPLIT_OP(T, NAME)                                                                         \
    extern "C" __global__ void NAME(const T *qkv, const T *bias, const T *cos, const T *sin,     \
                                    T *q, T *k, T *v, int t, int nh, int nkv, int hd,            \
                                    int rotate, int offset, unsigned long long total) {          \
        split_heads<T>(qkv, bias, cos, sin, q, k, v, t, nh, nkv, hd, rotate, offset,             \
                       (size_t)total);                                                           \
    }

SPLIT_OP(float, split_heads_f32)
SPLIT_OP(__nv_bfloat16, split_heads_bf16)
SPLIT_OP(__half, split_heads_f16)

// Linear-layer epilogue: y = act(T(x + bias)), then, with `residual`, y = T(residual + y).
// act: 0 none, 1 quick_gelu (x * sigmoid(1.702 x)), 2 gelu (erf). Rows of a multiple of
// V = 16 / sizeof(T) (16-byte aligned) go V elements to a thread in 16-byte accesses.
template <typename T>
__device__ __forceinline__ T bias_act_one(T x, T bias, const T *residual, int act) {
    float v = to_f(from_f<T>(to_f(x) + to_f(bias)));
    if (act == 1) {
        v = v / (1.f + expf(-1.702f * v));
    } else if (act == 2) {
        v = 0.5f * v * (1.f + erff(v * 0.7071067811865476f));
    }
    if (residual != nullptr) v = to_f(*residual) + to_f(from_f<T>(v));
    return from_f<T>(v);
}

template <typename T, int V>
__device__ void bias_act_vec(const T *__restrict__ x, const T *__restrict__ bias,
                             const T *__restrict__ residual, T *__restrict__ y, size_t total,
                             int n, int act) {
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * V; i < total;
         i += (size_t)gridDim.x * blockDim.x * V) {
        alignas(16) T xv[V];
        alignas(16) T bv[V];
        alignas(16) T rv[V];
        load_vec<T, V>(xv, x + i);
        load_vec<T, V>(bv, bias + i % n);
        if (residual != nullptr) load_vec<T, V>(rv, residual + i);
#pragma unroll
        for (int e = 0; e < V; e++) {
            xv[e] = bias_act_one<T>(xv[e], bv[e], residual != nullptr ? &rv[e] : nullptr, act);
        }
        store_vec<T, V>(y + i, xv);
    }
}

template <typename T>
__device__ void bias_act(const T *__restrict__ x, const T *__restrict__ bias,
                         const T *__restrict__ residual, T *__restrict__ y, size_t total, int n,
                         int act) {
    constexpr int V = 16 / sizeof(T);
    if (n % V == 0 && aligned16(x) && aligned16(bias) && aligned16(y) &&
        (residual == nullptr || aligned16(residual))) {
        bias_act_vec<T, V>(x, bias, residual, y, total, n, act);
    } else {
        bias_act_vec<T, 1>(x, bias, residual, y, total, n, act);
    }
}

#define BIAS_OP(T, NAME)                                                                          \
    extern "C" __global__ void NAME(const T *x, const T *bias, const T *residual, T *y,          \
                                    unsigned long long total, int n, int act) {                  \
        bias_act<T>(x, bias, residual, y, (size_t)total, n, act);                                \
    }

BIAS_OP(float, bias_act_f32)
BIAS_OP(__nv_bfloat16, bias_act_bf16)
BIAS_OP(__half, bias_act_f16)

#include "flash_attention.cu"
#include "sparse_code.cu"
#include "adam.cu"
