#!/usr/bin/env bash
# The wheels the device tool's H200 image lacks, for its Python 3.12, into .whl/ (git-ignored),
# under the 64 MiB a device call may carry (about 50 MiB with the tree's 4 MiB):
#   bash benchmarks/gpu_wheels.sh
# then, in the device call (carry: [".whl"]), before the script:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# The image's own jax (0.11.2 on 2026-12-04), flax, optax, chex, orbax and numpy are used:
# jaxlib with its CUDA plugin does not fit the carry limit. warp-lang is left out on purpose:
# without it MJX stays on its pure-JAX implementation (impl="jax"), which hyperjax asks for.
# Playground's locomotion / manipulation assets and MJX's test data are stripped (unused).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" -d .whl \
    mujoco==3.17.0 mujoco-mjx==3.17.0 brax==0.14.2 playground==0.2.0 distrax==0.1.9 \
    tfp-nightly==0.26.0.dev20261027 dm-tree==0.1.10 gast==0.7.0 decorator==5.3.1 \
    glfw==2.11.0 jaxopt==0.8.5 ml_collections==1.1.0 trimesh==5.2.0 arch==7.2.0 \
    pandas==2.3.3 pytz==2026.6 tzdata==2026.6 gymnasium==1.4.0 farama-notifications
python3 -m pip wheel -q --no-deps -w .whl rliable==1.2.0  # an sdist on PyPI
tmp=$(mktemp -d)
strip() {  # strip WHEEL PATH...: repack the wheel without the given folders' non-Python files
    local whl=$1; shift
    rm -rf "$tmp/w" && mkdir "$tmp/w" && (cd "$tmp/w" && unzip -q "$OLDPWD/$whl")
    for d in "$@"; do find "$tmp/w/$d" -type f ! -name "*.py" -delete; done
    rm -f "$whl" && (cd "$tmp/w" && zip -qr -X "$OLDPWD/$whl" .)
}
strip .whl/playground-0.2.0-py3-none-any.whl mujoco_playground/_src/locomotion \
    mujoco_playground/_src/manipulation
strip .whl/mujoco_mjx-3.17.0-py3-none-any.whl mujoco/mjx/test_data mujoco/mjx/integration_test
rm -rf "$tmp"
du -sh .whl
