"""The residents' website: server-rendered Russian pages over the same Services as the SMS side."""

from smsgate.web.app import create_app, start_web

__all__ = ["create_app", "start_web"]
