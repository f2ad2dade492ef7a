"""Auth-only TCP sessions (SPEC §13): the vault logs in upstream, a local client gets the spliced stream."""
