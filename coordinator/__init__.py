"""The query plane: route resolution, shard selection, fanout, merge and the
public gRPC services. Stateless: any number run behind a load balancer."""
