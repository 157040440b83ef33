"""The HTTP edge: CORS, proxies, request ids, logs, metrics, and idle-socket checks.

Plumbing every request passes through, which every layer may use: it imports no layer, only
the leaf modules (pyproject.toml's import-linter contracts).
"""
