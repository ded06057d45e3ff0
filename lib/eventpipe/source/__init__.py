"""The source: a small REST client for paginated events APIs, its page strategies and retry policy."""
