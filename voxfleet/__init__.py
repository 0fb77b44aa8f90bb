"""voxfleet: real-time voice agents for many tenants on Kubernetes."""
