"""Baseline peers of the cart engine for the comparative benchmark.

Each is a FastAPI app over one storage design, sharing routes and cart logic (`common`,
`domain`): `redis_peer` (Redis hashes + a Lua stock script), `memory_peer` (a bare dict) and
`ray_per_cart` (one Ray actor per cart). Run one with `python -m loadtest.peers.NAME --port P`.
"""
