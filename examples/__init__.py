"""Workflows that run offline; the demo lives here."""
