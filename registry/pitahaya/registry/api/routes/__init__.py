"""One router per resource: packages, releases, TUF files, health."""
