"""The JSON Schemas of every platform event, shipped as package data (see airhook.catalog)."""
