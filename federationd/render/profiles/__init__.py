"""The registry of supported Istio version families.

Adding a family is a new module here with a ``PROFILE`` and one line in
:data:`PROFILES`; nothing outside ``render/profiles`` changes.
"""

from __future__ import annotations

from collections.abc import Mapping

from federationd.render.components.context import Profile
from federationd.render.profiles import v1_1, v1_2

PROFILES: Mapping[str, Profile] = {p.family: p for p in (v1_1.PROFILE, v1_2.PROFILE)}
