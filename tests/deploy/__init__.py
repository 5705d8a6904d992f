"""Tests of deploy/ artefacts that are not Kubernetes objects the daemon itself depends on."""
