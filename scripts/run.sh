#!/usr/bin/env bash
# `make run`: migrate, load demo data, then web, worker, beat, Flower (and sandbox channels) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p var/log
export PYTHONUNBUFFERED=1
# Prometheus multiprocess mode: web and worker processes write their metrics here; /metrics merges them.
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/prometheus"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export LOG_FORMAT=${LOG_FORMAT:-json}
WEB_PORT=${WEB_PORT:-8000}
FLOWER_PORT=${FLOWER_PORT:-5555}

log() { printf '\033[1m[tally]\033[0m %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  log "stopped."
}
trap cleanup INT TERM EXIT

# Redis: use REDIS_URL if it answers, else a private redis-server under var/.
if [ -z "${REDIS_URL:-}" ] && port_open 127.0.0.1 6379; then
  export REDIS_URL=redis://127.0.0.1:6379/0
elif [ -n "${REDIS_URL:-}" ]; then
  :
else
  if ! command -v redis-server >/dev/null 2>&1; then
    log "redis-server not found: installing the Debian package"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
  fi
  log "starting a private Redis on 127.0.0.1:6390"
  redis-server --bind 127.0.0.1 --port 6390 --save "" --appendonly no --dir "$PWD/var" \
    --logfile "$PWD/var/log/redis.log" &
  pids+=($!)
  export REDIS_URL=redis://127.0.0.1:6390/0
  for _ in $(seq 1 50); do port_open 127.0.0.1 6390 && break; sleep 0.1; done
fi
if [ -z "${DATABASE_URL:-}" ]; then
  log "no DATABASE_URL: using the embedded SQLite file var/tally.sqlite3"
fi

$BIN/python manage.py migrate --no-input -v 0
$BIN/python manage.py collectstatic --no-input -v 0
$BIN/python manage.py load_demo
$BIN/python manage.py demo_channels
$BIN/python manage.py sync_schedules
$BIN/python manage.py demo_admin --password-file var/admin-password
ADMIN_PASSWORD=$(cat var/admin-password)

WEB_BIND=127.0.0.1:$WEB_PORT $BIN/gunicorn -c hub/gunicorn.conf.py hub.wsgi:application \
  --access-logfile var/log/web-access.log --error-logfile var/log/web.log &
pids+=($!)
# Inbound and batch work on processes; pushes are network-bound, so they get a pool of their own (threads:
# many requests in flight to slow platforms) and a throttled or slow channel never holds the processes inbound
# events need. PUSH_POOL=prefork PUSH_CONCURRENCY=3 did better against the loopback sandboxes (README).
$BIN/celery -A hub worker -Q inbound,default,batch --concurrency 2 -n "inbound@%h" --loglevel INFO \
  --logfile var/log/worker-inbound.log &
pids+=($!)
$BIN/celery -A hub worker -Q push --pool "${PUSH_POOL:-threads}" --concurrency "${PUSH_CONCURRENCY:-8}" -n "push@%h" \
  --loglevel INFO \
  --logfile var/log/worker-push.log &
pids+=($!)
$BIN/celery -A hub beat --loglevel INFO --logfile var/log/beat.log --pidfile var/beat.pid &
pids+=($!)
FLOWER_PORT=$FLOWER_PORT FLOWER_BASIC_AUTH="admin:$ADMIN_PASSWORD" \
  $BIN/celery -A hub flower --conf=hub/flowerconfig.py --logging=warning &
pids+=($!)

$BIN/python manage.py sandbox --all --hub "http://127.0.0.1:$WEB_PORT" > var/log/sandbox.log 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do port_open 127.0.0.1 "$WEB_PORT" && break; sleep 0.2; done
cat <<MSG

  Tally is up.
    Admin     http://127.0.0.1:$WEB_PORT/admin/     user admin / password $ADMIN_PASSWORD
    API docs  http://127.0.0.1:$WEB_PORT/api/docs/  (token: python manage.py drf_create_token admin)
    Flower    http://127.0.0.1:$FLOWER_PORT/         same login as the admin
    Health    http://127.0.0.1:$WEB_PORT/healthz  ·  http://127.0.0.1:$WEB_PORT/readyz
    Sandboxes Shopify http://127.0.0.1:9101/_sandbox/state · WooCommerce :9102 · POS :9103
              sell on a channel:  curl -XPOST 127.0.0.1:9101/_sandbox/orders -d '{"lines":[{"sku":"TEE-BLK-M","quantity":1}]}'
    Logs      var/log/
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
log "a process exited; shutting down the rest"
