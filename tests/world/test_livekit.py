"""The two livekit-servers answer the server API with the world's dev keys."""

import uuid

from livekit import api


async def test_rooms_are_created_and_listed_on_both_regions(livekit):
    assert set(livekit) == {"us-east", "eu-west"}
    assert len({r.url for r in livekit.values()}) == 2
    for region in livekit.values():
        lk = api.LiveKitAPI(region.http_url, region.api_key, region.api_secret)
        try:
            name = f"world-test-{region.region}-{uuid.uuid4().hex[:6]}"
            room = await lk.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=30))
            assert room.name == name
            listed = await lk.room.list_rooms(api.ListRoomsRequest())
            assert name in [r.name for r in listed.rooms]
            await lk.room.delete_room(api.DeleteRoomRequest(room=name))
        finally:
            await lk.aclose()
