"""newsdesk: shared core (settings, errors, database, logging, device, encoders, CLI, worker)."""

__version__ = "0.1.0"
