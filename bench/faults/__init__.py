"""`make bench-faults`: the service on loopback under injected faults (README "Faults under load")."""
