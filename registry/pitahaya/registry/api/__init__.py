"""The registry's HTTP API: thin routes over `pitahaya.registry.services`."""
