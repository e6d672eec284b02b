"""One SDK client per tenant, for jobs that write rows of many tenants.

An SDK client carries one tenant's access context, so a job whose rows span
tenants (backfill, materialization) opens one client per tenant it meets,
with the job's purpose and credentials, and closes them all at the end.
"""

from __future__ import annotations

from typing import Any

# The retries of a job's calls (client.connection.RetryPolicy). Why
# longer than the SDK's: a job's writes ride out a shard's restart (a rolling
# upgrade, a crash) — a write that needs every replica of a bucket is refused
# UNAVAILABLE until the shard is back, and the default retries give up within
# a second. The job's call timeout bounds the wait; past it the job stops,
# resumable from its checkpoint.
JOB_ATTEMPTS, JOB_BACKOFF = 60, (0.1, 5.0)


class TenantClients:
    def __init__(
        self, coordinator: str, purpose: str, timeout: float, credentials: Any = None
    ) -> None:
        self.coordinator = coordinator
        self.purpose = purpose
        self.timeout = timeout
        # `client.credentials.Credentials`; None: the SDK's environment
        # (VECSHARD_CA_FILE, VECSHARD_TOKEN_FILE), as the CLI uses it.
        self.credentials = credentials
        self._clients: dict[str, Any] = {}

    def __call__(self, tenant: str) -> Any:
        """The tenant's `RetrievalClient`, opened on first use (imported
        late: jobs run in process against a store never load gRPC)."""
        if tenant not in self._clients:
            from client.connection import RetryPolicy
            from client.retrieval_client import RetrievalClient

            self._clients[tenant] = RetrievalClient(
                self.coordinator,
                tenant_id=tenant,
                purpose=self.purpose,
                timeout=self.timeout,
                credentials=self.credentials,
                retry=RetryPolicy(JOB_ATTEMPTS, *JOB_BACKOFF),
            )
        return self._clients[tenant]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
