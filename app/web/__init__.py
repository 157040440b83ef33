"""The HTTP edge: CORS, proxies, request ids, logs, metrics, and idle-socket checks.

Plumbing every request passes through; it imports nothing above app.extensions.
"""
