"""The PySide6 desktop client: thin views over the engine's events (the only Qt importer)."""
