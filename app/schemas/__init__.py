"""marshmallow schemas: what the API accepts and what it returns, one module per API area.

They may import app.models (column limits) and app.repositories.search_query (the query
language they parse), nothing above.
"""
