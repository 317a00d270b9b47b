"""airhook's pure core: what a webhook is, with no Airflow, HTTP framework or database import.

Signing and secrets, bearer/basic/IP checks, the event catalog (schemas, patterns, canonical
kinds), payload parsing, platform profiles, the Source and Subscription models, the rules of
outbound delivery (retry schedule, settling, ids), SSRF rules, redaction, the sandboxed template
renderer, asset URIs and the one error tree. Everything else in airhook (the store, the receiver,
the dispatcher, the outbound engine, Airflow's hooks, operators, sensors and the CLI) calls it;
it calls none of them. ``tests/test_core.py`` imports every module of it with Airflow, the HTTP
frameworks and SQLAlchemy made unimportable.
"""
