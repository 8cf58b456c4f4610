"""Hardening: whatever people throw at Sfumato gives a clear message and loses nothing (issue 8)."""
