"""Kafka side of anonstream: settings, the Faust apps, topics, agents and the CLI."""
