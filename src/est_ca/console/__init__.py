"""The web console for administrators: server-rendered pages on the admin listener."""

from est_ca.console.routes import api_only, mount

__all__ = ["api_only", "mount"]
