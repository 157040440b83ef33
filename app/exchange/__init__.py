"""One exchange's lifecycle and the wire formats that relay it.

lifecycle.py is the state machine (begin, relay, end, close); upstream_reader.py reads the
upstream, progress.py accumulates what was relayed, outcomes.py names how an exchange ends.
wire.py (text/plain, SSE), openai_wire.py (/v1 chat) and responses_wire.py (/v1/responses)
are generators over ``Exchange.relay``; the responses_*.py modules build the Responses
API's ids, items and objects from exchange rows and translate its requests to Chat
Completions. They may import app.llm, app.models and app.schemas, never services.
"""
