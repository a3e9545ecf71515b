"""`make bench-api`: the API under load (wrk) in its production configuration, against a backlog of queued jobs.

See `bench/api/__main__.py` for the run and README "API under load" for the figures."""
