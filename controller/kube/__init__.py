"""The operator's Kubernetes side: the informer-backed store it writes status through, the
Kubernetes platform (Deployments of shim pods) with its pure builders, and its entry point."""
