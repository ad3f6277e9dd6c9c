"""Reusable pieces of the app's pages: sign-in, charts, messages."""
