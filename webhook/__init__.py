"""The process: FastAPI app and lifespan, the Telegram webhook, officials' API, board, CLI."""
