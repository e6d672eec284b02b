"""Resolved routes per registry snapshot: what every search on a route
needs from the registry, computed once per snapshot instead of per query.

A snapshot is immutable, so resolving a route (bundle, compatibility checks,
placement) gives the same answer for every query until the watch delivers a
new snapshot; the cache is dropped then. The canary arm is still chosen per
query (stable hash of the subject); errors are never cached.
"""

from __future__ import annotations

from registry.snapshot import (
    ResolvedRoute,
    Snapshot,
    in_canary,
    resolve_route,
    resolve_shadow,
)


class RoutePlans:
    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._routes: dict[tuple[str, str], ResolvedRoute] = {}
        self._shadows: dict[str, ResolvedRoute | None] = {}

    def _on(self, snap: Snapshot) -> None:
        if snap is not self._snap:
            self._snap = snap
            self._routes = {}
            self._shadows = {}

    def route(self, snap: Snapshot, name: str, subject: str = "") -> ResolvedRoute:
        """`registry.snapshot.resolve_route`, cached per snapshot and arm."""
        self._on(snap)
        route = snap.routes.get(name)
        if route is None:
            return resolve_route(snap, name, subject)  # raises NotFound, naming the routes
        canary = bool(route.canary_bundle) and in_canary(route.name, subject, route.canary_share)
        key = (name, "canary" if canary else "primary")
        resolved = self._routes.get(key)
        if resolved is None:
            resolved = resolve_route(snap, name, subject)
            self._routes[key] = resolved
        return resolved

    def shadow(self, snap: Snapshot, resolved: ResolvedRoute) -> ResolvedRoute | None:
        """`registry.snapshot.resolve_shadow`, cached per snapshot."""
        self._on(snap)
        name = resolved.route.name
        if name not in self._shadows:
            self._shadows[name] = resolve_shadow(snap, resolved.route)
        return self._shadows[name]
