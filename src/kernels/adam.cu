// One Adam step of an f32 tensor in one pass, out of place: reads the parameter, gradient and
// both moments once and writes the three results, where the composed update reads and writes
// whole tensors a dozen times. The arithmetic is torch.optim.Adam's, as the host path has it:
//   m' = b1 m + (1 - b1) g,  v' = b2 v + (1 - b2) g²,  p' = p - lr_bc1 · m' / (sqrt(v') / bc2 + eps)

extern "C" __global__ void adam_f32(const float *__restrict__ p, const float *__restrict__ g,
                                    const float *__restrict__ m, const float *__restrict__ v,
                                    float *__restrict__ p_out, float *__restrict__ m_out,
                                    float *__restrict__ v_out, unsigned long long n, float b1,
                                    float b2, float lr_bc1, float bc2_sqrt, float eps) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i];
        const float mi = b1 * m[i] + (1.f - b1) * gi;
        const float vi = b2 * v[i] + (1.f - b2) * (gi * gi);
        m_out[i] = mi;
        v_out[i] = vi;
        p_out[i] = p[i] - lr_bc1 * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
