#!/usr/bin/env bash
# Proves that check-arch catches a transitive or test-only I/O dependency and passes a clean workspace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

crate() { # dir name [dependency-name path]
  mkdir -p "$tmp/$1/src"; : > "$tmp/$1/src/lib.rs"
  printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' "$2" > "$tmp/$1/Cargo.toml"
  if [ $# -ge 4 ]; then printf '%s = { path = "%s" }\n' "$3" "$4" >> "$tmp/$1/Cargo.toml"; fi
}
workspace() { printf '[workspace]\nresolver = "2"\nmembers = [%s]\n' "$1" > "$tmp/Cargo.toml"; }

crate crates/domain/pure pure
crate crates/domain/leaky leaky middle ../../adapters/middle
crate crates/adapters/middle middle tokio ../../../vendor/tokio
crate vendor/tokio tokio

workspace '"crates/domain/pure", "crates/domain/leaky", "crates/adapters/middle", "vendor/tokio"'
if out=$("$here/check-arch.sh" "$tmp" 2>&1); then
  echo "check-arch self-test FAILED: a domain crate reaching tokio through another crate passed:"; echo "$out"; exit 1
fi
grep -q "domain crate leaky depends on I/O crate tokio" <<<"$out" || { echo "unexpected output: $out"; exit 1; }

# Tokio only for tests (a dev-dependency) is refused too.
rm -rf "$tmp/crates/domain/leaky" "$tmp/Cargo.lock"
crate crates/domain/testonly testonly
printf '\n[dev-dependencies]\ntokio = { path = "../../../vendor/tokio" }\n' >> "$tmp/crates/domain/testonly/Cargo.toml"
workspace '"crates/domain/pure", "crates/domain/testonly", "crates/adapters/middle", "vendor/tokio"'
if out=$("$here/check-arch.sh" "$tmp" 2>&1); then
  echo "check-arch self-test FAILED: a domain crate with tokio as a dev-dependency passed:"; echo "$out"; exit 1
fi
grep -q "domain crate testonly depends on I/O crate tokio" <<<"$out" || { echo "unexpected output: $out"; exit 1; }

rm -rf "$tmp/crates/domain/testonly" "$tmp/Cargo.lock"
workspace '"crates/domain/pure", "crates/adapters/middle", "vendor/tokio"'
"$here/check-arch.sh" "$tmp" >/dev/null || { echo "check-arch self-test FAILED: a clean workspace failed"; exit 1; }
echo "check-arch self-test: a transitive or test-only I/O dependency fails, a clean workspace passes"
