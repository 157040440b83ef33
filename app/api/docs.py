"""/docs: Swagger UI, served by the service itself from a pinned package.

Users paste API keys into this page, and many deployments have no internet access: nothing
it loads comes from anywhere but this service, and its Content-Security-Policy makes the
browser refuse anything else. The assets are Swagger UI's own distribution as the
``flask-swagger-ui`` package ships it (Apache 2.0, ``/docs/assets/LICENSE``).
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, Response, render_template_string, send_from_directory, url_for
from werkzeug.exceptions import NotFound

SWAGGER_UI_DIR = Path(flask_swagger_ui.__file__).parent / "dist"
# Only what the page uses, and the licence; anything else in the package is a 404.
ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
        "LICENSE",
        "VERSION",
    }
)
ASSET_MAX_AGE = 86400

# 'unsafe-inline' styles: Swagger UI (React) sets style attributes. Scripts only from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

# No inline script (the CSP forbids it): the settings travel as inert JSON for docs.js.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>convstore API</title>
  <link rel="icon" type="image/png" href="{{ asset('favicon-32x32.png') }}">
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
  <link rel="stylesheet" href="{{ asset('index.css') }}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script type="application/json" id="swagger-ui-config">{{ config | tojson }}</script>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script src="{{ url_for('docs.init_script') }}"></script>
</body>
</html>
"""

INIT_SCRIPT = """"use strict";
window.addEventListener("load", function () {
  var config = JSON.parse(document.getElementById("swagger-ui-config").textContent);
  config.dom_id = "#swagger-ui";
  // BaseLayout: no top bar, so no link to the public validator or anywhere else.
  config.presets = [SwaggerUIBundle.presets.apis];
  config.layout = "BaseLayout";
  window.ui = SwaggerUIBundle(config);
});
"""

blp = Blueprint("docs", __name__)


def _asset(name: str) -> str:
    return url_for("docs.asset", filename=name)


@blp.get("/docs")
def page() -> Response:
    """Swagger UI on this service's OpenAPI document."""
    config = {
        "url": url_for("api-docs.openapi_json"),
        # Keys stay in the page's memory, never in localStorage.
        "persistAuthorization": False,
        "validatorUrl": None,
        "deepLinking": True,
        "displayRequestDuration": True,
    }
    response = Response(render_template_string(PAGE, config=config, asset=_asset))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.get("/docs/docs.js")
def init_script() -> Response:
    """The page's start-up script."""
    return Response(INIT_SCRIPT, content_type="text/javascript; charset=utf-8")


@blp.get("/docs/assets/<path:filename>")
def asset(filename: str) -> Response:
    """One of Swagger UI's files."""
    if filename not in ASSETS:
        raise NotFound()
    return send_from_directory(SWAGGER_UI_DIR, filename, max_age=ASSET_MAX_AGE)


def register_docs(app: Flask) -> None:
    """Serve /docs and its assets (no API key needed)."""
    app.register_blueprint(blp)
