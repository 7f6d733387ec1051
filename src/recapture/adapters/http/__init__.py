"""The HTTP service (Starlette on uvicorn): collector, webhooks, pixel script, admin, health and metrics."""
