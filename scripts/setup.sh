#!/usr/bin/env bash
# Installs what building and testing need, skipping what is already there:
# Debian's Postgres 15 server and headers, clang, pg_cron and sudo (through sudo when
# not root); cargo-pgrx 0.18.1; `cargo pgrx init` against the system's Postgres 15.
set -euo pipefail
source "$(dirname "$0")/env.sh"

missing=()
[ -f /usr/include/postgresql/15/server/postgres.h ] || missing+=(postgresql-server-dev-15)
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
[ -f /usr/lib/postgresql/15/lib/pg_cron.so ] || missing+=(postgresql-15-cron)
[ "$(id -u)" = 0 ] && ! command -v sudo >/dev/null && missing+=(sudo)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found: install a Rust toolchain (rustup) for $(id -un) first" >&2
  exit 1
fi
if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.1'; then
  echo "setup: installing cargo-pgrx 0.18.1 (takes about 5 minutes)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi

if ! grep -qs "pg15" "$HOME/.pgrx/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG"
fi
