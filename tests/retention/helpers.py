"""What the retention tests share: a purge run in the app, and which conversations are left."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient

from app.services.purge import PurgeReport, purge_expired

DAY = 86400.0
HOUR = 3600.0


def purge(app: Flask, *, dry_run: bool = False) -> PurgeReport:
    with app.app_context():
        return purge_expired(dry_run=dry_run)


def purged_ids(report: PurgeReport) -> set[int]:
    return {item.conversation_id for item in report.deleted}


def exists(client: FlaskClient, conversation_id: int) -> bool:
    status = client.get(f"/conversations/{conversation_id}").status_code
    assert status in (200, 404)
    return status == 200


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
