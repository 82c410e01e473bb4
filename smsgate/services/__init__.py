"""What residents can do, written once: the SMS handlers, USSD menus and web views all call these.

`Services` is one object made of parts, one module each; the parts share the store, the config
and the outbox waker (`base.Part`) and keep no state of their own.
"""

from __future__ import annotations

from smsgate.services.accounts import Accounts
from smsgate.services.base import (
    DAY,
    HOUR,
    LOGIN_WINDOW,
    TIMEZONE,
    OutboxWaker,
    day_strings,
    local_today,
    normalise_account,
)
from smsgate.services.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, RESET_PURPOSE, Passwords
from smsgate.services.registration import REGISTER_PURPOSE, Registration
from smsgate.services.results import (
    AccountDebts,
    AccountDetail,
    ChangeResult,
    LoginResult,
    Outcome,
    PasswordResult,
    RegisterResult,
    WebRegistration,
)
from smsgate.services.sending import Sending

__all__ = [
    "DAY", "HOUR", "LOGIN_WINDOW", "PASSWORD_MAX_LENGTH", "PASSWORD_MIN_LENGTH", "REGISTER_PURPOSE",
    "RESET_PURPOSE", "TIMEZONE", "AccountDebts", "AccountDetail", "Accounts", "ChangeResult",
    "LoginResult", "OutboxWaker", "Outcome", "PasswordResult", "Passwords", "RegisterResult",
    "Registration", "Sending", "Services", "WebRegistration", "day_strings", "local_today",
    "normalise_account",
]


class Services(Passwords, Registration, Accounts):
    """Passwords, registration, accounts and sending, on one object every caller is handed."""
