"""The idle-socket poll behind the database pool's checkout check and httpcore's probe."""

from __future__ import annotations

import socket

import pytest

from app.web.sockets import readable_now


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def test_an_idle_socket_has_nothing_to_read(pair):
    ours, _peer = pair

    assert readable_now(ours.fileno()) is False


def test_a_socket_the_peer_wrote_to_is_readable_and_the_data_stays(pair):
    ours, peer = pair
    peer.sendall(b"FATAL")

    assert readable_now(ours.fileno()) is True
    assert ours.recv(16) == b"FATAL"  # nothing was consumed


def test_a_socket_the_peer_closed_is_readable(pair):
    ours, peer = pair
    peer.close()

    assert readable_now(ours.fileno()) is True


def test_the_socket_stays_open_and_blocking_after_a_poll(pair):
    ours, peer = pair
    readable_now(ours.fileno())
    peer.sendall(b"x")

    assert ours.getblocking() is True
    assert ours.recv(1) == b"x"


def test_httpcore_probes_its_idle_connections_directly(app):
    from httpcore2._backends import sync

    from app.web.sockets import _socket_readable

    assert sync.is_socket_readable is _socket_readable
