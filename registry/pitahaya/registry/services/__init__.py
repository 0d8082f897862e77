"""Registry operations, free of HTTP: keyword-only functions that take a session.

Routes parse requests and call these; the CLI and tests may call them directly. They raise
the `pitahaya.registry.errors.RequestError` leaves, never HTTP exceptions.
"""
