"""The `vecshard` command line, the local cluster runner, the demo and the
rollout driver: the one package that may import every other."""
