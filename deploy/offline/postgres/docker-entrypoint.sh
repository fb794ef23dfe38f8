#!/bin/sh
# The official postgres image's entrypoint, as far as deploy/compose uses it: on an empty data
# directory, initdb with POSTGRES_USER (postgres) and POSTGRES_PASSWORD, POSTGRES_DB, then every
# /docker-entrypoint-initdb.d/*.sh (sourced through sh) and *.sql, run against a server that
# listens on its socket only, so that pg_isready over TCP fails until the real server is up.
# `postgres [options]` then runs the server as the postgres user, listening on every address.
set -eu

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
shift

export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (as for the official image)}"
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            -v name="$POSTGRES_DB" -c 'CREATE DATABASE :"name"'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "docker-entrypoint: running $script"
                if [ -x "$script" ]; then "$script"; else . "$script"; fi ;;
            *.sql) echo "docker-entrypoint: running $script"
                psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
                    --dbname "$POSTGRES_DB" -f "$script" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "docker-entrypoint: initialisation done"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
