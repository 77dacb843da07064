"""Unit tests of echod.stats."""

from echod.stats import MAX_TLS_KINDS, EchoStats


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


def test_tls_kinds_are_bounded_whatever_headers_say() -> None:
    stats = EchoStats()
    stats.note_tls_session(("echod", "TLSv1.3", "TLS_AES_256_GCM_SHA384"))
    for n in range(MAX_TLS_KINDS + 50):
        stats.note_tls_session(("proxy", "TLSv1.3", f"CIPHER-{n}"))
    stats.note_tls_session(("echod", "TLSv1.3", "TLS_AES_256_GCM_SHA384"))
    assert len(stats.tls_sessions) == MAX_TLS_KINDS + 1  # one "other" kind
    assert stats.tls_sessions["proxy", "other", "other"] == 51
    assert stats.tls_sessions["echod", "TLSv1.3", "TLS_AES_256_GCM_SHA384"] == 2
    assert stats.tls_kind(("echod", "TLSv1.2", "NEW")) == ("echod", "other", "other")
