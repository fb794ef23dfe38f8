"""Where books' time goes under load: ``uv run python bench/profile_books.py [seconds]``.

Starts books exactly as ``make bench`` does (whole chassis, OTLP export to the in-bench sink),
loads it with wrk and samples it with py-spy (``--gil``: only the thread holding the GIL, which
is what bounds one process' throughput). Prints the top functions by own and by total samples
and leaves the collapsed stacks (for speedscope or flamegraph.pl) in ``bench/.profile/``.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import run
from otlp_sink import OtlpSink

OUT = run.BENCH_DIR / ".profile"


def main() -> int:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    OUT.mkdir(exist_ok=True)
    stacks = OUT / "books.collapsed"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, OtlpSink() as sink:
        directory = Path(tmp)
        env = run.base_env(directory)
        run.prepare_database(env)
        books = next(c for c in run.contenders(run.books_env(sink)) if c.key == "books")
        with run.server(books, env, directory / "books.log") as (process, port, _):
            run.wrk(port, 2)
            load = threading.Thread(target=run.wrk, args=(port, seconds + 2))
            load.start()
            subprocess.run(
                [
                    str(run.BIN / "py-spy"),
                    "record",
                    "--gil",
                    "--nonblocking",
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--duration",
                    str(seconds),
                    "--output",
                    str(stacks),
                    "--pid",
                    str(process.pid),
                ],
                check=True,
                capture_output=True,
            )
            load.join()
    summarise(stacks)
    return 0


def summarise(stacks: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        names = [_short(frame) for frame in frames.split(";")]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    print(f"{samples} samples (GIL held)\n\nown time:")
    for name, n in own.most_common(top):
        print(f"  {100 * n / samples:5.1f}%  {name}")
    print("\ntotal time (inclusive):")
    for name, n in total.most_common(top * 2):
        print(f"  {100 * n / samples:5.1f}%  {name}")


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0]
    package = (
        where.split("site-packages/", 1)[-1].split("/", 1)[0] if "site-packages" in where else ""
    )
    return f"{name} ({package + '/' if package else ''}{module})"


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        run.stop_all()
