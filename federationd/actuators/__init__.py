"""Actuators: the only writers. They make clusters match the derived desired state.

* ``converge`` — per cluster: desired objects vs the observed managed inventory,
  server-side apply / delete / release only what differs, every outcome appended to the
  log;
* ``status`` — the derived status onto each CR's status subresource, plus Kubernetes
  Events for failures and transitions;
* ``workqueue`` and ``client`` — the deduplicating, rate-limited queue and the typed API
  client they are built on.
"""
