"""The console's sign-in: a token exchanged once for a signed, expiring session cookie, and CSRF on every POST.

The cookie holds the role (admin or viewer), its expiry and a random nonce, signed with HMAC-SHA256 under a key
derived from RELAY_ADMIN_TOKEN: every replica with the same token accepts it, and changing the token signs every
session out. The token itself is never stored in the cookie, a URL or a page. The CSRF token of a form is another
HMAC of the session's nonce, so it needs no server state and a page from another site cannot know it; SameSite=Strict
and the foreign-Origin rule (relay.auth.check_origin) stand in front of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "viewer"]
COOKIE = "relay_session"
LIFETIME_SECONDS = 12 * 3600  # one on-call shift


@dataclass(frozen=True)
class Session:
    role: Role
    expires: float
    nonce: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def session_key(admin_token: str | None) -> bytes:
    """The signing key: from the admin token when there is one; a relay without tokens (loopback only) signs with a
    key of this process (its sessions end with it)."""
    if admin_token is None:
        return _PROCESS_KEY
    return hmac.new(admin_token.encode(), b"relay console session v1", hashlib.sha256).digest()


_PROCESS_KEY = secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def issue(key: bytes, role: Role, now: float, lifetime: float = LIFETIME_SECONDS) -> str:
    """A cookie value for a new session of `role`, valid until `now + lifetime`."""
    body = _b64(json.dumps({"r": role, "e": round(now + lifetime, 3), "n": secrets.token_hex(16)}).encode())
    return f"{body}.{_sign(key, body)}"


def read(key: bytes, value: str | None, now: float) -> Session | None:
    """The session a cookie value proves, or None: missing, malformed, signed with another key, tampered with, or
    expired. Only a value this key signed is ever parsed."""
    if not value or value.count(".") != 1:
        return None
    body, signature = value.split(".")
    if not hmac.compare_digest(signature, _sign(key, body)):
        return None
    try:
        fields = json.loads(_unb64(body))
        role, expires, nonce = fields["r"], float(fields["e"]), str(fields["n"])
    except (ValueError, KeyError, TypeError):
        return None
    if role not in ("admin", "viewer") or expires <= now:
        return None
    return Session(role, expires, nonce)


def csrf_token(key: bytes, session: Session) -> str:
    """The token every form of this session carries."""
    return _sign(key, f"csrf:{session.nonce}")


def csrf_ok(key: bytes, session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent, csrf_token(key, session))


def role_of(token: str, admin: str | None, viewer: str | None) -> Role | None:
    """Which role a typed token signs in as (compared in constant time), or None."""
    given = token.strip().encode()
    if admin is not None and hmac.compare_digest(given, admin.encode()):
        return "admin"
    if viewer is not None and hmac.compare_digest(given, viewer.encode()):
        return "viewer"
    return None
