"""Small ASGI middlewares, one cross-cutting concern each."""
