"""Reliable messaging: topics, the transactional outbox and its relay, the idempotent consumer."""
