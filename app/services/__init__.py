"""Use cases: one transaction each, domain errors out, no HTTP.

May import exchange, llm, repositories, models, schemas, web and the leaf modules; never api
or cli (pyproject.toml's import-linter contracts).
"""
