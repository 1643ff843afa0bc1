#!/usr/bin/env bash
# Install bpreg 1.1.0 (the reference implementation) into a venv of its own, OUTSIDE the repository.
#
# bpreg pins torch 1.8.1 / torchvision 0.9.1 / numpy 1.x, none of which exist for Python 3.11, so it is
# installed with --no-deps next to a current torch + torchvision and the packages it imports
# (albumentations < 1.4 still has A.Flip; numpy < 2 still has numpy.lib.arraysetops). bpreg is NOT patched.
#
# Usage:  benchmarks/bpreg/setup_bpreg_venv.sh [VENV_DIR]      (default: $BPREG_VENV or /tmp/bpreg-venv)
# Then:   $VENV_DIR/bin/bpreg_predict -i IN_DIR -o OUT_DIR --model MODEL_DIR/
set -euo pipefail

VENV="${1:-${BPREG_VENV:-/tmp/bpreg-venv}}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${BPREG_TORCH_SPEC:-torch==2.14.1}"
TORCHVISION_SPEC="${BPREG_TORCHVISION_SPEC:-torchvision==0.29.1}"

if [ -x "$VENV/bin/bpreg_predict" ]; then
    echo "bpreg already installed in $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet "$TORCH_SPEC" "$TORCHVISION_SPEC"
"$VENV/bin/pip" install --quiet --no-deps "bpreg==1.1.0"
"$VENV/bin/pip" install --quiet pytorch_lightning "albumentations==1.3.1" nibabel "numpy<2" \
    "pandas<2.3" "scipy<1.14" "opencv-python-headless<4.11" matplotlib tqdm requests dataclasses
"$VENV/bin/python" -c "import bpreg.inference.inference_model as m; print('bpreg import ok', m.__file__)"
echo "bpreg 1.1.0 installed in $VENV"
