"""The composition root: the operator command line that wires core, api and worker into the running service."""
