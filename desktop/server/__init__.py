"""Sfumato's server: its engine behind HTTP (desktop/server/app.py), for RemoteBackend (desktop/remote)."""
