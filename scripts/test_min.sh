#!/usr/bin/env bash
# The suite against the dependency floors: every `name>=X` of pyproject.toml installed at
# exactly X, in its own venv (.venv-min), so the floors we declare are versions the suite
# has passed with. `make test-min` runs this; pass pytest options after it.
#
# torch is the one exception: pip here can install only 2.13.0 as a CPU build (older
# releases on PyPI are multi-GB CUDA builds), so the floor of torch is that version.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-min
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip --quiet"

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
# "name>=X" of the runtime dependencies and the slurm extra → "name==X" (the test tools
# of the dev extra take their newest: they are not what users install)
"$VENV/bin/python" - "$constraints" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [*project["dependencies"], *project["optional-dependencies"]["slurm"]]
pins = []
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", dep)
    if m:
        pins.append(f"{m[1]}=={m[2]}")
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print("floors:", ", ".join(pins), file=sys.stderr)
EOF

torch_pin=$(grep -o '^torch==.*' "$constraints")
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    $pip install "${torch_pin}+cpu" 2>/dev/null || $pip install "$torch_pin" \
        --index-url https://download.pytorch.org/whl/cpu
fi
grep -v '^torch==' "$constraints" > "$constraints.rest"
mv "$constraints.rest" "$constraints"
$pip install -e ".[dev]" -c "$constraints"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE \
    "^(torch|numpy|scipy|pandas|pyarrow|safetensors|transformers|tokenizers|datasets|accelerate|huggingface.hub|matplotlib|tqdm|submitit) "
exec "$VENV/bin/python" -m pytest "$@"
