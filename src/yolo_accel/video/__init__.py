"""Video analytics: sources -> detect -> track -> count -> annotate -> write/stream, in threads."""
