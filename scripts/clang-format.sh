#!/usr/bin/env bash
# Formats the C and C++ with .clang-format, or with --check says which files differ from it (exit 1).
# test-plugins/minimal.c is left as it is: it is the plugin guide's minimal plugin, verbatim; so are the vendored
# headers under third_party/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format is not installed (Debian, Ubuntu: apt-get install clang-format)" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.c' '*.cc' '*.cpp' '*.h' | grep -v -e '^packages/abi-native/test-plugins/minimal\.c$' -e '/third_party/')
if [ "${1:-}" = --check ]; then
  clang-format --dry-run -Werror "${files[@]}"
else
  clang-format -i "${files[@]}"
fi
