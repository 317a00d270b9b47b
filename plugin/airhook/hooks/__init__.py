"""Hooks: the parts of airhook that talk to the outside world."""
