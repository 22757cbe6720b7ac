"""A process forked after visionkit has parsed a many-mask answer must still parse one.

visionkit used to keep a module-level thread pool for mask decoding; a child forked after that pool
existed inherited the pool object but not its threads, and hung forever on its first answer with 8 or
more masks. Every user of multiprocessing (and the pipeline's process pool) would hit that. Each case
runs in a fresh interpreter with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import multiprocessing as mp
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor

    import visionkit as vk
    from visionkit.testing.synthetic import segment_answer

    TEXT = segment_answer({n}, seed=1)

    def count(_):
        return len(vk.parse_response(TEXT, (1024, 768)).masks)

    if __name__ == "__main__":
        assert count(0) == {n}          # the parent parses first (this created the old pool)
        how = sys.argv[1]
        if how == "os.fork":
            pid = os.fork()
            if pid == 0:
                os._exit(0 if count(0) == {n} else 3)
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))
        with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
            assert list(pool.map(count, range(4))) == [{n}] * 4
""")


@pytest.mark.parametrize("how", ["os.fork", "fork pool"])
@pytest.mark.parametrize("n", [8, 15])
def test_parse_after_fork_does_not_hang(tmp_path, how, n):
    script = tmp_path / "fork_case.py"
    script.write_text(SCRIPT.format(n=n))
    try:
        proc = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a process forked after parsing hung on its first {n}-mask answer ({how})")
    assert proc.returncode == 0, proc.stderr
