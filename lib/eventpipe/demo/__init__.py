"""The bundled demo API: deterministic synthetic events behind the source contract, with faults on request."""
