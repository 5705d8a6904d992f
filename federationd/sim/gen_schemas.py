"""Build ``data/k8s-schemas-old.json.xz``: upstream schemas of the releases the schema library no longer ships.

``kubernetes-validate`` (a runtime dependency) ships the JSON-schema form of each
release's OpenAPI definitions, but recent versions of it start at Kubernetes 1.25. The
emulator serves 1.13 onwards (Istio 1.1/1.2 ran on 1.13 to 1.15), so the definitions of
1.13 to 1.24 are taken from an older release of the same library and committed here, in
the same normalised form (``$defs``, ``#/$defs/`` references) the newer ones have::

    pip download kubernetes-validate==1.24.1 --no-deps -d /tmp/kv
    python -m federationd.sim.gen_schemas /tmp/kv/kubernetes-validate-1.24.1.tar.gz

All twelve releases in one xz stream are about 130 kB: consecutive releases share
almost everything, which a per-file compression would not exploit.
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
import sys
import tarfile
from pathlib import Path

FIRST, LAST = 13, 24


def build(sdist: Path) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    pattern = re.compile(r"/kubernetes-json-schema/v1\.(\d+)\.0-local-strict/_definitions\.json$")
    with tarfile.open(sdist) as tar:
        for member in tar:
            m = pattern.search(member.name)
            if not m or not FIRST <= int(m.group(1)) <= LAST:
                continue
            f = tar.extractfile(member)
            assert f is not None
            text = f.read().decode().replace('"#/definitions/', '"#/$defs/')
            raw = json.loads(text)
            out[f"1.{m.group(1)}"] = raw.get("$defs") or raw["definitions"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("sdist", type=Path, help="a kubernetes-validate source distribution (1.24.x)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "k8s-schemas-old.json.xz")
    args = p.parse_args(argv)
    data = build(args.sdist)
    missing = [f"1.{m}" for m in range(FIRST, LAST + 1) if f"1.{m}" not in data]
    if missing:
        print(f"missing releases in {args.sdist}: {', '.join(missing)}", file=sys.stderr)
        return 1
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    args.out.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    print(f"{args.out}: {len(data)} releases, {args.out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
