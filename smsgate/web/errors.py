"""What the website refuses with a page of its own, and how each status reads to a resident."""

from __future__ import annotations

from smsgate.web import wording


class Refusal(Exception):
    """A request refused as a whole (no form to show again): rendered as an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Redirect(Exception):
    """Go elsewhere (303 See Other); raised by guards deep inside a view."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


STATUS_TEXTS: dict[int, str] = {
    400: wording.BAD_FORM,
    403: wording.CSRF,
    404: wording.NOT_FOUND,
    405: wording.NOT_ALLOWED,
    413: wording.TOO_LARGE,
    500: wording.SERVER_ERROR,
}
