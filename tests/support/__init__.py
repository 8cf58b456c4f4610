"""Helpers shared by the tests (stand-in servers, builders)."""
