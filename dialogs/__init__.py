"""The conversations: one module per flow, each an aiogram Router with its StatesGroup.
A dialog asks, validates and calls a storage service; it never opens SQL itself."""
