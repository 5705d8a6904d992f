"""The ``istio.banzaicloud.io/v1beta1`` API federationd serves: the CR types and defaults
(:mod:`federationd.api.v1beta1`) and the CRDs generated from them
(:mod:`federationd.api.crds`)."""
