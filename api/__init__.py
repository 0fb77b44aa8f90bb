"""voxfleet.api: the contracts. VoiceAgent and Tenant specs, the gateway<->worker wire models, settings.

Imports nothing else of ours; crds/*.yaml is generated from these models (`voxfleet crds`).
"""

from voxfleet.api.tenant import Tenant, TenantSpec, TenantStatus
from voxfleet.api.voiceagent import GROUP, VERSION, VoiceAgent, VoiceAgentSpec, VoiceAgentStatus

__all__ = ["GROUP", "VERSION", "Tenant", "TenantSpec", "TenantStatus", "VoiceAgent", "VoiceAgentSpec",
           "VoiceAgentStatus"]
