// The three products of a TopK code that SAE training needs, without the dense [rows, N] block:
// per row r, the code holds k latents idx[r, j] with values v[r, j] (zeros are skipped, as ReLU
// leaves them). Rows of w and of the accumulators are d floats, latent-major.

#define SPARSE_THREADS 256

// out[r, c] = sum_j v[r, j] * w[idx[r, j], c]. Grid (rows, column tiles); the row's code is in
// shared memory, each thread owns one column and walks the k latent rows (coalesced reads).
extern "C" __global__ void sparse_decode_f32(const float *__restrict__ w,
                                             const uint32_t *__restrict__ idx,
                                             const float *__restrict__ vals,
                                             float *__restrict__ out, int k, int d) {
    extern __shared__ unsigned char smem[];
    uint32_t *si = (uint32_t *)smem;
    float *sv = (float *)(si + k);
    const size_t r = blockIdx.x;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        si[j] = idx[r * k + j];
        sv[j] = vals[r * k + j];
    }
    __syncthreads();
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float acc = 0.f;
    for (int j = 0; j < k; j++) {
        const float v = sv[j];
        if (v != 0.f) acc += v * w[(size_t)si[j] * d + c];
    }
    out[r * d + c] = acc;
}

// out[r, j] = sum_c g[r, c] * w[idx[r, j], c]. A block per row with g's row in shared memory;
// each warp takes latents j = warp, warp + warps, ... and reduces its dot product.
extern "C" __global__ void sparse_dots_f32(const float *__restrict__ w,
                                           const uint32_t *__restrict__ idx,
                                           const float *__restrict__ g, float *__restrict__ out,
                                           int k, int d) {
    extern __shared__ float sg[];
    const size_t r = blockIdx.x;
    for (int c = threadIdx.x; c < d; c += blockDim.x) sg[c] = g[r * d + c];
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (int j = warp; j < k; j += warps) {
        const float *row = w + (size_t)idx[r * k + j] * d;
        float acc = 0.f;
        for (int c = lane; c < d; c += 32) acc += sg[c] * row[c];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, off);
        if (lane == 0) out[r * k + j] = acc;
    }
}

// acc[idx[r, j], c] += v[r, j] * x[r, c]: the gradient of a latent-major matrix through a code.
// Grid (rows, column tiles); floating-point atomics, so the order of the additions (and the last
// bits of the sums) varies from run to run on the device.
extern "C" __global__ void sparse_outer_add_f32(float *__restrict__ acc,
                                                const uint32_t *__restrict__ idx,
                                                const float *__restrict__ vals,
                                                const float *__restrict__ x, int k, int d) {
    extern __shared__ unsigned char smem[];
    uint32_t *si = (uint32_t *)smem;
    float *sv = (float *)(si + k);
    const size_t r = blockIdx.x;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        si[j] = idx[r * k + j];
        sv[j] = vals[r * k + j];
    }
    __syncthreads();
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= d) return;
    const float xc = x[r * d + c];
    for (int j = 0; j < k; j++) {
        const float v = sv[j];
        if (v != 0.f) atomicAdd(&acc[(size_t)si[j] * d + c], v * xc);
    }
}
