"""flash_bwd_mma's switches: which tile head dims take each kernel-code choice, with the H200 measurement that decided
it (benchmarks/NOTES.md, the session named). ops/backward_kernels' template_values reads them when it renders; tests
and benchmarks set them to compare both sides (tests/test_backward_gpu.run_mma_switched, bench_backward_graph.py's
--alt mma:MMA.NAME)."""

# The 2-D layout stores P^T right after its exp (else beside dS^T). s19b: D 64 (bm128) +3.2..+3.3 %; D 128 (bm64)
# -7.5 % non-causal, -2.5 % causal.
P_STORE_EARLY = (64,)

# Plain causal keys run heaviest first: K/V tile j before j + 1, in groups of (batch, head) pairs whose query rows take
# ~HEAVY_GROUP_MB MB, on a 1-D grid. s25a-d: N 4096 D 128 / 256 +5..+7 %, N 16384 +1..+5 %.
HEAVY_FIRST, HEAVY_GROUP_MB = (64, 128, 256), 64

# Heavy first by batch instead, on a (K/V head, K/V tile, batch) grid: the loop counters stay uniform (the groups'
# divisions put them in vector registers that the dQ adds still read at the loop's top, s30g). s31a: alone level
# (-2.2..+4.4 %); with DQ_INTERLEAVE, which compiles spill-free at D 128 causal only so, +6.2..+8.0 % at N 4096,
# +0..+10.8 % at N 16384.
HEAVY_BY_BATCH = (128,)

# The non-causal 2-D layout computes S and dP with the queries as rows (FA2's form), dP's product before the exps.
# s28e-f: D 128 +1.4..+4.3 %, dP first +2 % more (s29c-d); D 64 -1.5 %, causal level to -3 % (s29b-c).
S_ROWS = (128,)

# The S^T form's 2-D layouts take dV (OWN_DV), dK (OWN_DK) over a warp's own queries from its registers (not softcap),
# the rest by ldmatrix. s30a-d: D 64 +2..+4 %; D 128 causal -5..-8 % (spills); D 256 -1 %.
OWN_DV, OWN_DK = (64,), (64,)

# Plain dense S^T-form 2-D layouts (not deterministic) run dQ's product before dK's and spread its adds among dK's mmas
# (FA2's order); from D 128 on the HEAVY_BY_BATCH kernels only (the others spill). s30h: D 64 +2.4..+7.1 %; D 128
# causal +0..+9 % but 8 B spilled (none by batch: s31a, above); the S form -0.8..-1.7 %.
DQ_INTERLEAVE = (64, 128)
