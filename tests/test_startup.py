"""hub.startup.warm_up: what gunicorn workers and Celery pool processes do before their first request or task."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest

from hub.startup import warm_up


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process keeps collecting what it allocated


def test_warm_up_takes_the_loaded_heap_out_of_the_collectors_sight(unfrozen):
    before = len(gc.get_objects(generation=2))
    warm_up(web=False)
    assert gc.get_freeze_count() > 10_000  # Django and the apps, loaded
    assert len(gc.get_objects(generation=2)) < before // 10  # what a full collection walked, now out of its way


def test_a_web_worker_loads_the_url_conf_first(unfrozen):
    from django.urls import clear_url_caches, get_resolver

    clear_url_caches()
    assert "url_patterns" not in get_resolver().__dict__
    config = runpy.run_path(str(Path(__file__).resolve().parent.parent / "hub" / "gunicorn.conf.py"))
    config["post_worker_init"](None)
    assert "url_patterns" in get_resolver().__dict__  # resolved, with every urls module it includes
    assert gc.get_freeze_count() > 10_000


def test_celery_pool_processes_warm_up_after_the_fork(unfrozen):
    from celery.signals import worker_process_init

    import hub.celery  # noqa: F401 - connects the receivers

    worker_process_init.send(sender=None)
    assert gc.get_freeze_count() > 10_000


def test_a_threads_pool_worker_warms_up_once_ready(unfrozen):
    """Push workers run their tasks in the worker's own process (``--pool threads``): no pool process starts."""
    from celery.signals import worker_ready

    import hub.celery  # noqa: F401 - connects the receivers

    worker_ready.send(sender=None)
    assert gc.get_freeze_count() > 10_000
