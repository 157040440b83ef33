"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

import sys

from dotenv import load_dotenv

from app import create_app
from app.config import SettingsError

# gunicorn's "app failed to load": its master stops instead of respawning workers forever.
SETTINGS_ERROR_EXIT = 4

# gunicorn does not read .env the way the flask CLI does.
load_dotenv()
try:
    app = create_app()
except SettingsError as error:
    # One line naming the setting, not a traceback: the operator has a value to fix.
    print(f"convstore: {error}", file=sys.stderr, flush=True)
    sys.exit(SETTINGS_ERROR_EXIT)
