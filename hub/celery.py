import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Separate queues so a webhook storm cannot starve pushes, and a slow
# reconciliation cannot delay either; workers can be sized per queue.
app.conf.task_queues = (Queue("default"), Queue("inbound"), Queue("push"), Queue("batch"))
app.autodiscover_tasks()

from hub.observability import install_celery_hooks  # noqa: E402

install_celery_hooks()
