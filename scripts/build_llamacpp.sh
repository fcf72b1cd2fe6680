#!/usr/bin/env bash
# Build llama.cpp's two OpenAI-compatible servers, the peers our benchmarks and peer tests run
# against, from what PyPI serves (this machine reaches no other source):
#   1. a virtual environment with llama-cpp-python[server] (compiled from its sdist), and
#   2. llama.cpp's own C++ `llama-server`, built from the llama.cpp tree vendored in that sdist.
#
#   scripts/build_llamacpp.sh DIR [VERSION]     (VERSION default 0.3.36)
#
# Afterwards: DIR/venv/bin/python -m llama_cpp.server ... and DIR/bin/llama-server ...
# Nothing here is installed into the project's environment. Takes ~15-30 minutes on 2 cores.
set -euo pipefail
dir="${1:?usage: $0 DIR [VERSION]}"
version="${2:-0.3.36}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
jobs="$(nproc)"

if [ ! -x "$dir/venv/bin/python" ] || ! "$dir/venv/bin/python" -c "import llama_cpp.server.app" 2>/dev/null; then
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install -q --upgrade pip
    CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$dir/venv/bin/python" -m pip install -q \
        "llama-cpp-python[server]==$version"
fi

if [ ! -x "$dir/bin/llama-server" ]; then
    src="$dir/src"
    rm -rf "$src" && mkdir -p "$src"
    "$dir/venv/bin/python" -m pip download -q --no-deps --no-binary :all: \
        "llama-cpp-python==$version" -d "$src"
    tar -xzf "$src"/llama_cpp_python-"$version".tar.gz -C "$src"
    tree="$src/llama_cpp_python-$version/vendor/llama.cpp"
    cmake -S "$tree" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
        -DGGML_NATIVE=ON >/dev/null
    cmake --build "$src/build" --target llama-server -j "$jobs" >/dev/null
    mkdir -p "$dir/bin"
    cp "$src/build/bin/llama-server" "$dir/bin/"
fi
echo "llama-cpp-python: $dir/venv/bin/python -m llama_cpp.server"
echo "llama-server:     $dir/bin/llama-server"
