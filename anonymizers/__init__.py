"""Pure anonymisation units and the policy model.

Nothing in this package touches Kafka, the environment or the network; the only I/O is
opening a geolocation database named by path (tests/anonymizers/test_purity.py enforces it).
"""
