"""Sandbox mode: a Bot API emulator in the process, its /sandbox web chat, and the demo world."""
