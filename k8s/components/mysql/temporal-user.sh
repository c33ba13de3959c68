# Sourced (not executed: the file is not executable) by the mysql image's entrypoint when it
# initialises an empty data volume (/docker-entrypoint-initdb.d), so docker_process_sql is defined:
# the Temporal server's databases and user, next to the app's. No `set` here: it would change the
# entrypoint's own shell options.
docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS temporal;
CREATE DATABASE IF NOT EXISTS temporal_visibility;
CREATE USER IF NOT EXISTS 'temporal'@'%' IDENTIFIED BY '${TEMPORAL_DB_PASSWORD}';
GRANT ALL PRIVILEGES ON temporal.* TO 'temporal'@'%';
GRANT ALL PRIVILEGES ON temporal_visibility.* TO 'temporal'@'%';
SQL
