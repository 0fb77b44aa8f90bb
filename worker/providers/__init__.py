"""Speech and language providers behind one registry: offline defaults (pocketsphinx, scripted, espeak) and the
cloud services (Deepgram, OpenAI and OpenAI-compatible servers, Anthropic, Cartesia, ElevenLabs)."""
