#!/bin/bash
# First start: initdb with POSTGRES_USER/POSTGRES_PASSWORD, create POSTGRES_DB,
# run /docker-entrypoint-initdb.d/*.sql|*.sh, then exec postgres listening on
# all addresses with scram-sha-256 auth. Later starts just exec postgres.
set -Eeuo pipefail

if [ "${1:-}" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA"
  # only what is not the server's yet, as the official image does: a chown of a
  # file from an image layer copies the whole file up, so `chown -R` over a data
  # folder that came in the image (a topas template) cost a second per start
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 700 "$PGDATA"
  # setpriv execs (runuser would stay as PID 1 and not pass docker stop's signal on):
  # the server itself is PID 1 and shuts down cleanly on SIGTERM
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != 'trust' ]; then
    echo 'error: POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust)' >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # POSTGRES_INITDB_ARGS as the official image reads it (e.g. --no-sync)
  # shellcheck disable=SC2086
  initdb --username="$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"

  # A temporary server on the unix socket only, so nobody connects over TCP
  # before the database and init scripts are in place. It gets the server's
  # own arguments too (as the official image does), so `-c fsync=off` also
  # speeds up CREATE DATABASE and the init scripts; on the default port,
  # where psql below looks, whatever port the server itself will use.
  extra=''
  for a in "${@:2}"; do extra+=" $(printf '%q' "$a")"; done
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql$extra -p 5432" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$user" --host /var/run/postgresql)
  if [ "$db" != 'postgres' ]; then
    "${psql[@]}" --dbname postgres --set db="$db" -q <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$db" -q -f "$f" ;;
      *.sh) echo "running $f"; . "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo 'PostgreSQL init process complete; ready for start up.'
fi

if [ "${1:-}" = 'postgres' ]; then
  shift
  exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
