"""Render the README's quick-start figure (docs/images/quickstart_ts_abdomen_pelvis.png).

Runs the README's first command through the CLI, in process, with the bundled default model,
and copies its ``--png`` output (score curve beside a coronal view coloured by body region)::

    python docs/scripts/render_quickstart.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bodyscore.cli import main

ROOT = Path(__file__).resolve().parents[2]
CT = ROOT.parent / "shared" / "data" / "ct" / "ts_abdomen_pelvis.nii.gz"
FIGURE = ROOT / "docs" / "images" / "quickstart_ts_abdomen_pelvis.png"

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as out:
        status = main(["predict", str(CT), "-o", out, "--png"])
        if status == 0:
            shutil.copyfile(Path(out) / "ts_abdomen_pelvis.png", FIGURE)
    sys.exit(status)
