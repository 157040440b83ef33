"""Behind a reverse proxy: trust its ``X-Forwarded-*`` headers (``TRUSTED_PROXIES`` hops)."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_proxy(app: Flask) -> None:
    """With N trusted proxies, take the client address, scheme, host, port and path prefix
    from the last N forwarded values (what a client sends itself is never trusted)."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
