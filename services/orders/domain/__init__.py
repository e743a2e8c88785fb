"""The orders service's pure rules: no I/O, unit-tested in tests/unit/test_orders_*.py."""
