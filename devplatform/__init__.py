"""The local platform: `voxfleet dev` (the test world, operator, gateway and a demo tool server on 127.0.0.1),
the browser playground the gateway serves, and `voxfleet call`, a terminal caller that times an agent's answers.

It stands outside the three components, as the `voxfleet` command does: it starts them as processes and talks
to them over the Kubernetes API, HTTP and LiveKit, importing none of their internals.
"""
