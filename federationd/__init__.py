"""federationd: installs an Istio mesh on a master cluster and federates remote clusters.

Event-sourced: watchers append facts to ``events``; pure ``projections`` derive the
desired mesh; ``render`` turns it into objects; ``actuators`` converge every cluster.
"""

__version__ = "0.1.0"
