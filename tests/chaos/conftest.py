"""The chaos tier reuses the integration tier's real Postgres fixtures."""

from tests.integration.conftest import postgres_server, postgres_url  # noqa: F401
