"""Orchestrator integrations: each is imported only by its orchestrator's own interpreter."""
