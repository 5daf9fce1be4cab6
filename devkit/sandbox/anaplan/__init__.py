"""Anaplan sandbox (dev-only): auth, OAuth and Integration API v2 over real HTTPS, seeded with a planning model."""
