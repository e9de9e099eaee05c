"""Fault tests against a real server: restarts, held locks, killed sessions, hostile input."""
