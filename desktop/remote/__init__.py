"""The client side of Sfumato's server: RemoteBackend (desktop/remote/backend.py). Importable without Qt or torch."""
