#!/usr/bin/env bash
# Executes every notebook under notebooks/ headless, in a virtualenv built
# from notebooks/requirements.txt, and fails if any cell raises. Notebooks are
# run from copies, so the committed ones stay free of outputs.
#
#   bash scripts/run-notebooks.sh             # venv in notebooks/.venv
#   NOTEBOOK_VENV=/tmp/nb bash scripts/run-notebooks.sh
#   NOTEBOOK_TIMEOUT_S=600 bash scripts/run-notebooks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${NOTEBOOK_VENV:-notebooks/.venv}"
timeout_s="${NOTEBOOK_TIMEOUT_S:-300}"
python="${PYTHON:-python3}"

shopt -s nullglob
notebooks=(notebooks/*.ipynb)
if [ ${#notebooks[@]} -eq 0 ]; then
  echo "no notebooks under notebooks/"
  exit 0
fi

# Rebuild the venv when the requirements change; reuse it otherwise.
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s notebooks/requirements.txt "$stamp"; then
  echo "creating virtualenv $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r notebooks/requirements.txt
  cp notebooks/requirements.txt "$stamp"
fi
"$venv/bin/python" -m ipykernel install --prefix "$venv" --name python3 >/dev/null

export JUPYTER_PATH="$venv/share/jupyter"
"$venv/bin/python" - "$timeout_s" "${notebooks[@]}" <<'EOF'
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

timeout_s = int(sys.argv[1])
failed = []
for name in sys.argv[2:]:
    path = Path(name)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as error:
        failed.append(name)
        print(f"FAILED {name}:\n{error}", file=sys.stderr)
        continue
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"ok     {name}: {cells} code cells in {time.monotonic() - started:.1f} s")

passed = len(sys.argv[2:]) - len(failed)
print(f"notebooks: {passed} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
EOF
