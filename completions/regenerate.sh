#!/bin/sh
# Rewrites the committed completion scripts from the binary's own `completions` command.
set -e
cd "$(dirname "$0")/.."
cargo build --quiet --no-default-features
bin="${CARGO_TARGET_DIR:-target}/debug/tensor2npy"
for pair in bash:tensor2npy.bash zsh:_tensor2npy fish:tensor2npy.fish powershell:_tensor2npy.ps1 elvish:tensor2npy.elv; do
  "$bin" completions "${pair%%:*}" > "completions/${pair#*:}"
done
