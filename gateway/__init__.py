"""HTTP gateway: ``create_app`` (FastAPI) and the ``cart-engine`` command line."""
