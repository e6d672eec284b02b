"""The control plane as a library: data model, etcd store, placement, route
resolution and watches. Coordinators and shards both build on it."""
