#!/usr/bin/env bash
# Fails when a domain crate (crates/domain/*) depends, even transitively and even only for its
# tests (dev-dependencies), on an I/O crate:
# diesel, redis, deadpool, actix, reqwest, tokio, hyper (any crate of those families).
# Usage: scripts/check-arch.sh [workspace-dir]
set -euo pipefail
root=$(cd "${1:-.}" && pwd)
forbidden='^(diesel|diesel-.*|diesel_.*|redis|redis-.*|deadpool|deadpool-.*|actix|actix-.*|actix_.*|reqwest|reqwest-.*|tokio|tokio-.*|hyper|hyper-.*|mio)$'

status=0
checked=0
for manifest in "$root"/crates/domain/*/Cargo.toml; do
  [ -f "$manifest" ] || continue
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
  checked=$((checked + 1))
  deps=$(cargo tree --manifest-path "$root/Cargo.toml" -p "$name" -e normal,build,dev --all-features \
           --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  bad=$(grep -E "$forbidden" <<<"$deps" || true)
  if [ -n "$bad" ]; then
    status=1
    for crate in $bad; do
      echo "check-arch: domain crate $name depends on I/O crate $crate:"
      cargo tree --manifest-path "$root/Cargo.toml" -p "$name" -e normal,build,dev --all-features -i "$crate" | sed 's/^/    /'
    done
  fi
done
if [ "$checked" -eq 0 ]; then echo "check-arch: no domain crates found under $root/crates/domain" >&2; exit 1; fi
[ "$status" -eq 0 ] && echo "check-arch: $checked domain crates are free of I/O crates"
exit $status
