"""Prefect flows, the CLI and the quickstart. No stage logic lives here."""
