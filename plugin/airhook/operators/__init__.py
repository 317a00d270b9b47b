"""Operators: tasks that send webhooks."""
