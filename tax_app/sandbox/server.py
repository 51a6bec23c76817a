"""A real HTTP tax server that imitates TaxJar (``POST /v2/taxes``, ``GET /v2/rates/:zip``) and Avalara
(``POST /api/v2/transactions/create``), for tests, demos and the benchmark.

Failure knobs are set through the control endpoint ``/_sandbox/`` (``GET`` shows them, ``POST`` a JSON object
changes them; ``{"reset": true}`` restores the defaults):

* ``latency_ms``: added to every provider answer;
* ``mode``: ``ok``; ``error`` (every provider call answers ``error_status``); ``timeout`` (hang ``hang_ms``,
  longer than any client timeout); ``down`` (drop the connection without answering);
* ``error_rate_pct`` + ``seed``: that share of calls answer ``error_status`` (5xx or 4xx), deterministically;
* ``api_key``: when set, calls without it get 401;
* ``rates``: ``{zip5: {state, state_rate, county, county_rate, city, city_rate, special_rate, freight_taxable}}``;
* ``exempt``: ``{state: [product tax codes exempt there]}``;
* ``files``: ``{name: text}`` served at ``GET /files/<name>`` (rate files for the URL importer).

Start it in-process with ``SandboxServer().start()`` (port 0 picks a free port) or run
``python manage.py tax_sandbox --port N``.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tax_app.providers.http import dumps

CENT = Decimal("0.01")
LEVELS = ["state", "county", "city", "special"]
DEFAULTS = {
    "latency_ms": 0, "mode": "ok", "error_status": 503, "error_rate_pct": 0, "seed": 1, "hang_ms": 5000,
    "api_key": "", "rates": {}, "exempt": {}, "files": {},
}
MODES = {"ok", "error", "timeout", "down"}


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _dec(value) -> Decimal:
    if value is None or value == "":
        return Decimal("0")
    return value if isinstance(value, Decimal) else Decimal(str(value))


class SandboxState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.knobs = json.loads(json.dumps(DEFAULTS))
            self.random = random.Random(self.knobs["seed"])
            self.calls = 0
            self.failures = 0

    def update(self, changes: dict) -> None:
        if changes.get("reset"):
            self.reset()
        with self.lock:
            for key, value in changes.items():
                if key == "reset":
                    continue
                if key not in DEFAULTS:
                    raise ValueError(f"unknown knob {key!r}")
                if key == "mode" and value not in MODES:
                    raise ValueError(f"mode must be one of {sorted(MODES)}")
                if key in ("rates", "exempt", "files"):
                    self.knobs[key].update(value)
                else:
                    self.knobs[key] = value
            if "seed" in changes:
                self.random = random.Random(self.knobs["seed"])

    def snapshot(self) -> dict:
        with self.lock:
            return {**{k: v for k, v in self.knobs.items() if k != "files"}, "files": sorted(self.knobs["files"]),
                    "calls": self.calls, "failures": self.failures}

    def decide(self) -> tuple[str, int]:
        """What to do with the next provider call: ('ok'|'error'|'timeout'|'down', status)."""
        with self.lock:
            self.calls += 1
            mode, status = self.knobs["mode"], int(self.knobs["error_status"])
            if mode == "ok" and self.random.randrange(100) < int(self.knobs["error_rate_pct"]):
                mode = "error"
            if mode != "ok":
                self.failures += 1
            return mode, status


class Handler(BaseHTTPRequestHandler):
    server_version = "TallyTaxSandbox/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> SandboxState:
        return self.server.state  # type: ignore[attr-defined]

    def setup(self):
        super().setup()
        # Headers and body go out as two writes; without this, Nagle plus delayed ACKs add ~40 ms per call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        return  # quiet: tests and the benchmark would drown in access logs

    # --- plumbing -----------------------------------------------------------------------------
    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}", parse_float=Decimal)

    def _send(self, status: int, payload: dict | str, content_type: str = "application/json") -> None:
        body = (payload if isinstance(payload, str) else dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _failure_knobs(self) -> bool:
        """Apply latency and failure modes; True when the call has been answered (or dropped) already."""
        mode, status = self.state.decide()
        latency = int(self.state.knobs["latency_ms"])
        if latency:
            self.state.stopping.wait(latency / 1000)
        if mode == "down":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if mode == "timeout":
            self.state.stopping.wait(int(self.state.knobs["hang_ms"]) / 1000)
            self.close_connection = True
            self._send(504, {"error": "Gateway Timeout"})
            return True
        if mode == "error":
            self._send(status, {"error": "sandbox failure", "status": status})
            return True
        return False

    def _authorised(self, style: str) -> bool:
        key = self.state.knobs["api_key"]
        if not key:
            return True
        header = self.headers.get("Authorization", "")
        if style == "bearer":
            ok = header in (f"Bearer {key}", f'Token token="{key}"')
        else:
            try:
                ok = base64.b64decode(header.removeprefix("Basic ")).decode().split(":", 1)[1] == key
            except (ValueError, IndexError):
                ok = False
        if not ok:
            self._send(401, {"error": "Unauthorized", "detail": "Not authorized for route"})
        return ok

    # --- routes -------------------------------------------------------------------------------
    def do_GET(self):  # noqa: N802 - stdlib naming
        path = urlsplit(self.path).path
        if path.rstrip("/") == "/_sandbox":
            return self._send(200, self.state.snapshot())
        if path.startswith("/files/"):
            text = self.state.knobs["files"].get(path.removeprefix("/files/"))
            return self._send(200, text, "text/csv") if text is not None else self._send(404, {"error": "Not Found"})
        if path.startswith("/v2/rates/"):
            if self._failure_knobs() or not self._authorised("bearer"):
                return None
            return self._rates(path.removeprefix("/v2/rates/").strip("/"))
        return self._send(404, {"error": "Not Found"})

    def do_POST(self):  # noqa: N802 - stdlib naming
        path = urlsplit(self.path).path
        try:
            body = self._body()
        except ValueError:
            return self._send(400, {"error": "Bad Request", "detail": "malformed JSON"})
        if path.rstrip("/") == "/_sandbox":
            try:
                self.state.update(body)
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, self.state.snapshot())
        if path == "/v2/taxes":
            if self._failure_knobs() or not self._authorised("bearer"):
                return None
            return self._taxjar(body)
        if path == "/api/v2/transactions/create":
            if self._failure_knobs() or not self._authorised("basic"):
                return None
            return self._avalara(body)
        return self._send(404, {"error": "Not Found"})

    # --- imitation ----------------------------------------------------------------------------
    def _zip(self, zip_code: str) -> dict | None:
        return self.state.knobs["rates"].get(str(zip_code).split("-")[0][:5])

    def _levels(self, rate: dict, tax_code: str, amount: Decimal) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        """level -> (rate, taxable amount, tax)."""
        exempt = tax_code in self.state.knobs["exempt"].get(rate.get("state", ""), [])
        out = {}
        for level in LEVELS:
            r = _dec(rate.get(f"{level}_rate"))
            taxable = Decimal("0") if exempt else amount
            out[level] = (r, taxable, _money(taxable * r))
        return out

    def _rates(self, zip_code: str):
        rate = self._zip(zip_code)
        if rate is None:
            return self._send(404, {"error": "Not Found", "detail": f"No rates for {zip_code}"})
        combined = sum((_dec(rate.get(f"{lv}_rate")) for lv in LEVELS), Decimal("0"))
        return self._send(200, {"rate": {
            "zip": zip_code, "country": "US", "state": rate.get("state", ""), "county": rate.get("county", ""),
            "city": rate.get("city", ""), "state_rate": str(_dec(rate.get("state_rate"))),
            "county_rate": str(_dec(rate.get("county_rate"))), "city_rate": str(_dec(rate.get("city_rate"))),
            "combined_district_rate": str(_dec(rate.get("special_rate"))), "combined_rate": str(combined),
            "freight_taxable": bool(rate.get("freight_taxable")),
        }})

    def _taxjar(self, body: dict):
        rate = self._zip(body.get("to_zip", ""))
        if rate is None:
            return self._send(400, {"error": "Bad Request", "detail": "to_zip is not a known ZIP code"})
        names = {"country": "US", "state": rate.get("state", ""), "county": rate.get("county", ""),
                 "city": rate.get("city", "")}
        items, total = [], Decimal("0")
        for item in body.get("line_items") or []:
            amount = _dec(item.get("quantity")) * _dec(item.get("unit_price")) - _dec(item.get("discount"))
            levels = self._levels(rate, str(item.get("product_tax_code") or ""), amount)
            tax = sum((t for _, _, t in levels.values()), Decimal("0"))
            total += tax
            items.append(self._taxjar_item(levels, id=str(item.get("id")), taxable_amount=levels["state"][1],
                                           tax_collectable=tax))
        shipping_amount = _dec(body.get("shipping"))
        ship_levels = self._levels(rate, "" if rate.get("freight_taxable") else "__not_taxable__", shipping_amount)
        if not rate.get("freight_taxable"):
            ship_levels = {lv: (r, Decimal("0"), Decimal("0")) for lv, (r, _, _) in ship_levels.items()}
        ship_tax = sum((t for _, _, t in ship_levels.values()), Decimal("0"))
        breakdown = {"line_items": items, "shipping": self._taxjar_item(ship_levels, tax_collectable=ship_tax)}
        return self._send(200, {"tax": {
            "order_total_amount": _dec(body.get("amount")) + shipping_amount, "shipping": shipping_amount,
            "amount_to_collect": total + ship_tax, "has_nexus": True, "freight_taxable": bool(rate.get("freight_taxable")),
            "tax_source": "destination", "jurisdictions": names, "breakdown": breakdown,
        }})

    @staticmethod
    def _taxjar_item(levels: dict, **extra) -> dict:
        fields = {"state": ("state_taxable_amount", "state_sales_tax_rate", "state_amount"),
                  "county": ("county_taxable_amount", "county_tax_rate", "county_amount"),
                  "city": ("city_taxable_amount", "city_tax_rate", "city_amount"),
                  "special": ("special_district_taxable_amount", "special_tax_rate", "special_district_amount")}
        out = dict(extra)
        for level, (taxable_f, rate_f, amount_f) in fields.items():
            rate, taxable, tax = levels[level]
            out.update({taxable_f: taxable, rate_f: rate, amount_f: tax})
        return out

    def _avalara(self, body: dict):
        ship_to = (body.get("addresses") or {}).get("shipTo") or {}
        rate = self._zip(ship_to.get("postalCode", ""))
        if rate is None:
            return self._send(400, {"error": {"code": "InvalidAddress", "message": "Unknown postal code"}})
        types = {"state": "STA", "county": "CTY", "city": "CIT", "special": "STJ"}
        names = {"state": rate.get("state", ""), "county": rate.get("county", ""), "city": rate.get("city", ""),
                 "special": f"{rate.get('city', '')} SPECIAL"}
        lines, total = [], Decimal("0")
        for line in body.get("lines") or []:
            code = str(line.get("taxCode") or "")
            amount = _dec(line.get("amount"))
            if code == "FR020100" and not rate.get("freight_taxable"):
                code = "__not_taxable__"
                levels = {lv: (r, Decimal("0"), Decimal("0")) for lv, (r, _, _) in self._levels(rate, code, amount).items()}
            else:
                levels = self._levels(rate, code, amount)
            details = [{"jurisType": types[lv], "jurisName": names[lv], "jurisCode": f"{rate.get('state', '')}-{types[lv]}",
                        "rate": r, "taxableAmount": taxable, "tax": tax, "taxName": f"{names[lv]} SALES TAX"}
                       for lv, (r, taxable, tax) in levels.items() if r]
            tax = sum((d["tax"] for d in details), Decimal("0"))
            total += tax
            lines.append({"lineNumber": str(line.get("number")), "lineAmount": amount, "tax": tax,
                          "taxableAmount": levels["state"][1], "details": details})
        return self._send(201, {"id": 0, "code": "sandbox", "type": body.get("type", "SalesOrder"),
                                "status": "Temporary", "totalTax": total, "lines": lines})


class SandboxServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = SandboxState()  # type: ignore[attr-defined]
        self.thread: threading.Thread | None = None

    @property
    def state(self) -> SandboxState:
        return self.httpd.state  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SandboxServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="tax-sandbox", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.state.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
