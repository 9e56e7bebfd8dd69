"""The Kubernetes side: the API client adapter, informer-backed store, the Kubernetes platform
(Deployments of shim pods), leader election, and the operator's entry point."""
