"""Watchers: observe clusters and append facts to the log, nothing else.

* ``reflector`` — client-go style list/watch that keeps a store of one resource type;
* ``facts`` — what of an object matters (extractors), appended only when it changed
  (``FactEmitter``), and ``watch_facts`` to wire a source to a reflector.

Watchers never call projections, render or actuators (an import-linter contract).
"""
