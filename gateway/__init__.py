"""voxfleet.gateway: the tenant REST API and the router of calls to warm workers (`voxfleet gateway`, entry
point `main.main`; `voxfleet keys` is `keys_cli.main`). Stateless: any number of replicas, no database.

Layout. Each replica keeps watched copies of what it needs (`watch_cache`): API-key hashes (`key_store`, fed
by `api_keys` Secrets that `keys_cli` writes), Tenants (`tenant_directory`), VoiceAgents (`agent_directory`)
and worker Pods (`worker_registry`, with load hints). Requests: `tenant_auth` (Bearer key -> tenant, rate
limits from `rate_limits`), `agents_api` + `agent_writes` (server-side apply of the tenant-writable part of a
VoiceAgent), `sessions_api` -> `allocation` (candidates from `placement`, slot claims at workers through
`worker_client`, quota from `session_quota`, tokens from `livekit_tokens`), `session_ids` (signed ids that
say where a session lives), `session_locator` (finding it again), `livekit_webhooks` -> `room_events`
(rooms started outside the API, callers leaving, rooms finishing) and `recovery` (calls whose worker died),
`eval_results` (eval-mode session records). `app`, `runtime`, `api_errors`, `request_limits` and `metrics` hold
it together; logging is voxfleet.telemetry.logging_setup, shared with every component.

How maxConcurrentSessions holds with several replicas (details in `session_quota`). There is no shared
counter: the workers are the single authorities on their slots, and every replica follows the same rule,
*claim, then count*: claim the slot at a worker first, then count the tenant's sessions by asking every live
worker of the tenant (`GET /v1/load`), and release the claim (429) if the count is over the quota. Take the
admitted sessions at any moment, ordered by when their claims completed: the last one counted after all the
others had claimed, so its count saw them all and would have released it had they been too many. Hence the
quota is never exceeded, whatever the number of replicas and however their requests interleave. The price
is paid only when it can matter (the count is skipped while the tenant's workers cannot hold more sessions
than its quota) and at the limit: racing claims may all release, so a released claim backs off at random and
retries a few times before answering 429. Unreachable workers count as full, and a worker not Ready since
its process started counts as empty (no replica dispatches to a worker before it is Ready).

Slots themselves are never given twice because only the worker hands them out (409 when full: the gateway
tries the next candidate, a bounded number of times); tenant isolation holds because every path a request
touches is built from the authenticated tenant (its namespace, its session-id MAC key input), never from the
request.
"""
