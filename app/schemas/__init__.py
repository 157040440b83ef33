"""marshmallow schemas: what the API accepts and what it returns, one module per API area.

They may import app.models (column limits), app.repositories (the search language they
parse) and the leaf modules; no view, command, use case, exchange, upstream client or web
plumbing (pyproject.toml's import-linter contracts).
"""
