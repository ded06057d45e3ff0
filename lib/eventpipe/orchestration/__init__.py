"""Orchestration: runs of the stage notebooks (runner, kernel, failures), and backfill, replay, scheduler on top."""
