#!/usr/bin/env bash
# Packs what a run on the GPU machine needs into .gpu/ (ignored by git, carried by the device tool): that
# machine has no Node, no network and takes at most 64 MiB, so node_modules cannot travel.
#   .gpu/node.xz           this machine's node binary (Ubuntu 24.04's glibc is newer, so it runs there)
#   .gpu/llama-src.tar.xz  the llama.cpp source of the engine's bundle, pruned to what the CUDA build needs
#   .gpu/app.tar.xz        llm-node and the llama_cpp package with their production dependencies (pnpm deploy),
#                          the N-API addon as a prebuild
#   .gpu/oai_load.py       the shared load client
# Run after `pnpm build`, from the repository root: bash bench/gpu/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu
rm -rf "$out" && mkdir -p "$out"

xz -T0 -6 -c "$(command -v node)" > "$out/node.xz"

src=.cache/bench/llama.cpp
if [ ! -f "$src/.release" ]; then
  node --input-type=module -e "import { llamaSource } from './bench/lib/llama-cpp.mjs'; llamaSource();"
fi
tar -C "$src" -cJf "$out/llama-src.tar.xz" \
  CMakeLists.txt cmake ggml src include common vendor tools licenses LICENSE \
  models/ggml-vocab-llama-bpe.gguf models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja

# The addon travels as a prebuild (node-gyp-build finds prebuilds/<platform>-<arch>/).
pnpm --filter @llm-node/abi-native prebuild >/dev/null
stage=$(mktemp -d)
pnpm --filter llm-node deploy --legacy --prod "$stage/cli" >/dev/null
pnpm --filter @llm-node/engine-llama-cpp deploy --legacy --prod --no-optional "$stage/engine" >/dev/null
tar -C "$stage" -cJf "$out/app.tar.xz" cli engine
rm -rf "$stage"

cp ../shared/bench/oai_load.py "$out/"
du -sh "$out"/*
