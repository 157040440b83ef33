"""The LLM: the openai client configured once, its events parsed, its errors mapped to ours.

May import app.errors, app.exchange.text and app.web (metrics, sockets); never services.
"""
