"""Every typed key the website keeps on the application and on requests, in one place."""

from __future__ import annotations

from aiohttp import web

from smsgate.config import Config
from smsgate.services import Services
from smsgate.ussd import UssdEngine
from smsgate.web.sessions import Session, SessionCodec

CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", Services)
# Created with the app, keyed at startup: the secret may live in the store.
SESSIONS = web.AppKey("sessions", SessionCodec)
# Menu sessions of POST /ussd (HTTP aggregators).
USSD = web.AppKey("ussd", UssdEngine)

SESSION = web.RequestKey("session", Session)
