"""The one Kubernetes layer every voxfleet component uses (voxfleet.kube): client, watch cache, credentials."""
