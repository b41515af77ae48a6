#!/usr/bin/env bash
# Spark resource discovery for GPUs (spark.executor.resource.gpu.discoveryScript): prints
# {"name": "gpu", "addresses": ["0", "1", ...]} for the GPUs this executor's container sees.
# Same output as Spark's examples/src/main/scripts/getGpusResources.sh.
set -euo pipefail
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e 's/^ *//' -e 's/.*/"&"/' | paste -sd, -)
echo "{\"name\": \"gpu\", \"addresses\": [${addresses}]}"
