#!/usr/bin/env bash
# Install bpreg 1.1.0 (the reference implementation) into a venv of its own, OUTSIDE the repository.
#
# bpreg pins torch 1.8.1 / torchvision 0.9.1 / numpy 1.x, none of which exist for Python 3.11, so it is
# installed with --no-deps next to a current torch + torchvision and the packages it imports
# (albumentations < 1.4 still has A.Flip; numpy < 2 still has numpy.lib.arraysetops). bpreg is NOT patched.
# The torch is the CPU build of the local package index (torch 2.13.0+cpu); the matching torchvision
# 0.28.0 on PyPI is built against the CUDA torch, so its compiled ops (_C.so: nms, roi_align, ...)
# do not load and `import torchvision` fails in torchvision/_meta_registrations.py ("operator
# torchvision::nms does not exist"). bpreg uses none of those ops (VGG16 is plain torch.nn), so the
# venv gets a sitecustomize.py that skips the meta registrations of the missing ops, and only when
# _C.so fails to load. Nothing of bpreg or of the network's arithmetic changes.
#
# Usage:  benchmarks/bpreg/setup_bpreg_venv.sh [VENV_DIR]      (default: $BPREG_VENV or /tmp/bpreg-venv)
# Then:   $VENV_DIR/bin/bpreg_predict -i IN_DIR -o OUT_DIR --model MODEL_DIR/
set -euo pipefail

VENV="${1:-${BPREG_VENV:-/tmp/bpreg-venv}}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${BPREG_TORCH_SPEC:-torch==2.13.0}"
TORCHVISION_SPEC="${BPREG_TORCHVISION_SPEC:-torchvision==0.28.0}"

if [ -x "$VENV/bin/bpreg_predict" ]; then
    echo "bpreg already installed in $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC"
"$VENV/bin/pip" install --quiet --no-deps "bpreg==1.1.0"
"$VENV/bin/pip" install --quiet pytorch_lightning "albumentations==1.3.1" nibabel "numpy<2" \
    "pandas<2.3" "scipy<1.14" "opencv-python-headless<4.11" matplotlib tqdm requests dataclasses
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/sitecustomize.py" <<'PY'
"""Let torchvision import when its compiled ops do not match the CPU torch (setup_bpreg_venv.sh)."""
import importlib.util
import sys
import types

_spec = importlib.util.find_spec("torchvision")
if _spec is not None and _spec.submodule_search_locations:
    import ctypes.util  # noqa: F401  (keeps the import order of torchvision.extension)
    from pathlib import Path

    _so = next(Path(_spec.submodule_search_locations[0]).glob("_C*.so"), None)
    try:
        import torch

        if _so is not None:
            torch.ops.load_library(str(_so))
    except (ImportError, OSError, RuntimeError):
        sys.modules["torchvision._meta_registrations"] = types.ModuleType(
            "torchvision._meta_registrations")
PY
"$VENV/bin/python" -c "import bpreg.inference.inference_model as m; print('bpreg import ok', m.__file__)"
echo "bpreg 1.1.0 installed in $VENV"
