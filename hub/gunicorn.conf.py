# gunicorn settings for Tally (gunicorn -c hub/gunicorn.conf.py hub.wsgi:application).
import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Webhook senders give up after seconds (Shopify: 5 s); a request that takes longer is already lost.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
keepalive = 5


def child_exit(server, worker):
    # Prometheus multiprocess mode: drop the dead worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # After the app is loaded in this worker, before its first request: see hub.startup.
    from hub.startup import warm_up

    warm_up(web=True)

