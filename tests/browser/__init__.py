"""Browser tests of the pages (a package, so its conftest has a name of its own)."""
