#!/bin/sh
# Rewrites the committed completion scripts and manual pages (share/man/man1) from the binary's
# own `completions` and `man` commands; tests fail while they are stale.
set -e
cd "$(dirname "$0")/.."
cargo build --quiet --no-default-features
bin="${CARGO_TARGET_DIR:-target}/debug/tensor2npy"
for pair in bash:tensor2npy.bash zsh:_tensor2npy fish:tensor2npy.fish powershell:_tensor2npy.ps1 elvish:tensor2npy.elv; do
  "$bin" completions "${pair%%:*}" > "completions/${pair#*:}"
done
rm -f share/man/man1/tensor2npy*.1
"$bin" man --write share/man/man1
# The wheel installs the pages from packaging/wheel/data (maturin's data directory), which links
# to them one file at a time (maturin does not follow a linked directory).
mkdir -p packaging/wheel/data/share/man/man1
rm -f packaging/wheel/data/share/man/man1/*.1
for page in share/man/man1/*.1; do
  ln -s "../../../../../../$page" "packaging/wheel/data/share/man/man1/$(basename "$page")"
done
