"""Use cases: one transaction each, domain errors out, no HTTP."""
