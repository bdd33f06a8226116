// Runs an exported autoflash kernel on random inputs and compares it with a naive
// attention in double precision on the CPU, in the spirit of a minimal C++
// flash-attention test.
//
//   autoflash_example [batch heads_q heads_kv seq_q seq_k]   (default: 2 4 2 300 517)
// The reference is a single-threaded double-precision loop: keep the sizes small.
//
// Exit status: 0 when the output and the log-sum-exp match the reference, 1 on a
// mismatch or a CUDA error, 77 when no suitable GPU is present (nothing was run).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "autoflash_kernel.h"  // the export's header, as namespace `kernel`

using elem_t = kernel::elem_t;

#define CHECK_CUDA(call)                                                                        \
    do {                                                                                        \
        cudaError_t err_ = (call);                                                              \
        if (err_ != cudaSuccess) {                                                              \
            std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(err_), __FILE__, \
                         __LINE__, cudaGetErrorString(err_));                                   \
            std::exit(1);                                                                       \
        }                                                                                       \
    } while (0)

inline float to_float(float x) { return x; }
inline float to_float(__half x) { return __half2float(x); }
inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> T from_float(float x);
template <> float from_float<float>(float x) { return x; }
template <> __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Tolerance on ||out - ref|| / ||ref||, as autoflash/reference.py: an fp32 kernel is
// exact up to reordering; fp16 keeps 11 mantissa bits, bf16 8, and P is rounded to them.
static double tolerance() {
    if (std::strcmp(kernel::kDtype, "fp32") == 0) return 1e-4;
    if (std::strcmp(kernel::kDtype, "fp16") == 0) return 3e-3;
    return 1e-2;
}
// Absolute tolerance on the log-sum-exp (natural log), also as autoflash/reference.py.
static double lse_tolerance() { return std::strcmp(kernel::kDtype, "fp32") == 0 ? 1e-4 : 1e-3; }

// Fixed-seed uniform numbers in [-1, 1): the same inputs on every run.
static float next_uniform(uint64_t& state) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>((state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

static std::vector<elem_t> random_tensor(size_t n, uint64_t seed) {
    std::vector<elem_t> x(n);
    for (auto& e : x) e = from_float<elem_t>(2.0f * next_uniform(seed));
    return x;
}

// softmax(q k^T * scale) v and the natural-log LSE, in double, from the rounded inputs.
static void reference(const std::vector<elem_t>& q, const std::vector<elem_t>& k, const std::vector<elem_t>& v,
                      int batch, int hq, int hkv, int nq, int nk, double scale, std::vector<double>& out,
                      std::vector<double>& lse) {
    const int d = kernel::kHeadDim;
    out.assign(static_cast<size_t>(batch) * hq * nq * d, 0.0);
    lse.assign(static_cast<size_t>(batch) * hq * nq, 0.0);
    std::vector<double> s(nk);
    for (int b = 0; b < batch; ++b)
        for (int h = 0; h < hq; ++h) {
            const int hk = h / (hq / hkv);  // GQA: query head h reads key/value head h / group
            const size_t qbase = (static_cast<size_t>(b) * hq + h) * nq * d;
            const size_t kbase = (static_cast<size_t>(b) * hkv + hk) * nk * d;
            for (int i = 0; i < nq; ++i) {
                const int last = kernel::kCausal ? (i < nk - 1 ? i : nk - 1) : nk - 1;  // top-left causal
                double m = -INFINITY;
                for (int j = 0; j <= last; ++j) {
                    double acc = 0.0;
                    for (int c = 0; c < d; ++c)
                        acc += static_cast<double>(to_float(q[qbase + static_cast<size_t>(i) * d + c])) *
                               to_float(k[kbase + static_cast<size_t>(j) * d + c]);
                    s[j] = acc * scale;
                    m = s[j] > m ? s[j] : m;
                }
                double l = 0.0;
                for (int j = 0; j <= last; ++j) {
                    s[j] = std::exp(s[j] - m);
                    l += s[j];
                }
                double* o = &out[qbase + static_cast<size_t>(i) * d];
                for (int j = 0; j <= last; ++j)
                    for (int c = 0; c < d; ++c) o[c] += s[j] / l * to_float(v[kbase + static_cast<size_t>(j) * d + c]);
                lse[(static_cast<size_t>(b) * hq + h) * nq + i] = m + std::log(l);
            }
        }
}

int main(int argc, char** argv) {
    int batch = 2, hq = 4, hkv = 2, nq = 300, nk = 517;
    if (argc == 6) {
        batch = std::atoi(argv[1]), hq = std::atoi(argv[2]), hkv = std::atoi(argv[3]);
        nq = std::atoi(argv[4]), nk = std::atoi(argv[5]);
    } else if (argc != 1) {
        std::fprintf(stderr, "usage: %s [batch heads_q heads_kv seq_q seq_k]\n", argv[0]);
        return 1;
    }
    std::printf("kernel %s (%s, head_dim %d, causal %d): grid (%u, %u, %u), block %d, smem %d B\n", kernel::kName,
                kernel::kDtype, kernel::kHeadDim, int(kernel::kCausal), kernel::grid(batch, hq, nq).x,
                kernel::grid(batch, hq, nq).y, kernel::grid(batch, hq, nq).z, kernel::kThreads, kernel::kSmemBytes);

    int device_count = 0;
    if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
        std::printf("no CUDA GPU: built, not run\n");
        return 77;
    }
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    const int cc = prop.major * 10 + prop.minor;
    if (cc < kernel::kMinComputeCapability) {
        std::printf("%s is sm_%d; %s needs sm_%d or newer: not run\n", prop.name, cc, kernel::kName,
                    kernel::kMinComputeCapability);
        return 77;
    }

    const int d = kernel::kHeadDim;
    const size_t nq_elems = static_cast<size_t>(batch) * hq * nq * d, nk_elems = static_cast<size_t>(batch) * hkv * nk * d;
    const size_t nlse = static_cast<size_t>(batch) * hq * nq;
    std::vector<elem_t> q = random_tensor(nq_elems, 1), k = random_tensor(nk_elems, 2), v = random_tensor(nk_elems, 3);

    elem_t *dq, *dk, *dv, *dout;
    float* dlse;
    CHECK_CUDA(cudaMalloc(&dq, nq_elems * sizeof(elem_t)));
    CHECK_CUDA(cudaMalloc(&dk, nk_elems * sizeof(elem_t)));
    CHECK_CUDA(cudaMalloc(&dv, nk_elems * sizeof(elem_t)));
    CHECK_CUDA(cudaMalloc(&dout, nq_elems * sizeof(elem_t)));
    CHECK_CUDA(cudaMalloc(&dlse, nlse * sizeof(float)));
    CHECK_CUDA(cudaMemcpy(dq, q.data(), nq_elems * sizeof(elem_t), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dk, k.data(), nk_elems * sizeof(elem_t), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dv, v.data(), nk_elems * sizeof(elem_t), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemset(dout, 0xFF, nq_elems * sizeof(elem_t)));  // NaN poison: unwritten outputs fail the check
    CHECK_CUDA(cudaMemset(dlse, 0xFF, nlse * sizeof(float)));

    const float scale = kernel::kDefaultScale;
    cudaStream_t stream;
    CHECK_CUDA(cudaStreamCreate(&stream));
    CHECK_CUDA(kernel::launch(dq, dk, dv, dout, dlse, batch, hq, hkv, nq, nk, scale, stream));
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaStreamSynchronize(stream));

    std::vector<elem_t> out(nq_elems);
    std::vector<float> lse(nlse);
    CHECK_CUDA(cudaMemcpy(out.data(), dout, nq_elems * sizeof(elem_t), cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(lse.data(), dlse, nlse * sizeof(float), cudaMemcpyDeviceToHost));

    std::vector<double> ref, ref_lse;
    reference(q, k, v, batch, hq, hkv, nq, nk, scale, ref, ref_lse);

    double diff2 = 0.0, ref2 = 0.0, max_abs = 0.0, max_lse = 0.0;
    bool finite = true;
    for (size_t i = 0; i < nq_elems; ++i) {
        const double got = to_float(out[i]);
        finite = finite && std::isfinite(got);
        const double e = got - ref[i];
        diff2 += e * e, ref2 += ref[i] * ref[i];
        max_abs = std::fabs(e) > max_abs ? std::fabs(e) : max_abs;
    }
    for (size_t i = 0; i < nlse; ++i) {
        finite = finite && std::isfinite(lse[i]);
        const double e = std::fabs(lse[i] - ref_lse[i]);
        max_lse = e > max_lse ? e : max_lse;
    }
    const double rel = std::sqrt(diff2 / ref2);
    const bool ok = finite && rel <= tolerance() && max_lse <= lse_tolerance();
    std::printf("%s: B=%d Hq=%d Hkv=%d Nq=%d Nk=%d D=%d on %s: max abs err %.3e, rel err %.3e (tol %.0e), "
                "lse max err %.3e%s -> %s\n",
                kernel::kName, batch, hq, hkv, nq, nk, d, prop.name, max_abs, rel, tolerance(), max_lse,
                finite ? "" : ", NON-FINITE values", ok ? "PASS" : "FAIL");

    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout), cudaFree(dlse);
    cudaStreamDestroy(stream);
    return ok ? 0 : 1;
}
