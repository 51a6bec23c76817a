# Flower configuration (executed by Flower's --conf loader).
# Flower serves /metrics without authentication; Tally requires the same basic auth as every
# other Flower page, so task metadata never leaks to whoever can reach the port.
import os

import tornado.web
from flower.views import monitor

if not getattr(monitor.Metrics.get, "_tally_authenticated", False):
    monitor.Metrics.get = tornado.web.authenticated(monitor.Metrics.get)
    monitor.Metrics.get._tally_authenticated = True

address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
basic_auth = [item for item in os.environ.get("FLOWER_BASIC_AUTH", "").split(",") if item]
