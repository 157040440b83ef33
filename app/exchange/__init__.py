"""One exchange's lifecycle (lifecycle.py) and the wire formats that relay it.

wire.py (text/plain, SSE) and openai_wire.py (/v1) are generators over ``Exchange.relay``;
they may import app.llm, app.models and app.schemas, never services.
"""
