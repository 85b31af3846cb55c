"""tests/deploy: static checks of Dockerfile, Compose file and Kubernetes manifests, and
one run of the real sidecar and router against the manifests' probes, ports and metrics."""

import sys
from pathlib import Path

# The helpers next to these tests (kustomize_lite, deploy_support), whatever the rootdir.
sys.path.insert(0, str(Path(__file__).resolve().parent))
