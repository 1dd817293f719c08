#!/usr/bin/env bash
# Run HERE (not on the device) before a device call: the device image has
# PyTorch and transformers but no DeepSpeed or pydantic, and reaches no
# registry. Fills .whl/ (git-ignored through .git/info/exclude) with wheels for
# its Python 3.12; name `.whl` in the device call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
PY=${PY:-.venv/bin/python}
# DeepSpeed ships as an sdist: build its pure-Python wheel (ops compile at run time there).
$PY -m pip wheel --quiet --no-deps --no-build-isolation -w .whl deepspeed==0.19.8 || $PY -m pip wheel --quiet --no-deps -w .whl deepspeed==0.19.8
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for spec in hjson==3.1.0 pydantic==2.14.4 annotated-types==0.7.0 typing-inspection==0.4.2 "pydantic-core==$($PY -c 'import pydantic_core; print(pydantic_core.__version__)')"; do
  $PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl "$spec"
done
ls -la .whl
du -sh .whl
