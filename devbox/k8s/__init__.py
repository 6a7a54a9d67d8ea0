"""A profile as a Kubernetes preview environment (`devbox export k8s`, `devbox image mock`).

``manifests`` and ``image`` are pure (an import-linter contract keeps them so);
``export`` reads the project and writes the files.
"""
