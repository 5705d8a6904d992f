"""The simulated fleet: a Kubernetes API emulator that real clients cannot tell apart.

``Fleet`` starts any number of clusters in one process (see ``fleet``); ``federationd
sim`` serves one from the command line (see ``cli``).
"""

from federationd.sim.fleet import Cluster, ClusterSpec, Fleet

__all__ = ["Cluster", "ClusterSpec", "Fleet"]
