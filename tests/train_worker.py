"""Runs ``python -m hncam_utils train`` in a test process, optionally killing it (SIGKILL) at an exact step.

``HNCAM_TEST_KILL_AT_STEP=N`` kills the process right after its N-th optimizer step (after any checkpoint of
that step), like a preemption or an out-of-memory kill; ``HNCAM_TEST_KILL_RANK`` (default: every rank) picks
which rank dies. Launched by tests/test_distributed.py, one process per rank, or by torchrun.
"""

import os
import signal
import sys

from hncam_utils.distributed import main

KILL_AT = int(os.environ.get("HNCAM_TEST_KILL_AT_STEP", "0"))
KILL_RANK = os.environ.get("HNCAM_TEST_KILL_RANK")
RANK = os.environ.get("RANK", "0")


def on_step(step: int) -> None:
    if step == KILL_AT and (KILL_RANK is None or KILL_RANK == RANK):
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], on_step=on_step))
