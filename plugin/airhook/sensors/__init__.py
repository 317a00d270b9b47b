"""Sensors: wait in a DAG for webhook events."""
