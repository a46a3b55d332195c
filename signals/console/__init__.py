"""The web console: pages, a JSON API and a live feed over HTTP + WebSocket (aiohttp).

``python -m signals.console`` (Procfile ``web``). See docs/console.md.
"""
