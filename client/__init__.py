"""The typed Python SDK over the generated stubs: `RetrievalClient` and
`RegistryClient`. Needs only grpcio, protobuf and numpy."""
