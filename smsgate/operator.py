"""The operator listener, apart from the public site: /metrics, /healthz, /readyz, /status."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smsgate import logs, security
from smsgate.config import Config
from smsgate.gateway import Gateway
from smsgate.metrics import Gauges, Metrics
from store import inbox, meta, outbox

log = logs.get("operator")
GATEWAY_KEY = web.AppKey("gateway", Gateway)
METRICS_KEY = web.AppKey("metrics", Metrics)
CONFIG_KEY = web.AppKey("config", Config)
# The queue counts as stuck when its oldest message waited this long while the link was up.
STUCK_AFTER_SECONDS = 120.0


async def read_gauges(gateway: Gateway) -> Gauges:
    db = gateway.store.db
    depth, oldest = await outbox.queue_summary(db)
    pending = await inbox.pending_count(db)
    return Gauges(
        bound=gateway.session.bound.is_set(),
        queue_depth=depth,
        oldest_unsent_age=max(0.0, time.time() - oldest) if oldest else 0.0,
        inbox_pending=pending,
        uptime=time.time() - gateway.started_at,
        passwords_ready=security.READY.ready,
    )


async def metrics_view(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    metrics.snapshot = await read_gauges(request.app[GATEWAY_KEY])
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """Alive, and the store takes a write."""
    gateway = request.app[GATEWAY_KEY]
    try:
        async with gateway.store.tx() as db:
            await meta.put(db, "healthz", str(time.time()))
    except Exception as exc:
        log.warning("healthz_failed", extra={"error": type(exc).__name__})
        return web.json_response({"ok": False, "store": "not writable"}, status=503)
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Bound to the SMSC and the queue moving: what a load balancer or supervisor asks."""
    gauges = await read_gauges(request.app[GATEWAY_KEY])
    problems = []
    if not gauges.bound:
        problems.append("not bound to the SMSC")
    if gauges.queue_depth and gauges.oldest_unsent_age > STUCK_AFTER_SECONDS:
        problems.append(f"queue stuck: oldest message waits {gauges.oldest_unsent_age:.0f} s")
    if problems:
        return web.json_response({"ready": False, "problems": problems}, status=503)
    return web.json_response({"ready": True})


async def status(request: web.Request) -> web.Response:
    return web.json_response(await status_of(request.app[GATEWAY_KEY], request.app[METRICS_KEY]))


async def status_of(gateway: Gateway, metrics: Metrics) -> dict[str, Any]:
    gauges = await read_gauges(gateway)
    now = time.time()
    stats = gateway.session.stats
    problem = metrics.last_problem
    return {
        "bind": gateway.session.state,
        "smsc": f"{gateway.config.smsc.host}:{gateway.config.smsc.port}",
        "bound_since": stats.bound_since,
        "uptime_seconds": round(gauges.uptime, 1),
        "queue_depth": gauges.queue_depth,
        "oldest_unsent_seconds": round(gauges.oldest_unsent_age, 1),
        "inbox_pending": gauges.inbox_pending,
        "in_last_minute": metrics.recent_in.since(60, now),
        "in_last_hour": metrics.recent_in.since(3600, now),
        "out_last_minute": metrics.recent_out.since(60, now),
        "out_last_hour": metrics.recent_out.since(3600, now),
        "long_text": gateway.long_text,
        "last_link_error": stats.last_error,
        "last_problem": (
            {"at": problem[0], "event": problem[1], "detail": problem[2]} if problem else None
        ),
    }


def create_operator_app(config: Config, gateway: Gateway, metrics: Metrics) -> web.Application:
    app = web.Application()
    app[CONFIG_KEY] = config
    app[GATEWAY_KEY] = gateway
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    return app


async def start_operator(
    config: Config, gateway: Gateway, metrics: Metrics
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Serve the operator listener; returns its port and how to stop it."""
    runner = web.AppRunner(create_operator_app(config, gateway, metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.operator.host, config.operator.port).start()
    port = int(runner.addresses[0][1])  # port 0 in the config picks a free one
    log.info("operator_started", extra={"host": config.operator.host, "port": port})
    return port, runner.cleanup


def format_status(data: dict[str, Any]) -> str:
    """What `smsgate status` prints: what an operator asks first when residents complain."""
    problem = data.get("last_problem")
    since = data.get("bound_since")
    lines = [
        f"bind:            {data['bind']} ({data['smsc']})"
        + (f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""),
        f"uptime:          {_duration(data['uptime_seconds'])}",
        f"queue:           {data['queue_depth']} waiting, oldest {_duration(data['oldest_unsent_seconds'])}",
        f"unanswered in:   {data['inbox_pending']}",
        f"texts in:        {data['in_last_minute']} last minute, {data['in_last_hour']} last hour",
        f"messages out:    {data['out_last_minute']} last minute, {data['out_last_hour']} last hour",
        f"long texts:      {data.get('long_text', 'udh')}",
        f"last link error: {data['last_link_error'] or '-'}",
        "last problem:    " + (
            f"{problem['event']} {problem['detail']} at "
            f"{time.strftime('%H:%M:%S', time.localtime(problem['at']))}" if problem else "-"
        ),
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
