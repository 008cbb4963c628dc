"""The aiohttp gateway: WebSocket channels, presence, history, REST API, keys and limits."""
