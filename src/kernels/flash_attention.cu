// Attention in one pass over the keys (flash attention), for bf16 and f16 with head sizes 64
// and 128: scores, mask, online softmax and the weighted sum of values stay in registers and
// shared memory, so the [heads, t, t] score block is never written.
//
// Rows: the query heads sharing one key/value head are stacked (row r is head
// kv_head * groups + r / t_q, query r % t_q at absolute position past + r % t_q), so a block's
// key tiles serve every head of its group. Block = 4 warps x 16 rows; a warp computes its
// 16 x 64 score tile with mma.sync m16n8k16 (f32 accumulators), keeps the row max and sum in
// registers, rescales its output accumulators and adds P.V, P taken straight from the score
// registers as the A operand. With several key splits (gridDim.z > 1, for few rows and many
// keys, as in decoding) each block writes unnormalised partial rows and flash_combine merges
// them.
//
// Included by glint.cu (uses its from_f helper).

#define FA_ROWS 64
#define FA_KEYS 64
#define FA_THREADS 128
// Shared-memory rows are padded by 8 elements (16 bytes): the fragment loads below then hit 32
// distinct banks.
#define FA_PAD 8

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0,
                                               uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};
template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float *c, const uint32_t *a, uint32_t b0,
                                               uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};

// Four 8x8 b16 matrices from shared memory, transposed: thread lane receives, of matrix i,
// rows 2 (lane % 4) and 2 (lane % 4) + 1 at column lane / 4 (the B operand layout).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, const void *smem) {
    const uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ uint32_t load_pair(const void *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

// 16 bytes global -> shared without staging in registers; `valid == false` writes zeros.
__device__ __forceinline__ void copy_async_16(void *smem, const void *gmem, bool valid) {
    const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem);
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until at most one committed copy group is still in flight.
__device__ __forceinline__ void copy_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// One tile of FA_KEYS rows of keys or values into shared memory, rows past `end` zero.
template <typename T, int D>
__device__ __forceinline__ void load_tile_async(T (*dst)[D + FA_PAD], const T *src, int kt, int end) {
    constexpr int CHUNKS = D / 8;
    for (int idx = threadIdx.x; idx < FA_KEYS * CHUNKS; idx += FA_THREADS) {
        const int row = idx / CHUNKS, ch = idx % CHUNKS, key = kt + row;
        const bool valid = key < end;
        copy_async_16(&dst[row][ch * 8], valid ? src + (size_t)key * D + ch * 8 : src, valid);
    }
}

template <typename T, int D>
__device__ void flash_attention(const T *__restrict__ q, const T *__restrict__ k,
                                const T *__restrict__ v, T *__restrict__ out,
                                float *__restrict__ part_o, float *__restrict__ part_ml,
                                int heads, int kv_heads, int t_q, int n_keys, int past,
                                int causal, float scale_log2, long long k_batch, long long k_head,
                                long long v_batch, long long v_head, int keys_per_split) {
    __shared__ __align__(16) T sk[FA_KEYS][D + FA_PAD];
    __shared__ __align__(16) T sv[FA_KEYS][D + FA_PAD];

    const int groups = heads / kv_heads;
    const int rows = groups * t_q;
    const int bh = blockIdx.y;
    const int b = bh / kv_heads, kvh = bh % kv_heads;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, t4 = lane & 3;
    const int r0 = blockIdx.x * FA_ROWS;
    const int ra = r0 + warp * 16 + g, rb = ra + 8;

    const T *qb = q + ((size_t)b * heads + (size_t)kvh * groups) * t_q * D;
    const T *kb = k + b * k_batch + kvh * k_head;
    const T *vb = v + b * v_batch + kvh * v_head;

    auto limit_of = [&](int r) -> int {
        if (r >= rows) return 0;
        return causal ? min(n_keys, past + r % t_q + 1) : n_keys;
    };
    const int lim_a = limit_of(ra), lim_b = limit_of(rb);
    // The furthest key any of the warp's 16 rows sees: tiles past it are skipped by the warp.
    int warp_lim = max(lim_a, lim_b);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) warp_lim = max(warp_lim, __shfl_xor_sync(0xffffffff, warp_lim, off));
    // And of the block's rows: tiles past it are not loaded at all.
    int block_end = n_keys;
    if (causal) {
        const int last = min(r0 + FA_ROWS, rows) - 1;
        const int max_q = (r0 / t_q != last / t_q) ? t_q - 1 : last % t_q;
        block_end = min(n_keys, past + max_q + 1);
    }
    const int kbeg = blockIdx.z * keys_per_split;
    const int kend = min(block_end, kbeg + keys_per_split);

    // This thread's A fragments of the warp's 16 query rows.
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        const int c = ks * 16 + 2 * t4;
        qa[ks][0] = ra < rows ? load_pair(qb + (size_t)ra * D + c) : 0u;
        qa[ks][1] = rb < rows ? load_pair(qb + (size_t)rb * D + c) : 0u;
        qa[ks][2] = ra < rows ? load_pair(qb + (size_t)ra * D + c + 8) : 0u;
        qa[ks][3] = rb < rows ? load_pair(qb + (size_t)rb * D + c + 8) : 0u;
    }

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    // Running max (in log2 units) and this thread's part of the running sum, rows a and b.
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;
    const int end_a = min(lim_a, kend), end_b = min(lim_b, kend);

    // Keys and values load while the other is in use: V(kt) during the scores of tile kt,
    // K(kt + 1) during its value product.
    if (kbeg < kend) load_tile_async<T, D>(sk, kb, kbeg, kend);
    copy_async_commit();
    for (int kt = kbeg; kt < kend; kt += FA_KEYS) {
        load_tile_async<T, D>(sv, vb, kt, kend);
        copy_async_commit();
        copy_async_wait_one();
        __syncthreads();
        const bool active = kt < warp_lim;
        float s[FA_KEYS / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_KEYS / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        if (active) {
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
                for (int nt = 0; nt < FA_KEYS / 8; nt++) {
                    const T *kp = &sk[nt * 8 + g][ks * 16 + 2 * t4];
                    Mma<T>::run(s[nt], qa[ks], load_pair(kp), load_pair(kp + 8));
                }
            }

            float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < FA_KEYS / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = kt + nt * 8 + 2 * t4 + e;
                    s[nt][e] = key < end_a ? s[nt][e] * scale_log2 : -INFINITY;
                    s[nt][2 + e] = key < end_b ? s[nt][2 + e] * scale_log2 : -INFINITY;
                    mx_a = fmaxf(mx_a, s[nt][e]);
                    mx_b = fmaxf(mx_b, s[nt][2 + e]);
                }
            }
            // A row lives in the four lanes of one group.
#pragma unroll
            for (int off = 1; off < 4; off <<= 1) {
                mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffff, mx_a, off));
                mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffff, mx_b, off));
            }
            const float new_a = fmaxf(m_a, mx_a), new_b = fmaxf(m_b, mx_b);
            // A row with no visible key so far keeps exponents finite with base 0.
            const float base_a = new_a == -INFINITY ? 0.f : new_a;
            const float base_b = new_b == -INFINITY ? 0.f : new_b;
            const float alpha_a = fast_exp2(m_a - base_a), alpha_b = fast_exp2(m_b - base_b);
            m_a = new_a;
            m_b = new_b;
            float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
            for (int nt = 0; nt < FA_KEYS / 8; nt++) {
                s[nt][0] = fast_exp2(s[nt][0] - base_a);
                s[nt][1] = fast_exp2(s[nt][1] - base_a);
                s[nt][2] = fast_exp2(s[nt][2] - base_b);
                s[nt][3] = fast_exp2(s[nt][3] - base_b);
                sum_a += s[nt][0] + s[nt][1];
                sum_b += s[nt][2] + s[nt][3];
            }
            l_a = l_a * alpha_a + sum_a;
            l_b = l_b * alpha_b + sum_b;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                o[dt][0] *= alpha_a;
                o[dt][1] *= alpha_a;
                o[dt][2] *= alpha_b;
                o[dt][3] *= alpha_b;
            }
        }
        __syncthreads();
        if (kt + FA_KEYS < kend) load_tile_async<T, D>(sk, kb, kt + FA_KEYS, kend);
        copy_async_commit();
        copy_async_wait_one();
        __syncthreads();
        // The score accumulators of keys 16j..16j+15 are exactly the A fragment of P.
        const int mi = lane >> 3, ri = lane & 7;
#pragma unroll
        for (int j = 0; j < FA_KEYS / 16 && active; j++) {
            const uint32_t pa[4] = {
                Mma<T>::pack(s[2 * j][0], s[2 * j][1]),
                Mma<T>::pack(s[2 * j][2], s[2 * j][3]),
                Mma<T>::pack(s[2 * j + 1][0], s[2 * j + 1][1]),
                Mma<T>::pack(s[2 * j + 1][2], s[2 * j + 1][3]),
            };
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, &sv[j * 16 + ri + (mi & 1) * 8][dp * 16 + (mi >> 1) * 8]);
                Mma<T>::run(o[2 * dp], pa, bv[0], bv[1]);
                Mma<T>::run(o[2 * dp + 1], pa, bv[2], bv[3]);
            }
        }
        // Every warp is done with this tile's values before the next one lands there.
        __syncthreads();
    }

#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l_a += __shfl_xor_sync(0xffffffff, l_a, off);
        l_b += __shfl_xor_sync(0xffffffff, l_b, off);
    }
    if (gridDim.z == 1) {
        const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f, inv_b = l_b > 0.f ? 1.f / l_b : 0.f;
        // Output [b, t_q, heads, D]: the layout the output projection reads.
        auto out_row = [&](int r) -> T * {
            const int h = kvh * groups + r / t_q, i = r % t_q;
            return out + (((size_t)b * t_q + i) * heads + h) * D;
        };
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            const int c = dt * 8 + 2 * t4;
            if (ra < rows) {
                *reinterpret_cast<uint32_t *>(out_row(ra) + c) =
                    Mma<T>::pack(o[dt][0] * inv_a, o[dt][1] * inv_a);
            }
            if (rb < rows) {
                *reinterpret_cast<uint32_t *>(out_row(rb) + c) =
                    Mma<T>::pack(o[dt][2] * inv_b, o[dt][3] * inv_b);
            }
        }
        return;
    }
    // Partial rows: [split][b * kv_heads][rows][D] and (max, sum) per row.
    const size_t base = ((size_t)blockIdx.z * gridDim.y + bh) * rows;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        const int c = dt * 8 + 2 * t4;
        if (ra < rows) {
            *reinterpret_cast<float2 *>(part_o + (base + ra) * D + c) = make_float2(o[dt][0], o[dt][1]);
        }
        if (rb < rows) {
            *reinterpret_cast<float2 *>(part_o + (base + rb) * D + c) = make_float2(o[dt][2], o[dt][3]);
        }
    }
    if (t4 == 0) {
        if (ra < rows) *reinterpret_cast<float2 *>(part_ml + (base + ra) * 2) = make_float2(m_a, l_a);
        if (rb < rows) *reinterpret_cast<float2 *>(part_ml + (base + rb) * 2) = make_float2(m_b, l_b);
    }
}

// Merge the key splits of one row: block per (b * kv_heads + kv_head, row), thread per column.
template <typename T>
__device__ void flash_combine(const float *__restrict__ part_o, const float *__restrict__ part_ml,
                              T *__restrict__ out, int splits, int heads, int kv_heads, int t_q,
                              int d) {
    const int groups = heads / kv_heads;
    const int rows = groups * t_q;
    const int bh = blockIdx.x / rows, r = blockIdx.x % rows;
    const int b = bh / kv_heads, kvh = bh % kv_heads;
    const size_t stride = (size_t)gridDim.x;  // rows of one split = (b * kv_heads) * rows
    float m = -INFINITY;
    for (int z = 0; z < splits; z++) m = fmaxf(m, part_ml[(z * stride + blockIdx.x) * 2]);
    const float base = m == -INFINITY ? 0.f : m;
    float l = 0.f;
    for (int z = 0; z < splits; z++) {
        const float2 ml = *reinterpret_cast<const float2 *>(part_ml + (z * stride + blockIdx.x) * 2);
        l += ml.y * fast_exp2(ml.x - base);
    }
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int h = kvh * groups + r / t_q, i = r % t_q;
    T *dst = out + (((size_t)b * t_q + i) * heads + h) * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.f;
        for (int z = 0; z < splits; z++) {
            const float w = fast_exp2(part_ml[(z * stride + blockIdx.x) * 2] - base);
            acc += part_o[(z * stride + blockIdx.x) * d + c] * w;
        }
        dst[c] = from_f<T>(acc * inv);
    }
}

#define FLASH_OP(T, D, NAME)                                                                      \
    extern "C" __global__ void __launch_bounds__(FA_THREADS, 3)                                   \
        NAME(const T *q, const T *k, const T *v, T *out, float *part_o, float *part_ml,          \
             int heads, int kv_heads, int t_q, int n_keys, int past, int causal,                 \
             float scale_log2, long long k_batch, long long k_head, long long v_batch,           \
             long long v_head, int keys_per_split) {                                             \
        flash_attention<T, D>(q, k, v, out, part_o, part_ml, heads, kv_heads, t_q, n_keys,      \
                              past, causal, scale_log2, k_batch, k_head, v_batch, v_head,        \
                              keys_per_split);                                                   \
    }

FLASH_OP(__nv_bfloat16, 64, flash_attention_d64_bf16)
FLASH_OP(__nv_bfloat16, 128, flash_attention_d128_bf16)
FLASH_OP(__half, 64, flash_attention_d64_f16)
FLASH_OP(__half, 128, flash_attention_d128_f16)

#define COMBINE_OP(T, NAME)                                                                       \
    extern "C" __global__ void NAME(const float *part_o, const float *part_ml, T *out,           \
                                    int splits, int heads, int kv_heads, int t_q, int d) {       \
        flash_combine<T>(part_o, part_ml, out, splits, heads, kv_heads, t_q, d);                 \
    }

COMBINE_OP(__nv_bfloat16, flash_combine_bf16)
COMBINE_OP(__half, flash_combine_f16)
