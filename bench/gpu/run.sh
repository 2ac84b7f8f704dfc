#!/usr/bin/env bash
# Runs on the GPU machine (CUDA 13, H100/H200, 16 cores, no Node, no network), from the repository root,
# with .gpu/ made by bench/gpu/pack.sh carried along. In one call (about 8 of its 10 minutes):
#   1. builds llama.cpp for CUDA (sm_90a) once, with the llama_cpp plugin, llama-server and llama-bench;
#   2. checks the cuda plugin through the node: llm-node detects the GPU through the real nvidia-smi, loads
#      the cuda plugin, loads a model and streams a chat completion;
#   3. measures GPU performance against llama.cpp: a random-weight GGUF with Llama-3.2-1B's shapes (F16),
#      llama-bench tg128/pp512, llama-server and llm-node over HTTP with the shared client (single stream,
#      TTFT, 4/16/64 streams), model load time each way.
# Everything it prints and the raw figures go to $OUT (gpu-run.log, figures.tsv).
#   device: run  command="bash bench/gpu/run.sh"  carry=[".gpu"]  timeout_s=600
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-run.log") 2>&1
t0=$(date +%s)
stamp() { echo "== +$(( $(date +%s) - t0 ))s $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv
nvcc --version | tail -1

stamp "unpack"
work=/tmp/llm-node-gpu
mkdir -p "$work"
xz -dc .gpu/node.xz > "$work/node" && chmod +x "$work/node"
export PATH="$work:$PATH"
mkdir -p "$work/llama.cpp" && tar -C "$work/llama.cpp" -xJf .gpu/llama-src.tar.xz
tar -C "$work" -xJf .gpu/app.tar.xz
# The model maker reads the vocabulary and template where the engine's build leaves them.
mkdir -p "$work/engine/build" && ln -sfn "$work/llama.cpp" "$work/engine/build/llama.cpp"
node --version

stamp "model (in the background, during the build): Llama-3.2-1B shapes, random weights, F16"
mkdir -p "$work/models"
model="$work/models/llama-3.2-1b.gguf"
# --text-only: random weights otherwise write text that is not valid UTF-8, and llama-server's chat parser ends
# such a stream with an error after a few dozen tokens.
node "$work/engine/dist/make-model.js" --out "$model" --text-only \
  --dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --context 131072 --type f16 > "$OUT/make-model.log" 2>&1 &
model_pid=$!

stamp "build: llama.cpp (CUDA, sm_90a) with the llama_cpp plugin, llama-server and llama-bench"
build=engines/llama_cpp/build/cmake-cuda
cmake -S engines/llama_cpp -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DENGINE_VERSION="$(node -p "require('./engines/llama_cpp/package.json').version")" -DENGINE_GPU_BACKEND=cuda \
  -DENGINE_API_INCLUDE_DIR="$PWD/packages/abi-native/include" -DLLAMA_SOURCE_DIR="$work/llama.cpp" \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null || exit 1
cmake --build "$build" --target llama_engine llama-server llama-bench -j 16 2>&1 | tail -3 || exit 1
ls engines/llama_cpp/cuda
bin="$build/bin"
wait $model_pid || { cat "$OUT/make-model.log"; exit 1; }
ls -la "$model"

node_cli() { node "$work/cli/dist/bin.js" "$@"; }
wait_health() { for _ in $(seq 1 600); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.1; done; return 1; }

stamp "the cuda plugin through the node: llm-node on the detected GPU, a streamed chat"
node_cli --engines-dir ./engines --models-dir "$work/models" --port 3000 --log-level info > "$OUT/node-e2e.log" 2>&1 &
pid=$!
wait_health http://127.0.0.1:3000 || { cat "$OUT/node-e2e.log"; exit 1; }
curl -s http://127.0.0.1:3000/api/engines; echo
curl -s -X POST http://127.0.0.1:3000/api/models/load -H "Content-Type: application/json" \
  -d '{"model_id": "llama-3.2-1b", "format": "gguf"}'; echo
curl -sN -X POST http://127.0.0.1:3000/v1/chat/completions -H "Content-Type: application/json" \
  -d '{"model": "llama-3.2-1b", "messages": [{"role": "user", "content": "Hello!"}], "stream": true, "max_tokens": 16}' | tail -4
nvidia-smi --query-gpu=memory.used --format=csv
kill -TERM $pid; wait $pid
head -12 "$OUT/node-e2e.log"

figures="$OUT/figures.tsv"
: > "$figures"
record() { sed "s/^/$1\t/" >> "$figures"; }

stamp "performance: llama-bench"
"$bin/llama-bench" -m "$model" -fa on -p 512 -n 128 -r 3 -o csv | tee "$OUT/llama-bench.csv"

stamp "performance: llama-server -np 64"
start=$(date +%s.%N)
"$bin/llama-server" -m "$model" -fa on -ngl 99 -np 64 -c 65536 --host 127.0.0.1 --port 18081 > "$OUT/llama-server.log" 2>&1 &
spid=$!
wait_health http://127.0.0.1:18081 && echo "load_s $(echo "$(date +%s.%N) - $start" | bc)" | record llama-server
python3 .gpu/oai_load.py http://127.0.0.1:18081 llama-3.2-1b 256 4 16 64 | tee /dev/stderr | record llama-server
kill -TERM $spid; wait $spid

stamp "performance: llm-node --parallel 64"
start=$(date +%s.%N)
node_cli --engines-dir ./engines --models-dir "$work/models" --port 18082 --context-length 1024 --parallel 64 \
  --log-level warn > "$OUT/llm-node.log" 2>&1 &
npid=$!
wait_health http://127.0.0.1:18082
curl -sf -X POST http://127.0.0.1:18082/api/models/load -H "Content-Type: application/json" \
  -d '{"model_id": "llama-3.2-1b"}' >/dev/null && echo "load_s $(echo "$(date +%s.%N) - $start" | bc)" | record llm-node
python3 .gpu/oai_load.py http://127.0.0.1:18082 llama-3.2-1b 256 4 16 64 | tee /dev/stderr | record llm-node
kill -TERM $npid; wait $npid

stamp "done"
cat "$figures"
