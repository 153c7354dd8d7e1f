"""A REP facing a confirm=True DEALER: libzmq's REP takes the header frame for envelope (README: what it means)."""

from __future__ import annotations

import zmq


def test_a_rep_never_sees_the_header_and_its_reply_confirms_the_dealers_request(open_journal, tmp_path, ctx, endpoint):
    client_journal = open_journal(str(tmp_path / "client"))
    server_journal = open_journal(str(tmp_path / "server"))
    dealer = client_journal.wrap(ctx.socket(zmq.DEALER), name="client", confirm=True)
    rep = server_journal.wrap(ctx.socket(zmq.REP), name="server")
    where = endpoint()
    rep.bind(where)
    dealer.connect(where)
    dealer.send_multipart([b"", b"request"])
    assert rep.recv_multipart() == [b"request"]  # the header went into libzmq's envelope, out of sight
    assert server_journal.info()["confirm"]["senders"] == 0  # so the REP's journal keeps no dedup key
    assert not dealer.wait_confirmed(0.3)  # and nothing confirms the request yet
    rep.send(b"reply")
    assert dealer.recv_multipart() == [b"", b"reply"]  # the header came back with the reply: taken off
    assert dealer.wait_confirmed(5)  # confirmed by the reply
    assert client_journal.count(name="client", state="pending", direction="out") == 0
    assert server_journal.count(name="server", state="pending") == 0
