"""Replication: journals that survive the loss of a host (journal shipping to NATS JetStream).

Room for the replication issue. It sits beside the socket layer, on the journal:
it may import ``zjournal.journal`` (the public API and its ledger's documented
interface), ``zjournal.store`` and ``zjournal.errors``; the journal never imports it.
"""
