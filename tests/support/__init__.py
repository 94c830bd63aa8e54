"""Heavier test fixtures: servers run as real processes (S3 API via moto, ...)."""
