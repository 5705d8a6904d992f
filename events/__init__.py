"""The append-only event log: the catalogue of facts, their codec, the store and replay."""
