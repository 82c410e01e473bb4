"""Sessions kept in an HMAC-signed cookie: who is logged in, the CSRF token, a flow's next step.

The cookie is signed, not encrypted: it holds nothing the browser's owner may not see (a resident
id, a token, a phone they typed). A signature made with another key, or older than MAX_AGE, makes
an empty session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

COOKIE_NAME = "smsgate_session"
# A session, logged in or not, ends this long after it began; the resident logs in again.
MAX_AGE = 12 * 3600.0
_KEY_CONTEXT = b"smsgate web session v1\x00"


def fingerprint(password_hash: str) -> str:
    """A short digest of the password hash: a changed password ends every other session."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Session:
    """What one browser's cookie says; `changed` tells the middleware to send it back."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self.changed = False

    @property
    def data(self) -> dict[str, Any]:
        return dict(self._data)

    def _set(self, key: str, value: Any) -> None:
        if not self._data:
            self._data["iat"] = time.time()
        self._data[key] = value
        self.changed = True

    def csrf_token(self) -> str:
        """The token every form carries; made on first use."""
        token = self._data.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            self._set("csrf", token)
        return token

    def csrf_matches(self, given: str) -> bool:
        token = self._data.get("csrf")
        return isinstance(token, str) and hmac.compare_digest(token.encode(), given.encode())

    @property
    def resident_id(self) -> int | None:
        value = self._data.get("rid")
        return value if isinstance(value, int) else None

    @property
    def fingerprint(self) -> str:
        value = self._data.get("pw")
        return value if isinstance(value, str) else ""

    def log_in(self, resident_id: int, password_hash: str) -> None:
        """Start a fresh session for the resident: new CSRF token, no state of earlier flows."""
        self._data = {}
        self._set("rid", resident_id)
        self._set("pw", fingerprint(password_hash))
        self._set("csrf", secrets.token_urlsafe(24))

    def clear(self) -> None:
        self._data = {}
        self.changed = True

    def get(self, key: str) -> str | None:
        value = self._data.get(key)
        return value if isinstance(value, str) else None

    def put(self, key: str, value: str) -> None:
        self._set(key, value)

    def pop(self, key: str) -> str | None:
        value = self.get(key)
        if key in self._data:
            del self._data[key]
            self.changed = True
        return value


def _encode(raw: bytes) -> bytes:
    # Without "=" padding, so the cookie value needs no quoting.
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _decode(text: bytes) -> bytes:
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


class SessionCodec:
    """Turns sessions into cookie values and back; keyed once at startup."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure
        self._key: bytes | None = None

    def set_secret(self, secret: str) -> None:
        if not secret:
            raise ValueError("empty session secret")
        self._key = hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        if self._key is None:
            raise RuntimeError("session secret not set: the app's startup has not run")
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, session: Session) -> str:
        payload = _encode(json.dumps(session.data, separators=(",", ":")).encode())
        return (payload + b"." + _encode(self._sign(payload))).decode()

    def loads(self, value: str | None) -> Session:
        """The session a cookie carries; an empty one when it is missing, forged or too old."""
        if not value or len(value) > 4096:
            return Session()
        payload, _, signature = value.encode().partition(b".")
        try:
            given = _decode(signature)
        except (binascii.Error, ValueError):
            return Session()
        if not hmac.compare_digest(self._sign(payload), given):
            return Session()
        try:
            data = json.loads(_decode(payload))
        except (binascii.Error, ValueError):
            return Session()
        issued = data.get("iat") if isinstance(data, dict) else None
        if not isinstance(issued, (int, float)) or not 0 <= time.time() - issued <= MAX_AGE:
            return Session()
        return Session(data)
