"""What is Telegram but not a conversation: bot and dispatcher factories, middlewares,
group-chat and command routers, keyboards, and the sender that keeps to Telegram's limits."""
