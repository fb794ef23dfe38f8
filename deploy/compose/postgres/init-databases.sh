#!/bin/sh
# One database per service (design §8), each owned by a login role of the same name, so that a
# service can reach only its own data. The postgres image runs this once, on an empty volume
# (/docker-entrypoint-initdb.d), as the superuser POSTGRES_USER.
#
#   SERVICE_DATABASES           the names, separated by spaces (compose.yaml: "books shop chat")
#   SERVICE_DATABASE_PASSWORD   the password of every service role
set -eu

: "${SERVICE_DATABASES:?set SERVICE_DATABASES, e.g. \"books shop chat\"}"
: "${SERVICE_DATABASE_PASSWORD:?set SERVICE_DATABASE_PASSWORD}"

for name in $SERVICE_DATABASES; do
    # psql variables (:"name", :'password') quote the identifier and the literal.
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" \
        --dbname "${POSTGRES_DB:-postgres}" \
        -v name="$name" -v password="$SERVICE_DATABASE_PASSWORD" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "init-databases: database $name owned by role $name"
done
