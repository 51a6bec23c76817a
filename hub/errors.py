"""The one shape of a domain refusal: a code, an HTTP status for the API, a reason and details."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict:
        return {"code": self.code, "detail": self.message, **self.details}
