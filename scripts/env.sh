# Sourced by the scripts and the shell tests: who runs what.
#
# Postgres refuses to run as root, so a cluster's server runs as the `postgres` user
# when we are root, and as the caller otherwise. Clients (psql, pg_regress, pg_dump...)
# always run as the caller, so they read the checkout with the caller's rights (which
# may be a directory only its owner can enter), and connect as the cluster's superuser
# role, named `postgres` whoever runs the server.
PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=${PG_CONFIG:-$PGBIN/pg_config}
export PGUSER=postgres
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" = 0 ]; then
  SERVER_USER=postgres
  # From /: the postgres user may not be able to enter the current directory.
  as_server() { (cd / && runuser -u postgres -- "$@"); }
  as_root() { "$@"; }
else
  SERVER_USER=$(id -un)
  as_server() { "$@"; }
  as_root() {
    if ! command -v sudo >/dev/null 2>&1; then
      echo "error: '$*' needs root: install sudo (and allow $(id -un) to use it) or run this script as root" >&2
      exit 1
    fi
    sudo "$@"
  }
fi

# A throwaway directory of ours under /tmp: /tmp/NAME as root, /tmp/NAME-USER otherwise,
# so clusters of different users never share one.
la_tmp() { # NAME
  if [ "$(id -u)" = 0 ]; then echo "/tmp/$1"; else echo "/tmp/$1-$(id -un)"; fi
}

# `cargo pgrx install` writes into the system's Postgres directories.
la_install() { # extra cargo pgrx install flags...
  if [ "$(id -u)" = 0 ]; then
    cargo pgrx install --pg-config "$PG_CONFIG" "$@"
  else
    as_root true   # fails with one line when there is no sudo
    cargo pgrx install --sudo --pg-config "$PG_CONFIG" "$@"
  fi
}
