"""Hookkeeper: webhook callback configurations and signing secrets.

Layers, each knowing only the ones below it:
``api`` (gRPC transport) → ``app`` (use cases) → ``domain`` (pure rules),
``store`` (SQLAlchemy) and ``crypto`` (encryption at rest).
"""
