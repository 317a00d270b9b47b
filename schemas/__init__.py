"""The JSON Schemas of every platform event, shipped as package data (see airhook.core.catalog)."""
