"""The seed's naive kernel, kept as the baseline the simt template is measured against.

FlashAttention-1 loop order as in the seed: one block per (batch, head) with Bc = 32
threads; the outer loop walks K/V tiles, the inner loop walks Q tiles; each thread
owns one query row; Q, K, V and S tiles sit in shared memory; O, l and m live in
global memory and are rescaled there on every pass. fp32, Br = Bc = 32, D = 64.
"""
import math

import numpy as np

SOURCE = r"""
// Baseline: the seed's mapping. Grid (batch, head); TILE threads, one per query row of a tile.
#define TILE 32
extern "C" __global__ void seed_naive(const float* q, const float* k, const float* v, float* o,
                                      float* row_max, float* row_sum, int n, int d, float scale) {
    extern __shared__ float tiles[];
    float* q_tile = tiles;                 // [TILE][d]
    float* k_tile = q_tile + TILE * d;     // [TILE][d]
    float* v_tile = k_tile + TILE * d;     // [TILE][d]
    float* s_tile = v_tile + TILE * d;     // [TILE][TILE]
    const int r = threadIdx.x;
    const size_t head = (size_t)blockIdx.x * gridDim.y + blockIdx.y;
    const float* qh = q + head * n * d; const float* kh = k + head * n * d; const float* vh = v + head * n * d;
    float* oh = o + head * n * d; float* mh = row_max + head * n; float* lh = row_sum + head * n;
    for (int kv0 = 0; kv0 < n; kv0 += TILE) {          // outer: key/value tiles
        for (int c = 0; c < d; ++c) {
            k_tile[r * d + c] = kh[(size_t)(kv0 + r) * d + c];
            v_tile[r * d + c] = vh[(size_t)(kv0 + r) * d + c];
        }
        __syncthreads();  // K/V tile complete before any row uses it
        for (int q0 = 0; q0 < n; q0 += TILE) {         // inner: query tiles
            const int row = q0 + r;
            for (int c = 0; c < d; ++c) q_tile[r * d + c] = qh[(size_t)row * d + c];
            float tile_max = __int_as_float(0xff800000);  // -inf
            for (int j = 0; j < TILE; ++j) {
                float dot = 0.f;
                for (int c = 0; c < d; ++c) dot += q_tile[r * d + c] * k_tile[j * d + c];
                s_tile[r * TILE + j] = dot * scale;
                tile_max = fmaxf(tile_max, dot * scale);
            }
            float tile_sum = 0.f;
            for (int j = 0; j < TILE; ++j) {
                const float p = __expf(s_tile[r * TILE + j] - tile_max);
                s_tile[r * TILE + j] = p;
                tile_sum += p;
            }
            const float m_old = mh[row], l_old = lh[row];
            const float m_new = fmaxf(m_old, tile_max);
            const float a_old = __expf(m_old - m_new), a_tile = __expf(tile_max - m_new);
            const float l_new = a_old * l_old + a_tile * tile_sum;
            for (int c = 0; c < d; ++c) {              // O kept normalised, in global memory
                float pv = 0.f;
                for (int j = 0; j < TILE; ++j) pv += s_tile[r * TILE + j] * v_tile[j * d + c];
                oh[(size_t)row * d + c] = (a_old * l_old * oh[(size_t)row * d + c] + a_tile * pv) / l_new;
            }
            mh[row] = m_new;
            lh[row] = l_new;
        }
        __syncthreads();  // every row is done with this K/V tile before it is overwritten
    }
}
"""

BR = BC = 32


def run_naive(q, k, v):
    """q, k, v: CuPy float32 (B, H, N, D) with N a multiple of 32. Returns O."""
    import cupy

    b, h, n, d = q.shape
    assert n % BC == 0, "the seed kernel has no tail handling"
    kernel = cupy.RawKernel(SOURCE, "seed_naive", options=("--use_fast_math",))
    o = cupy.zeros_like(q)
    l = cupy.zeros((b, h, n), dtype=cupy.float32)
    m = cupy.full((b, h, n), -cupy.inf, dtype=cupy.float32)
    smem = (3 * BC * d + BC * BR) * 4
    kernel.max_dynamic_shared_size_bytes = smem
    kernel((b, h), (BC,), (q, k, v, o, m, l, np.int32(n), np.int32(d), np.float32(1 / math.sqrt(d))),
           shared_mem=smem)
    return o
