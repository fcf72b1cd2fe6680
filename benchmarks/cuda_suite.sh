#!/usr/bin/env bash
# The CUDA checks, in one run on a GPU machine: correctness of the bf16 path (cached decode
# equals a full pass in fp32 on the GPU, teacher-forced agreement with llama.cpp, "Paris"),
# then the model and serving benchmarks. Usage: benchmarks/cuda_suite.sh [MODEL] [OUTDIR]
set -uo pipefail
model=${1:-smollm2-135m-instruct}
out=${2:-.}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
$py benchmarks/cuda_attention_check.py 2>&1 | tee "$out/cuda_attention.txt" | grep bfloat16
LLM_SDK_TEST_DEVICE=cuda $py -m pytest -q -s -p no:cacheprovider -o addopts="" \
    tests/unit/server_ref/models tests/unit/server_ref/loading/test_gguf_loading.py \
    tests/e2e/test_model_fidelity.py 2>&1 | tee "$out/cuda_tests.txt" | tail -25
$py benchmarks/bench_model.py --model "$model" --device cuda --batches 1,8,32,64,128 --steps 32 \
    2>&1 | tee "$out/cuda_bench_model.txt"
$py benchmarks/bench_serving.py --concurrency 1,16,64 --max-tokens 64 \
    --launch "eager=$py -m server_ref serve --model $model --device cuda --max-num-seqs 128 --port {port}" \
    --launch "graphs=$py -m server_ref serve --model $model --device cuda --max-num-seqs 128 --cuda-graphs --port {port}" \
    2>&1 | tee "$out/cuda_bench_serving.txt"
