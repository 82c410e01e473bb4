"""What the services answer: an outcome, with whatever the caller shows next."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from store import debts, residents


class Outcome(Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # phone not registered
    LIMITED = "limited"  # refused politely, once
    SILENT = "silent"  # refused again: no answer at all
    BAD = "bad"  # wrong account or code (one answer for both)
    LOCKED = "locked"  # too many wrong tries
    ALREADY = "already"  # nothing to do
    NOT_MOBILE = "not_mobile"  # not a Russian mobile number: no SMS can go there
    WEAK = "weak"  # the new password breaks a rule (ChangeResult.weakness says which)
    UNAVAILABLE = "unavailable"  # no SMS can be sent now (daily cap, prefix limit)


@dataclass(frozen=True)
class PasswordResult:
    outcome: Outcome
    password: str | None = None


@dataclass(frozen=True)
class RegisterResult:
    outcome: Outcome
    account: str = ""
    password: str | None = None  # set when a new resident was created
    card_number: str = ""
    resident_id: int | None = None


@dataclass(frozen=True)
class WebRegistration:
    """Step 2 of registration on the site: the phone proven by the secret from the SMS."""

    outcome: Outcome  # OK (linked), ALREADY (linked before), BAD (wrong, expired, used up) or LOCKED
    account: str = ""
    # Set when the password from the SMS became the resident's, so the page logs them in with it.
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class AccountDebts:
    account: str
    address: str
    lines: tuple[debts.ProviderDebt, ...]

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome  # OK, BAD (unknown login or wrong password: one answer) or LOCKED
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class ChangeResult:
    outcome: Outcome  # OK, BAD (wrong current password or code), LOCKED or WEAK
    weakness: str = ""  # for WEAK: "short", "long", "login", "simple" or "same"
    resident: residents.Resident | None = None


@dataclass(frozen=True)
class AccountDetail:
    """One linked account as the web shows it: debts, last month's charges, recent payments."""

    balance: AccountDebts
    period: str  # YYYY-MM of `charges`; empty when nothing was charged lately
    charges: tuple[debts.ServiceCharge, ...]
    payments: tuple[debts.Payment, ...]
