"""Shared test settings. Suites keep their own fixtures in their own conftest.py."""
