"""Use cases: one transaction each, domain errors out, no HTTP.

May import repositories, app.exchange, app.llm and models; never app.api.
"""
