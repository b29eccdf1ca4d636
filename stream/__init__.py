"""Kafka side of anonstream: settings, Kafka clients, topics, the Faust apps of the three
stages, their tables and health, and the command line."""
