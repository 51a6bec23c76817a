"""Domain errors raised by the stock operations. The API maps them to HTTP answers."""

from __future__ import annotations

from hub.errors import DomainError


class StockError(DomainError):
    code = "stock_error"


class InsufficientStock(StockError):
    code = "insufficient_stock"
    http_status = 409


class UnknownSku(StockError):
    code = "unknown_sku"
    http_status = 400


class UnknownLocation(StockError):
    code = "unknown_location"
    http_status = 400


class NotFound(StockError):
    code = "not_found"
    http_status = 404


class InvalidState(StockError):
    code = "invalid_state"
    http_status = 409


class IdempotencyMismatch(StockError):
    """The same caller key was used before for a different request."""

    code = "idempotency_key_reused"
    http_status = 422


class OrderNotFound(StockError):
    code = "order_not_found"
    http_status = 404
