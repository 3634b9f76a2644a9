"""Load-test harness of the cart engine: an HTTP client of the gateway, nothing more.

Entry points (run from the project root with the project's venv):

    python -m loadtest.bench       comparative benchmark: the engine (`cart-engine serve`, its
                                   defaults) against the strongest peer (lua-peer) and the raw
                                   ASGI ceiling, same scenarios, same generator; rich tables
                                   and a JSON file (see loadtest/bench.py)
    python -m loadtest.engine_bench  engine figures without HTTP, among them the cost of
                                   adding a line to a 50-line cart against a 1-line cart
    python -m loadtest.flash_sale  an operator's proof that a sale holds on a running server:
                                   exit 1 if oversold or units unsold while buyers were refused
    python -m loadtest.peers.lua_peer | raw_asgi | redis_peer | memory_peer | ray_per_cart
                                   --port P
                                   the baseline peers and the raw ASGI ceiling (loadtest/peers/)

Modules: `client` (asyncio generator over `http1`, HdrHistogram latencies in microseconds, rich
progress), `scenarios` (cart churn on shared carts, flash race, flash sale, read-heavy),
`peers` (the baselines).
"""
