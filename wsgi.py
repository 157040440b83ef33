"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from dotenv import load_dotenv

from app import create_app

# gunicorn does not read .env the way the flask CLI does.
load_dotenv()
app = create_app()
