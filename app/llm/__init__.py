"""The LLM: the openai client configured once, its events parsed, its errors mapped to ours.

May import app.errors, the leaves app.text and app.bounds, and app.web (metrics, sockets);
never app.exchange, app.models or services.
"""
