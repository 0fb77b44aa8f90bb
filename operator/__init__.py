"""voxfleet.operator: the kopf operator that turns Tenants into isolated namespaces and VoiceAgents into
region-pinned warm worker pools that scale with demand (`voxfleet operator`, entry point `main.main`).

Layout: pure builders (`tenant_builder`, `agent_builder`, `pool_builder`, `tenant_deletion_policy`,
`agent_status`, `scaling`, `spec_checks`) turn specs into manifests and decisions; reconcilers
(`tenant_reconciler`, `agent_reconciler`) apply them with server-side apply; thin kopf handlers
(`tenant_handlers`, `voiceagent_handlers`) and our own watches (`watch_cache`, `cluster_view`, `triggers`)
queue the reconciles (`reconcile_queue`); `scaler` polls every worker's `GET /v1/load` (`load_poller`); `app`
holds it together behind a leader Lease (`leader_lease`) with health and Prometheus metrics (`health_server`,
`metrics`).

Deleting a Tenant that still has VoiceAgents is REFUSED, not cascaded. A ValidatingAdmissionPolicy (applied by
the operator at start) makes `kubectl delete tenant` fail at once with "Tenant X still has N VoiceAgent(s) in
namespace Y: delete them first", judged on the Tenant's `status.agents`; the operator's finalizer
`voxfleet.dev/agents-first` backs it up (the Tenant stays, Degraded=DeletionBlocked plus an Event, until the
namespace holds no agent; then the namespace is deleted and the finalizer released). Why: a cascade would end
every live call of the tenant and destroy agents its own people manage, triggered by one cluster-scoped object
the tenant doesn't control; making the agents' removal an explicit, separate step keeps a typo or a wrong
`kubectl delete -f` from taking a customer off the air.
"""
