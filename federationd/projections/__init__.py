"""Projections: the pure half of federationd — the event log in, the desired mesh out.

* ``state`` — ``fold(state, record) -> state``: everything federationd knows, folded
  from the log (copy-on-write, snapshot-able with msgspec);
* ``derive`` — ``derive(state) -> Desired``: the desired objects per cluster (through
  ``federationd.render``) and the desired status of every CR, with the sequence
  numbers each came from;
* ``validate`` / ``locality`` — the spec checks the fold applies, so that a refused spec
  leaves everything derived from the last valid one in place.

No I/O, no clock, no randomness (an import-linter contract enforces it): the same log
gives the same desired state, byte for byte, in the daemon and in ``federationd replay``.
"""
