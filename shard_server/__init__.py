"""A data-plane node: segments, filters, the RocksDB partition and the shard gRPC service."""
