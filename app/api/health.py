"""Liveness and readiness probes."""

from __future__ import annotations

from http import HTTPStatus

from flask.views import MethodView

from app.api import Blueprint
from app.schemas.health import HealthOut
from app.services import health as service

blp = Blueprint("health", __name__, description="Probes")


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.doc(security=[])
    @blp.response(HTTPStatus.OK, HealthOut)
    def get(self) -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(HTTPStatus.OK, HealthOut)
    @blp.alt_response(HTTPStatus.SERVICE_UNAVAILABLE, schema=HealthOut, description="Not ready")
    def get(self) -> tuple[dict[str, str], int]:
        """The database is reachable and its schema is at the latest migration."""
        report = service.readiness()
        return report, HTTPStatus.OK if report["status"] == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
