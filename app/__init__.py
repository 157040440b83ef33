"""The application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from app.config import api_settings, engine_options, settings_from_env, startup_warnings
from app.database import configure_engines
from app.errors import register_error_handlers
from app.extensions import db, migrate
from app.llm.client import init_llm
from app.services.auth import init_key_cache
from app.services.checkpoints import init_live_exchanges
from app.services.purge_ticker import init_purge_ticker
from app.web.cors import init_cors
from app.web.logs import init_request_log
from app.web.metrics import init_metrics
from app.web.proxy import init_proxy
from app.web.request_id import init_request_id

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings from the environment, then ``config`` on top."""
    app = Flask(__name__, static_folder=None)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(settings_from_env(app.instance_path))
    app.config.update(api_settings())
    if config:
        app.config.update(config)
    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        engine_options(app.config["SQLALCHEMY_DATABASE_URI"], app.config),
    )
    init_request_log(app)
    for warning in startup_warnings(app.config):
        logging.getLogger(__name__).warning(warning)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db.init_app(app)
    configure_engines(app)
    # An absolute path: `flask db ...` and gunicorn may run from any directory.
    migrate.init_app(
        app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True, compare_type=True
    )
    init_llm(app)
    init_key_cache(app)
    init_live_exchanges(app)
    init_purge_ticker(app)
    init_metrics(app)

    from app.api import register_api
    from app.api.auth import init_auth
    from app.api.docs import register_docs
    from app.api.limits import init_limits
    from app.cli import register_cli

    init_request_id(app)  # first: even a rejected request has an id to quote
    init_auth(app)  # then: an anonymous request learns nothing else
    init_limits(app)  # after authentication: limits are per user
    register_api(app)
    register_docs(app)
    init_cors(app)
    init_proxy(app)
    register_error_handlers(app)  # after the Api: ours replace flask-smorest's handler
    register_cli(app)
    return app
