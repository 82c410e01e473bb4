"""SMS command handlers, listed explicitly; the router refuses duplicate keywords."""

from handlers.balance import BalanceHandler
from handlers.base import Context, Handler, Reply
from handlers.help import HelpHandler
from handlers.password import PasswordHandler
from handlers.register import RegisterHandler
from handlers.reminders import StartHandler, StopHandler

HANDLERS: tuple[Handler, ...] = (
    PasswordHandler(),
    BalanceHandler(),
    RegisterHandler(),
    HelpHandler(),
    StopHandler(),
    StartHandler(),
)

__all__ = ["HANDLERS", "Context", "Handler", "Reply"]
