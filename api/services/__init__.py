"""Services write rows (flush only; the request's session dependency commits) and register tasks to send after
the commit."""
