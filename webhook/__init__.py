"""The mjflow web app: upstream callback receiver, the /v1 jobs API, the dashboard."""
from webhook.app import create_app

__all__ = ["create_app"]
