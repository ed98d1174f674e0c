# Sourced by the other scripts (not run on its own): what they share about where things are.

# Where cargo puts its builds: CARGO_TARGET_DIR when set, else ./target.
TARGET_DIR=${CARGO_TARGET_DIR:-target}

# The server part of a PostgreSQL URL (scheme, credentials, host, port), without the database
# name or query: DATABASE_SERVER_URL when set, else from DATABASE_URL, else the local default.
# A password in DATABASE_URL is kept, so the bench, drill and fuzz databases log in the same way.
db_server_url() {
  local url=${DATABASE_SERVER_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
  url=${url%%\?*}
  local scheme=${url%%://*} rest=${url#*://}
  echo "$scheme://${rest%%/*}"
}

# True when something on this machine listens on the TCP port.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
