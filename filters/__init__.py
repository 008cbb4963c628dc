"""Subscription filters: parse (pglast / object form / PostgREST), compile with SQL semantics, index."""
