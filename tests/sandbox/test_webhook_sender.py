"""The sandboxes' webhook sender (channels_app/sandbox/webhooks.py): what a platform's delivery does on the wire."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from channels_app.sandbox.webhooks import Delivery, WebhookSender


class _Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn answers
    seen: list[tuple[str, bytes, str]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hub.seen.append((self.path, body, self.headers.get("X-Test", "")))
        status = 302 if self.path.startswith("/moved") else 200
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
        # As a hub restarting or timing out an idle connection does: closed after answering, without saying so.
        self.close_connection = "hang-up" in self.path

    def log_message(self, *args):
        pass


def _serve(port: int = 0) -> ThreadingHTTPServer:
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", port), _Hub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _deliver(sender: WebhookSender, url: str, n: int) -> int | None:
    return sender.submit(Delivery(delivery_id=str(n), topic="t", url=url, body=b'{"n": %d}' % n,
                                  headers={"X-Test": str(n), "Content-Type": "application/json"})).result(10)


def test_deliveries_keep_their_connection_and_survive_the_hub_closing_it():
    """Headers and body arrive as sent; a redirect is an answer, not followed (platforms count it a failure); and
    when the hub drops the kept-alive connection after an answer (a restart, its keep-alive timeout), the next
    delivery opens a new one and lands, where sending on the dead one failed it."""
    _Hub.seen = []
    server = _serve()
    port = server.server_address[1]
    sender = WebhookSender(workers=1)
    try:
        assert _deliver(sender, f"http://127.0.0.1:{port}/webhooks/shop/?a=1", 1) == 200
        assert _Hub.seen == [("/webhooks/shop/?a=1", b'{"n": 1}', "1")]
        assert _deliver(sender, f"http://127.0.0.1:{port}/moved/hang-up", 2) == 302
        assert _deliver(sender, f"http://127.0.0.1:{port}/webhooks/shop/", 3) == 200
        assert [seen[2] for seen in _Hub.seen] == ["1", "2", "3"]
    finally:
        sender.close()
        server.shutdown()
        server.server_close()


def test_a_delivery_that_cannot_even_be_sent_fails_and_is_accounted_for():
    """A header value http.client refuses (a line break) raises ValueError, not a network error: the delivery must
    still fail and resolve, not kill the worker and leave it outstanding (review finding, 2026-12-07)."""
    server = _serve()
    sender = WebhookSender(workers=1)
    try:
        broken = sender.submit(Delivery(delivery_id="x", topic="t", url=f"http://127.0.0.1:{server.server_address[1]}/",
                                        body=b"{}", headers={"X-Test": "a\nb"}))
        assert broken.result(3) is None
        assert sender.flush(3) and sender.pending() == 0
        assert _deliver(sender, f"http://127.0.0.1:{server.server_address[1]}/after", 4) == 200
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
