"""SSH for agents: commands run on stored keys, under the service's allowlist (SPEC §12)."""
