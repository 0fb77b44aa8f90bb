"""The LiveKit server API (Twirp) per region: rooms and participants, for ending and recovering sessions.

One client per LiveKit deployment (several regions may share one), created inside the running event loop.
Calls here are never on the allocation path: only DELETE, webhooks and recovery use them.
"""

from __future__ import annotations

import aiohttp
from livekit import api
from livekit.protocol import models

from voxfleet.gateway.settings import LiveKitRegion


class LiveKitRooms:
    def __init__(self, regions: dict[str, LiveKitRegion], timeout: float = 5.0):
        self.regions = regions
        self.timeout = timeout
        self._clients: dict[tuple[str, str], api.LiveKitAPI] = {}

    def same_livekit(self, region: str) -> list[str]:
        """Regions served by the LiveKit that serves ``region`` (a room there is reachable from all of them)."""
        url = self.regions[region].url if region in self.regions else None
        return [name for name, settings in self.regions.items() if settings.url == url]

    def _client(self, region: str) -> api.LiveKitAPI:
        settings = self.regions[region]
        key = (settings.twirp_url(), settings.api_key)
        if key not in self._clients:
            self._clients[key] = api.LiveKitAPI(settings.twirp_url(), settings.api_key,
                                                settings.api_secret.get_secret_value(),
                                                timeout=aiohttp.ClientTimeout(total=self.timeout), failover=False)
        return self._clients[key]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def list_rooms(self, region: str) -> list[models.Room]:
        return list((await self._client(region).room.list_rooms(api.ListRoomsRequest())).rooms)

    async def participants(self, region: str, room: str) -> list[models.ParticipantInfo]:
        answer = await self._client(region).room.list_participants(api.ListParticipantsRequest(room=room))
        return list(answer.participants)

    async def remove_participant(self, region: str, room: str, identity: str) -> None:
        await self._client(region).room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))

    async def delete_room(self, region: str, room: str) -> None:
        await self._client(region).room.delete_room(api.DeleteRoomRequest(room=room))

    async def set_room_metadata(self, region: str, room: str, metadata: str) -> None:
        await self._client(region).room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room,
                                                                                           metadata=metadata))
