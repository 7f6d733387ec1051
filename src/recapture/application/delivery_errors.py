"""Why a delivery to an email platform failed, classified once at the adapter's boundary.

A worker decides from the class alone: a `TransientDeliveryError` is retried (not before `retry_after`
seconds when the platform or our own pacing said so), a `TerminalDeliveryError` goes to the dead letters
because sending the same request again can only fail the same way. Messages never carry credentials.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A request to the destination did not succeed. `status` is the HTTP status, None when none came back."""

    def __init__(self, status: int | None, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status if status is not None else 'no response'}: {detail}")


class TransientDeliveryError(DeliveryError):
    """Worth retrying: throttled (429), server errors, timeouts, a CDN challenge, or our own pacing said wait."""

    def __init__(self, retry_after: float | None, status: int | None, detail: str) -> None:
        self.retry_after = retry_after
        super().__init__(status, detail)
        if retry_after is not None:
            self.args = (f"{self.args[0]} (retry after {retry_after:.3g} s)",)


class TerminalDeliveryError(DeliveryError):
    """The destination refused the request itself (bad payload, bad key, missing scope): retrying cannot help."""


class DuplicateUniqueIdError(TerminalDeliveryError):
    """One bulk request repeated a unique_id, which makes Klaviyo fail the whole request; send them apart."""

    def __init__(self, unique_ids: tuple[str, ...]) -> None:
        self.unique_ids = unique_ids
        shown = ", ".join(unique_ids[:5]) + (" ..." if len(unique_ids) > 5 else "")
        super().__init__(None, f"unique_id repeated within one bulk request (refused before sending): {shown}")
