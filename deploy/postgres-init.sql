-- Run once by the postgres image when its data volume is new (compose.yaml mounts it into
-- /docker-entrypoint-initdb.d): Dagster's storage gets its own database, because Dagster
-- and the app each keep an Alembic `alembic_version` table.
CREATE DATABASE dagster;
