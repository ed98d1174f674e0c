# Sourced by the other scripts (not run on its own): what they share about where things are.

# Where cargo puts its builds: CARGO_TARGET_DIR when set, else ./target.
TARGET_DIR=${CARGO_TARGET_DIR:-target}

# "host port" of a URL like postgres://user:pw@host:port/db?query (the default port when absent;
# an IPv6 host in brackets comes out without them).
url_host_port() { # url default-port
  local rest=${1#*://}
  rest=${rest%%\?*}; rest=${rest%%/*}; rest=${rest##*@}
  local host port
  if [[ $rest == \[* ]]; then
    host=${rest%%]*}; host=${host#[}
    port=${rest#*]}; port=${port#:}
  else
    host=${rest%%:*}
    port=; [[ $rest == *:* ]] && port=${rest##*:}
  fi
  echo "$host ${port:-$2}"
}

# The PostgreSQL URL of database NAME on the server of DATABASE_SERVER_URL, else of
# DATABASE_URL, else the local default: the same credentials, host, port and query (sslmode...),
# so the bench, drill and fuzz databases are reached as DATABASE_URL's is.
db_url() { # name
  local url=${DATABASE_SERVER_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
  local query=
  if [[ $url == *\?* ]]; then query="?${url#*\?}"; url=${url%%\?*}; fi
  local scheme=${url%%://*} rest=${url#*://}
  echo "$scheme://${rest%%/*}/$1$query"
}

is_local_host() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }

# True when something on this machine listens on the TCP port.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
