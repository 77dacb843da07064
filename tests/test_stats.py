"""Unit tests of echod.stats."""

from echod.stats import EchoStats


def test_summary_names_every_counter() -> None:
    stats = EchoStats(connections_total=3, bytes_in=10, bytes_out=10)
    stats.refused["max-per-ip"] += 2
    stats.closed["eof"] += 3
    stats.udp_dropped["rate"] += 1
    assert stats.summary() == (
        "connections=3 open=0 bytes_in=10 bytes_out=10 closed=[eof=3] "
        "refused=[max-per-ip=2] tls_handshake_failures=0 udp_datagrams=0 "
        "udp_dropped=[rate=1]"
    )
