"""/metrics: Prometheus' text format; behind METRICS_TOKEN when one is set."""

from __future__ import annotations

import hmac

from flask import Response, current_app, request
from flask.views import MethodView

from app.api import Blueprint
from app.errors import Unauthorized
from app.web import metrics

blp = Blueprint("metrics", __name__, description="Monitoring")


@blp.before_request
def _check_token() -> None:
    # Not an API key: Prometheus scrapes with one static bearer token (METRICS_TOKEN).
    token = current_app.config["METRICS_TOKEN"]
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise Unauthorized("Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.")


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(
        security=[],
        responses={
            "200": {
                "description": "Every worker's metrics (Prometheus text format). Needs "
                "Authorization: Bearer <METRICS_TOKEN> when METRICS_TOKEN is set.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    def get(self) -> Response:
        """Prometheus metrics."""
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)
