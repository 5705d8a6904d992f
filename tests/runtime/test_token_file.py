"""A token read from a file (the in-cluster service-account token) is re-read: bound
tokens rotate, and a daemon running for months must follow them without restarting."""

from __future__ import annotations

from pathlib import Path

import yaml

from federationd.clusters.connection import connect
from federationd.clusters.errors import ApiForbidden
from federationd.metrics import Metrics
from federationd.sim import Fleet

NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rotated"}}


async def test_a_rotated_token_file_is_followed(tmp_path: Path) -> None:
    async with Fleet(["c"], directory=tmp_path / "fleet") as fleet:
        c = fleet["c"]
        token_file = tmp_path / "token"
        token_file.write_text("not-yet-valid\n")
        kc = yaml.safe_load(c.kubeconfig_path.read_text())
        kc["users"][0]["user"] = {"tokenFile": str(token_file)}
        client = await connect(kc, name="c", allow_files=True, metrics=Metrics())
        try:
            # the kubelet writes the current token; after a 401 it is read again at once
            token_file.write_text(c.viewer_token + "\n")
            try:
                await client.request("GET", "/api/v1/namespaces")
            except ApiForbidden as e:
                assert e.status == 401
            await client.request("GET", "/api/v1/namespaces")  # the viewer's token now
            try:
                await client.request("POST", "/api/v1/namespaces", body=NS)
            except ApiForbidden as e:
                assert e.status == 403
            else:
                raise AssertionError("a viewer cannot create")
            # rotated to a token with more rights: used within the refresh period
            token_file.write_text(c.token + "\n")
            client._token_refresh = 0.0  # the period (60 s) elapsed
            await client.request("POST", "/api/v1/namespaces", body=NS)
            assert c.store.get("v1", "Namespace", "rotated") is not None
        finally:
            await client.close()
