#!/bin/bash
# Sixteenth session, third call, GPU 1 (beside the default GPU suite on GPU 0: benchmarks/suite_beside_x2.sh): the GPU
# suite again with another distribution over the xdist workers (6 workers, whole files per worker), so tests share a
# process with other neighbours than in the default run: looking for more failures that depend on what ran before
# in the same process (the hang found this session was one).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1
PYTEST_ADDOPTS="--dist loadfile" XDIST=6 TESTS_TIMEOUT=520 TESTS_K="not paged_space" SKIP_PIP=1 \
    bash benchmarks/h200_final.sh tests
