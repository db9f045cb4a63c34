"""Notification delivery: the HTTP sender with its SSRF guard and the dispatcher."""
