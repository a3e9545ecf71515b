"""The HTTP front: routes, request schemas, auth, and services that write rows and enqueue tasks. No torch."""
