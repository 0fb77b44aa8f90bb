"""Local servers for tests and benchmarks: a plain HTTP server (tools, redirects) and fakes of cloud providers
that speak the providers' real wire protocols, so the real client libraries and Pipecat services talk to them."""
