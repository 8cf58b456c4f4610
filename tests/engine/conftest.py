"""Fixtures the engine tests share."""

import socket

import pytest


@pytest.fixture
def network_off(monkeypatch):
    """Loading from a bundled folder must never reach for the network: any connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
