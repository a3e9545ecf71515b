"""`make demo`: start the embedded service, then use it over HTTP as an app would (see `python -m demo --help`).

The service runs exactly as `make run` runs it (`python -m service.cli serve`: uvicorn, SQLite, a local blob folder
and an in-process Celery worker), in a subprocess on a free loopback port; the demo is only its HTTP client.
"""
