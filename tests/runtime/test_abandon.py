"""A stop that hangs past the grace period ends the process (exit 3) and says where it
hung, the stop's own await chain last (what a truncated log keeps)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, threading
    from federationd import daemon

    async def stuck_in_cleanup() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        asyncio.current_task().set_name(daemon.MAIN_TASK)
        loop = asyncio.get_running_loop()
        asyncio.create_task(asyncio.Event().wait(), name="reflector master v1/Namespace")
        loop.call_later(0.2, lambda: threading.Thread(target=daemon._abandon, args=(loop,)).start())
        await stuck_in_cleanup()

    asyncio.run(main())
    """
)


def test_a_hung_stop_exits_3_and_names_where_it_waits() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "abandoning" in lines[0]
    assert any(line.startswith("  task reflector master v1/Namespace:") for line in lines)
    last = lines[-1]
    assert last.startswith("federationd: the stop is waiting at "), last
    assert "stuck_in_cleanup" in last and last.index("stuck_in_cleanup") < last.index("main")
