"""Put a generated Markdown table into a hand-written page: the table in DOC whose header row is TABLE's
first line is replaced by TABLE, so the prose around it stays as written.

    .venv/bin/python benchmarks/splice_table.py docs/results.md docs/results/pretrained/table.md
"""

from __future__ import annotations

import sys
from pathlib import Path


def splice_table(doc: str, table: str) -> str:
    """``doc`` with the table that starts with ``table``'s header row replaced by ``table``."""
    header, lines = table.splitlines()[0], doc.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == header]
    if len(starts) != 1:
        raise SystemExit(f"expected one table with header {header!r}, found {len(starts)}")
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[: starts[0]]) + table.rstrip("\n") + "\n" + "".join(lines[end:])


if __name__ == "__main__":
    doc_path, table_path = map(Path, sys.argv[1:3])
    doc_path.write_text(splice_table(doc_path.read_text(), table_path.read_text()))
