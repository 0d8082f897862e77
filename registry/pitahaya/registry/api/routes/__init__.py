"""One router per resource: packages, releases, tokens, telemetry, audit, TUF files, health."""
