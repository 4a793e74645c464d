#!/bin/sh
# Rewrites the committed completion scripts from the binary's own `completions` command.
set -e
cd "$(dirname "$0")/.."
cargo build --quiet
for pair in bash:tensor2npy.bash zsh:_tensor2npy fish:tensor2npy.fish powershell:_tensor2npy.ps1 elvish:tensor2npy.elv; do
  ./target/debug/tensor2npy completions "${pair%%:*}" > "completions/${pair#*:}"
done
