"""Publisher client: push signed packages to a pitahaya registry and manage releases."""
