"""A program that accepts any command line, for the sweep-file conformance tests.

It keeps what it got (``argv.json`` in the trial's folder: its arguments, and the JSON of an
``${args_json_file}`` argument when one names a file) and reports, for each metric named in
``$ACCEPT_ANYTHING_METRICS`` (comma-separated), a value at steps 1..3 that depends on its arguments.
"""

import json
import os
import sys
import zlib
from pathlib import Path

argv = sys.argv[1:]
kept = {"argv": argv, "files": {}}
for word in argv:
    candidate = word.split("=", 1)[-1]
    if candidate.endswith(".json") and Path(candidate).is_file():
        kept["files"][candidate] = json.loads(Path(candidate).read_text())
folder = Path(os.environ.get("DIFFSEARCH_TRIAL_DIR", "."))
(folder / "argv.json").write_text(json.dumps(kept))

score = zlib.crc32(" ".join(argv).encode()) / 2**32  # in [0, 1): a value that depends on the arguments
for step in range(1, 4):
    metrics = {name: score / step for name in os.environ.get("ACCEPT_ANYTHING_METRICS", "").split(",") if name}
    print(json.dumps({"step": step, **metrics}), flush=True)
